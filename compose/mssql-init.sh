#!/usr/bin/env bash
# One-shot compose service `mssql-init`: creates the demo source and notification databases
# on the compose SQL Server and applies the T-SQL of sql/mssql/ (mounted read-only at /sql):
#   notify/0NN-*.sql   -> herald_notify         (notification database schema)
#   demo/0NN-*.sql     -> herald_demo_source    (demo CRM source + merge procedures)
#   examples/schedules.sql -> herald_notify     (the example templates and schedules)
# Every file is idempotent, so running it again on an existing volume changes nothing.
# The first error stops it with a non-zero exit, and the services, which wait for this one
# to complete successfully, do not start.
set -euo pipefail
export LC_ALL=C   # glob order = byte order of the 0NN- prefixes

SQLCMD="${SQLCMD:-/opt/mssql-tools18/bin/sqlcmd}"
SERVER="${MSSQL_HOST:-mssql},${MSSQL_PORT:-1433}"
SQL_DIR="${SQL_DIR:-/sql/mssql}"
SOURCE_DB="${SOURCE_DB:-herald_demo_source}"
NOTIFY_DB="${NOTIFY_DB:-herald_notify}"
: "${MSSQL_SA_PASSWORD:?MSSQL_SA_PASSWORD is not set}"

log() { printf '[mssql-init] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# sqlcmd against DATABASE:
#   -C  trust the container's self-signed certificate (encryption stays on)
#   -b  stop at the first error and exit non-zero
#   -I  QUOTED_IDENTIFIER ON, as for every other client (sqlcmd alone defaults to OFF, which
#       breaks filtered indexes and is baked into procedures created in that session)
#   -x  no sqlcmd $(variable) substitution: the files are plain T-SQL batches split by GO
sql() {
    local database="$1"
    shift
    "$SQLCMD" -S "$SERVER" -U sa -P "$MSSQL_SA_PASSWORD" -C -b -I -x -l 30 -d "$database" "$@"
}

apply_dir() {
    local database="$1" dir="$2" file found=0
    [[ -d "$dir" ]] || die "$dir not found (is ../sql mounted, and does sql/mssql exist?)"
    for file in "$dir"/*.sql; do
        [[ -e "$file" ]] || break
        found=1
        log "$database <- ${file#"$SQL_DIR"/}"
        sql "$database" -i "$file" || die "applying $file to $database failed"
    done
    ((found)) || die "no .sql files in $dir"
}

for database in "$SOURCE_DB" "$NOTIFY_DB"; do
    log "database $database"
    sql master -Q "IF DB_ID(N'$database') IS NULL CREATE DATABASE [$database];" \
        || die "creating database $database failed"
done

apply_dir "$NOTIFY_DB" "$SQL_DIR/notify"
apply_dir "$SOURCE_DB" "$SQL_DIR/demo"

schedules="$SQL_DIR/examples/schedules.sql"
[[ -f "$schedules" ]] || die "$schedules not found"
log "$NOTIFY_DB <- examples/schedules.sql"
sql "$NOTIFY_DB" -i "$schedules" || die "applying $schedules failed"

log "done: $SOURCE_DB and $NOTIFY_DB are ready"
