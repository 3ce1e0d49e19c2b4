#!/usr/bin/env bash
# One-shot compose service `demo` (profile "demo"; run it with `docker compose run --rm demo`):
# makes changes in the demo source database and waits until the resulting notifications
# have reached the fake provider, the same story as scripts/demo.sh tells on PostgreSQL.
#   1. waits until the change detector watches both example schedules;
#   2. inserts 3 contacts and an appointment for each: 3 welcome emails + 3 appointment SMS;
#   3. once those 6 arrived, moves one appointment: 1 more SMS.
# Exits non-zero if they do not all arrive in time, so it doubles as an end-to-end check of
# the stack. Runs in the SQL Server image (for sqlcmd); talks HTTP with bash's /dev/tcp.
set -euo pipefail

SQLCMD="${SQLCMD:-/opt/mssql-tools18/bin/sqlcmd}"
SERVER="${MSSQL_HOST:-mssql},${MSSQL_PORT:-1433}"
SOURCE_DB="${SOURCE_DB:-herald_demo_source}"
NOTIFY_DB="${NOTIFY_DB:-herald_notify}"
PROVIDER_HOST="${PROVIDER_HOST:-fake-provider}"
PROVIDER_PORT="${PROVIDER_PORT:-8025}"
TIMEOUT="${DEMO_TIMEOUT:-120}"   # seconds per wait
: "${MSSQL_SA_PASSWORD:?MSSQL_SA_PASSWORD is not set}"

log() { printf '[demo] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sql() {   # sql DATABASE sqlcmd-args...   (see mssql-init.sh for the flags)
    local database="$1"
    shift
    "$SQLCMD" -S "$SERVER" -U sa -P "$MSSQL_SA_PASSWORD" -C -b -I -x -l 30 -d "$database" "$@"
}

scalar() {   # scalar DATABASE QUERY: the single value of a one-row, one-column query
    sql "$1" -h -1 -W -Q "SET NOCOUNT ON; $2" | tr -d '[:space:]'
}

http_get() {   # http_get PATH: prints the body of a 200 answer from the fake provider
    local response
    exec 3<>"/dev/tcp/$PROVIDER_HOST/$PROVIDER_PORT" || return 1
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
    response="$(timeout 10 cat <&3)"
    exec 3<&-
    [[ "${response%%$'\r'*}" == *" 200 "* ]] || return 1
    printf '%s' "${response#*$'\r\n\r\n'}"
}

accepted() {   # how many messages the fake provider has accepted so far
    local body
    body="$(http_get '/_fake/messages?accepted=true')" || return 1
    { grep -o '"seq":' <<<"$body" || true; } | wc -l
}

wait_for() {   # wait_for DESCRIPTION COMMAND...: until COMMAND succeeds, at most $TIMEOUT s
    local what="$1" deadline=$((SECONDS + TIMEOUT))
    shift
    log "waiting for $what"
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what (docker compose logs change-detector renderer sender)"
        sleep 1
    done
}

watching() {
    local n
    n="$(scalar "$NOTIFY_DB" "SELECT COUNT(*) FROM detector_watermark WHERE hold_back IS NOT NULL" 2>/dev/null)" || return 1
    [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 2))
}

arrived() {   # arrived N: at least N messages accepted since this demo started
    local now
    now="$(accepted)" || return 1
    ((now - baseline >= $1))
}

wait_for "the change detector to watch the example schedules" watching
baseline="$(accepted)" || die "the fake provider at $PROVIDER_HOST:$PROVIDER_PORT does not answer"
log "the fake provider holds $baseline accepted messages already"

log "inserting 3 contacts and their appointments in $SOURCE_DB"
sql "$SOURCE_DB" <<'SQL'
INSERT INTO crm.contact (first_name, last_name, email, phone, locale) VALUES
    (N'Ada', N'Lovelace', N'ada@example.com', N'+15550100001', N'en'),
    (N'Marie', N'Curie', N'marie@example.com', N'+15550100002', N'fr'),
    (N'Grace', N'Hopper', N'grace@example.com', N'+15550100003', N'en');
INSERT INTO crm.appointment (contact_id, starts_at, location)
SELECT TOP (3) contact_id, '2026-12-01T09:30:00', N'Room 1'
  FROM crm.contact ORDER BY contact_id DESC;
GO
SQL
wait_for "3 welcome emails and 3 appointment SMS" arrived 6

log "moving Ada's newest appointment to Room 7"
sql "$SOURCE_DB" <<'SQL'
UPDATE crm.appointment SET location = N'Room 7'
 WHERE appointment_id = (SELECT MAX(a.appointment_id)
                           FROM crm.appointment a
                           JOIN crm.contact c ON c.contact_id = a.contact_id
                          WHERE c.email = N'ada@example.com');
GO
SQL
wait_for "the SMS for the moved appointment" arrived 7

echo
echo "What the provider received (all of it: http://localhost:${PROVIDER_HOST_PORT:-8025}/_fake/messages):"
http_get '/_fake/messages?accepted=true' | sed 's/},{"seq":/}\n{"seq":/g' | tail -n 7 |
    sed -E 's/.*"channel":"([a-z]+)".*"to":\["([^"]*)".*"text":"([^"]*)".*/  \1\t\2\t\3/'
echo
log "done: 7 notifications delivered through SQL Server, Kafka, the renderer and the sender"
