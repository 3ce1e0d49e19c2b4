#!/usr/bin/env bash
# Runs the whole pipeline on local defaults and shows notifications arriving:
# PostgreSQL + tansu (started or installed if needed), fresh demo databases, the fake
# provider on 127.0.0.1:8025, the three services, demo changes, and what was delivered.
#
#   scripts/demo.sh                 run the demo, then stop the services
#   scripts/demo.sh --keep-running  leave the services and the fake provider running
#   scripts/demo.sh stop            stop services left running
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERALD_STATE_DIR/target}"
RUN_DIR="$HERALD_STATE_DIR/demo"
mkdir -p "$RUN_DIR"

SOURCE_DB=herald_demo_source
NOTIFY_DB=herald_notify
PROVIDER=http://127.0.0.1:8025
export PGPASSWORD=herald
psql_to() { psql -h 127.0.0.1 -U herald -v ON_ERROR_STOP=1 -Xq -d "$@"; }

stop_all() {
    for name in sender renderer change-detector fake-provider; do
        local pid_file="$RUN_DIR/$name.pid"
        if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            kill -TERM "$(cat "$pid_file")"
            log "stopped $name"
        fi
        rm -f "$pid_file"
    done
}

if [[ "${1:-}" == stop ]]; then
    stop_all
    exit 0
fi
stop_all

scripts/postgres.sh
scripts/broker.sh
log "building"
cargo build --workspace --bins --locked --quiet
BIN="$CARGO_TARGET_DIR/debug"

log "creating fresh databases $SOURCE_DB and $NOTIFY_DB"
for db in "$SOURCE_DB" "$NOTIFY_DB"; do
    psql_to postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
for file in sql/postgres/demo/*.sql; do psql_to "$SOURCE_DB" -f "$file"; done
for file in sql/postgres/notify/*.sql; do psql_to "$NOTIFY_DB" -f "$file"; done
psql_to "$NOTIFY_DB" -f sql/postgres/examples/schedules.sql

export HERALD_ENV=local
export HERALD__SOURCE__PASSWORD=herald HERALD__NOTIFY__PASSWORD=herald
export HERALD__KAFKA__TOPIC="herald.demo.$(date +%s)"   # a fresh topic per demo run
export HERALD__PROVIDERS__SENDGRID__API_KEY=SG.fake-key
export HERALD__PROVIDERS__TWILIO__AUTH_TOKEN=fake-token
export HERALD__UNSUBSCRIBE__SECRET=dev-unsubscribe-secret   # signs the welcome emails' unsubscribe links

start() {
    local name="$1"
    shift
    nohup "$BIN/$name" "$@" >"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
    log "started $name (log: $RUN_DIR/$name.log)"
}
# Grace's mailbox does not exist: SendGrid will report her welcome email bounced.
start fake-provider --listen 127.0.0.1:8025 \
    --sendgrid-events-url http://127.0.0.1:9404/webhooks/sendgrid \
    --outcome '{"to":"grace@example.com","report":"bounce"}'   # [webhooks] in local.toml
wait_for_port 127.0.0.1 8025 10
start change-detector
start renderer
start sender

log "waiting for the detector to watch the demo schedules"
for _ in $(seq 1 300); do
    watching=$(psql_to "$NOTIFY_DB" -Atc \
        "SELECT count(*) FROM detector_watermark WHERE hold_back IS NOT NULL")
    [[ "$watching" == 2 ]] && break
    sleep 0.2
done
[[ "$watching" == 2 ]] || die "the detector did not start watching (see $RUN_DIR/change-detector.log)"

log "making changes in the source database"
psql_to "$SOURCE_DB" <<'SQL'
INSERT INTO crm.contact (first_name, last_name, email, phone, locale) VALUES
    ('Ada', 'Lovelace', 'ada@example.com', '+15550100001', 'en'),
    ('Marie', 'Curie', 'marie@example.com', '+15550100002', 'fr'),
    ('Grace', 'Hopper', 'grace@example.com', '+15550100003', 'en');
INSERT INTO crm.appointment (contact_id, starts_at, location)
SELECT contact_id, '2026-12-01 09:30+00', 'Room 1' FROM crm.contact;
SQL

arrived=0
wait_for_notifications() {
    log "waiting for $1 notifications at the fake provider"
    for _ in $(seq 1 300); do
        arrived=$(curl -fsS "$PROVIDER/_fake/messages?accepted=true" |
            python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
        [[ "$arrived" -ge "$1" ]] && return
        sleep 0.2
    done
}
wait_for_notifications 6   # 3 welcome emails, 3 appointment SMS

# A change to a row that was already notified is a new change version: one more SMS. (A
# row changed again before its first notification was rendered gets one, for its latest
# version: the older one is recorded as superseded.)
log "moving Ada's appointment"
psql_to "$SOURCE_DB" -c \
    "UPDATE crm.appointment SET location = 'Room 7' WHERE contact_id = (SELECT min(contact_id) FROM crm.contact)"
expected=7
wait_for_notifications "$expected"

log "waiting for SendGrid's events for the 3 emails (processed, then delivered or bounce)"
for _ in $(seq 1 50); do
    events=$(psql_to "$NOTIFY_DB" -Atc "SELECT count(*) FROM delivery_event")
    [[ "$events" -ge 6 ]] && break
    sleep 0.2
done

echo
echo "What the provider received:"
curl -fsS "$PROVIDER/_fake/messages?accepted=true" | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    what = m["subject"] if m["channel"] == "email" else m["text"]
    print("  %s  %-5s  %-22s %s" % (m["received_at"][11:23], m["channel"], m["to"][0], what))'
echo
echo "What support sees (SELECT ... FROM message_log):"
psql_to "$NOTIFY_DB" -c "SELECT message_id, schedule, channel, recipient, status, sent_at::time(0) AS sent_at, provider_message_id, last_event FROM message_log ORDER BY message_id"

[[ "$arrived" -ge "$expected" ]] || die "only $arrived of $expected notifications arrived (logs in $RUN_DIR)"

# The welcome emails offer one-click unsubscribe (RFC 8058): Ada's mail client posts to the
# List-Unsubscribe link her email carried.
link=$(curl -fsS "$PROVIDER/_fake/messages?channel=email" | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["to"] == ["ada@example.com"]:
        print(m["headers"]["List-Unsubscribe"].strip("<>"))')
log "Ada clicks unsubscribe in her mail client: POST $link"
curl -fsS -X POST -d List-Unsubscribe=One-Click "$link" >/dev/null
echo
echo "Who gets no more email (heraldctl suppression list): Grace bounced, Ada unsubscribed"
"$BIN/heraldctl" suppression list

if [[ "${1:-}" == --keep-running ]]; then
    log "services left running; the fake provider is at $PROVIDER/_fake/messages; stop with: scripts/demo.sh stop"
else
    stop_all
fi
