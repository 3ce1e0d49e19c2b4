#!/usr/bin/env bash
# Ensure a streaming-replication hot standby of the local PostgreSQL (scripts/postgres.sh) is
# running: a second Debian cluster on its own port, made with `pg_basebackup -R` and fed
# through a physical replication slot. Idempotent: a second run only checks, resumes replay
# and clears any apply delay; a standby that lost its stream is rebuilt.
#
#   scripts/replica.sh [start]       ensure running, in sync, no delay, replay not paused
#   scripts/replica.sh lag SECONDS   apply commits SECONDS behind the primary (0: no delay)
#   scripts/replica.sh pause         pause replay (the standby keeps receiving WAL)
#   scripts/replica.sh resume        resume replay
#   scripts/replica.sh status        print the replay position, delay and lag
#   scripts/replica.sh stop          stop the standby
#   scripts/replica.sh drop          stop it, delete it and its slot
#
# Env: REPLICA_PORT (5433); the cluster is named replica<port>, the slot herald_<port>.
# The test command starts two: 5433, always in sync, and 5434, which scenarios delay and pause.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_VERSION="${PG_VERSION:-15}"
PRIMARY_PORT="${PG_PORT:-5432}"
REPLICA_PORT="${REPLICA_PORT:-5433}"
CLUSTER="replica$REPLICA_PORT"
SLOT="herald_$REPLICA_PORT"
HOST=127.0.0.1
export PGPASSWORD=herald
DATA_DIR="/var/lib/postgresql/$PG_VERSION/$CLUSTER"

as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- env PGPASSWORD="$PGPASSWORD" "$@"
    else
        sudo -u postgres -- env PGPASSWORD="$PGPASSWORD" "$@"
    fi
}

sql_on() { # PORT SQL...
    local port="$1"
    shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$HOST" -p "$port" -U herald -d postgres "$@"
}
primary() { sql_on "$PRIMARY_PORT" "$@"; }
standby() { sql_on "$REPLICA_PORT" "$@"; }

cluster_exists() { [[ -d "/etc/postgresql/$PG_VERSION/$CLUSTER" ]]; }
cluster_running() { pg_ctlcluster "$PG_VERSION" "$CLUSTER" status >/dev/null 2>&1; }
streaming() { [[ "$(standby -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" == streaming ]]; }

drop_cluster() {
    if cluster_exists; then
        pg_dropcluster --stop "$PG_VERSION" "$CLUSTER"
        log "dropped cluster $PG_VERSION/$CLUSTER"
    fi
    primary -c "SELECT pg_drop_replication_slot('$SLOT') FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
}

create_cluster() {
    log "creating the standby $PG_VERSION/$CLUSTER on port $REPLICA_PORT (pg_basebackup -R)"
    pg_createcluster "$PG_VERSION" "$CLUSTER" --port "$REPLICA_PORT" >/dev/null
    rm -rf "$DATA_DIR"
    as_postgres pg_basebackup -h "$HOST" -p "$PRIMARY_PORT" -U herald -D "$DATA_DIR" \
        -R -X stream -c fast -C -S "$SLOT"
}

# The standby's own settings, in its conf.d (the copied postgresql.auto.conf is the
# primary's, and `lag` rewrites it). No hot_standby_feedback, PostgreSQL's default: the
# primary vacuums and freezes as it would with no standby, and a standby query that gets in
# replay's way is cancelled (readers here retry). pg_stat_statements, as on the primary, for
# the statement counts of scripts/bench.sh (a change to it restarts the standby).
standby_settings() {
    local conf="/etc/postgresql/$PG_VERSION/$CLUSTER/conf.d/herald-standby.conf"
    local want
    want="$(printf "hot_standby = on\nhot_standby_feedback = off\nport = %s\nshared_preload_libraries = 'pg_stat_statements'\n" "$REPLICA_PORT")"
    if [[ "$(cat "$conf" 2>/dev/null)" != "$want" ]]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$want" >"$conf"
        chown postgres:postgres "$conf" 2>/dev/null || true
        if cluster_running; then
            # A library to preload takes a restart; the rest a reload.
            if [[ "$(standby -c "SHOW shared_preload_libraries" 2>/dev/null)" != pg_stat_statements ]]; then
                pg_ctlcluster "$PG_VERSION" "$CLUSTER" restart
            else
                pg_ctlcluster "$PG_VERSION" "$CLUSTER" reload
            fi
        fi
    fi
}

ensure() {
    command -v pg_lsclusters >/dev/null || die "postgresql-common not installed"
    primary -c 'SELECT 1' >/dev/null || die "the primary on $HOST:$PRIMARY_PORT is not running (scripts/postgres.sh)"
    # WAL kept for a standby that falls behind is bounded; past it the slot is lost and the
    # standby rebuilt.
    if [[ "$(primary -c "SHOW max_slot_wal_keep_size")" != 2GB ]]; then
        primary -c "ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    if cluster_exists && ! [[ -f "$DATA_DIR/standby.signal" ]]; then
        log "$CLUSTER exists but is not a standby; rebuilding it"
        drop_cluster
    fi
    if ! cluster_exists; then
        drop_cluster
        create_cluster
    fi
    standby_settings
    if ! cluster_running; then
        pg_ctlcluster "$PG_VERSION" "$CLUSTER" start
        log "started $PG_VERSION/$CLUSTER"
    fi
    wait_for_port "$HOST" "$REPLICA_PORT" 60 || die "the standby does not accept connections"
    for _ in $(seq 1 150); do standby -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
    set_delay 0
    standby -c "SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()" >/dev/null
    for _ in $(seq 1 100); do streaming && break; sleep 0.2; done
    if ! streaming; then
        log "the standby is not streaming from the primary (slot lost?); rebuilding it"
        drop_cluster
        create_cluster
        standby_settings
        pg_ctlcluster "$PG_VERSION" "$CLUSTER" start
        wait_for_port "$HOST" "$REPLICA_PORT" 60 || die "the rebuilt standby does not accept connections"
        for _ in $(seq 1 150); do streaming && break; sleep 0.2; done
        streaming || die "the standby does not stream (log: /var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log)"
    fi
    log "standby $HOST:$REPLICA_PORT streaming from $HOST:$PRIMARY_PORT"
    echo "postgres://herald@$HOST:$REPLICA_PORT"
}

set_delay() {
    local seconds="$1"
    [[ "$seconds" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "lag takes seconds, e.g. 3"
    local ms
    ms="$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')"
    if [[ "$(standby -c "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'")" != "$ms" ]]; then
        standby -c "ALTER SYSTEM SET recovery_min_apply_delay = '${ms}ms'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
}

case "${1:-start}" in
    start) ensure ;;
    lag)
        set_delay "${2:?usage: $0 lag SECONDS}"
        log "standby $REPLICA_PORT applies commits ${2}s behind the primary"
        ;;
    pause)
        standby -c "SELECT pg_wal_replay_pause()" >/dev/null
        log "standby $REPLICA_PORT: replay paused"
        ;;
    resume)
        standby -c "SELECT pg_wal_replay_resume()" >/dev/null
        log "standby $REPLICA_PORT: replay resumed"
        ;;
    status)
        standby -c "SELECT 'replayed ' || pg_last_wal_replay_lsn() || ', last commit replayed at ' ||
                           coalesce(pg_last_xact_replay_timestamp()::text, 'never') ||
                           ', paused: ' || pg_is_wal_replay_paused() ||
                           ', apply delay: ' || current_setting('recovery_min_apply_delay')"
        ;;
    stop)
        if cluster_exists && cluster_running; then pg_ctlcluster "$PG_VERSION" "$CLUSTER" stop; fi
        log "standby $REPLICA_PORT stopped"
        ;;
    drop) drop_cluster ;;
    *) die "usage: $0 [start|lag SECONDS|pause|resume|status|stop|drop]" ;;
esac
