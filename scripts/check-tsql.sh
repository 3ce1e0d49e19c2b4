#!/usr/bin/env bash
# Parse-checks the T-SQL under sql/mssql/ without a server: every file, with sqlfluff's tsql
# dialect. The `source_*` query templates are rendered first with sample catalog-quoted
# identifiers, so every statement the SQL Server engine sends is checked. Fails (non-zero)
# on any parse error, naming the file and line. Installs a pinned sqlfluff into
# $HERALD_STATE_DIR/venv the first time; idempotent.
#
#   scripts/check-tsql.sh              check everything under sql/mssql/
#   scripts/check-tsql.sh FILE...      check these files only
#
# Nothing is excluded: where sqlfluff lacks a construct, the SQL is written with an
# equivalent one it parses.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"

SQLFLUFF_VERSION=4.5.0
VENV="$HERALD_STATE_DIR/venv"

# The venv is shared with the other check scripts; each installs its own pinned tool.
if [[ ! -x "$VENV/bin/python" ]]; then
    command -v python3 >/dev/null || die "python3 not found (needed for the venv at $VENV)"
    log "creating the venv $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (Debian: apt-get install python3-venv)"
fi
if [[ "$("$VENV/bin/sqlfluff" version 2>/dev/null)" != "$SQLFLUFF_VERSION" ]]; then
    log "installing sqlfluff $SQLFLUFF_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "sqlfluff==$SQLFLUFF_VERSION" || die "pip install sqlfluff==$SQLFLUFF_VERSION failed"
fi

if (($# > 0)); then
    files=("$@")
else
    mapfile -t files < <(find sql/mssql -name '*.sql' | sort)
fi
((${#files[@]} > 0)) || die "no .sql files to check"

# Sample values for the templates' placeholders, as the engine fills them from the catalog.
render() {
    sed -e 's/{table}/[crm].[contact]/g' \
        -e 's/{key}/[contact_id]/g' \
        -e 's/{key_type}/nvarchar(20)/g' \
        -e 's/{key_collate}/ COLLATE Latin1_General_100_BIN2/g' \
        -e 's/{change}/[modified_at]/g' \
        -e 's/{change_type}/datetime2(7)/g' \
        -e 's/{procedure}/[crm].[welcome_email]/g' \
        -e 's/{change_table}/[cdc].[crm_contact_CT]/g' \
        -e 's/{change_ordinal}/8/g' \
        "$1"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
checked=()
for file in "${files[@]}"; do
    if [[ "$file" == */queries/* ]] && grep -q '{[a-z_]*}' "$file"; then
        rendered="$work/$(basename "$file")"
        render "$file" >"$rendered"
        if grep -n '{[a-z_]*}' "$rendered" >&2; then
            die "$file: a placeholder this script does not know; add a sample value to render()"
        fi
        echo "$rendered $file" >>"$work/map"
        checked+=("$rendered")
    else
        checked+=("$file")
    fi
done

# `lint` rather than `parse`: its JSON names each file with its violations. Only parse,
# lex and templating errors count here; LT12 is merely the cheapest rule to run.
"$VENV/bin/sqlfluff" lint --dialect tsql --templater raw --ignore-local-config \
    --rules LT12 --format json --nofail "${checked[@]}" >"$work/report.json"

"$VENV/bin/python" - "$work/report.json" "$work/map" <<'PY'
import json, os, sys

report, mapping = sys.argv[1], sys.argv[2]
names = {}
if os.path.exists(mapping):
    for line in open(mapping):
        rendered, original = line.split()
        names[rendered] = original + " (rendered)"
errors = 0
files = json.load(open(report))
for result in files:
    for v in result["violations"]:
        if v["code"] in ("PRS", "LXR", "TMP"):
            errors += 1
            name = names.get(result["filepath"], result["filepath"])
            print(f"{name}:{v['start_line_no']}:{v['start_line_pos']}: {v['description']}",
                  file=sys.stderr)
if errors:
    print(f"check-tsql: {errors} parse error(s) in {len(files)} files", file=sys.stderr)
    sys.exit(1)
print(f"check-tsql: {len(files)} T-SQL files parse", file=sys.stderr)
PY
