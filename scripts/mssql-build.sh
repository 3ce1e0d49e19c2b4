#!/usr/bin/env bash
# Names the SQL Server build a CI run tested: the first line of @@VERSION of the server in
# container CONTAINER (a SQL Server image, which sets MSSQL_SA_PASSWORD), and its image. Printed,
# and added to the run's summary when GitHub Actions runs it ($GITHUB_STEP_SUMMARY).
#
#   scripts/mssql-build.sh CONTAINER
set -euo pipefail
container="${1:?usage: scripts/mssql-build.sh CONTAINER}"
version="$(docker exec "$container" bash -c '/opt/mssql-tools18/bin/sqlcmd -S localhost -U sa \
    -P "$MSSQL_SA_PASSWORD" -C -h -1 -Q "SELECT @@VERSION"' | head -n 1)"
line="SQL Server under test: ${version} (image $(docker inspect -f '{{.Config.Image}}' "$container"))"
echo "$line"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    echo "$line" >> "$GITHUB_STEP_SUMMARY"
fi
