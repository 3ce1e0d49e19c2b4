#!/usr/bin/env bash
# Ensure a local PostgreSQL 15 (Debian cluster "15 main") is running on
# 127.0.0.1:5432 with a SUPERUSER login role herald/herald and a database herald.
# Idempotent: a second run only checks and prints.
#
#   scripts/postgres.sh          ensure running (default)
#   scripts/postgres.sh stop     stop the cluster
#
# Env: PG_VERSION (15), PG_CLUSTER (main), PG_PORT (5432)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_VERSION="${PG_VERSION:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_PORT="${PG_PORT:-5432}"
PG_HOST=127.0.0.1
HERALD_ROLE=herald
HERALD_PASSWORD=herald

# Dev/test settings (applied with ALTER SYSTEM only when they differ).
# Durability is traded for speed: this cluster holds throw-away test data only.
DEV_SETTINGS=(
    "max_connections=300"     # many tests in parallel, each with its own pool
    "fsync=off"
    "synchronous_commit=off"
    "full_page_writes=off"
    "shared_preload_libraries=pg_stat_statements"   # statements per message (scripts/bench.sh)
)

# Run a command as the postgres OS user (we are usually root).
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
}

# psql over the local unix socket as the postgres superuser (peer auth).
psql_admin() {
    as_postgres psql -X -q -At -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"
}

cluster_exists() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {f=1} END {exit !f}'; }
cluster_running() { pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; }

# A server that already takes the herald role as a superuser (a CI service container, one
# the developer runs) is used as it is.
if [[ "${1:-}" != stop ]] &&
    PGPASSWORD="$HERALD_PASSWORD" psql -X -q -At -h "$PG_HOST" -p "$PG_PORT" -U "$HERALD_ROLE" \
        -d postgres -c "select rolsuper from pg_roles where rolname = current_user" 2>/dev/null |
    grep -qx t; then
    log "PostgreSQL on $PG_HOST:$PG_PORT already accepts $HERALD_ROLE (superuser); using it as it is"
    echo "postgres://$HERALD_ROLE@$PG_HOST:$PG_PORT"
    exit 0
fi

command -v pg_lsclusters >/dev/null || die "postgresql-common not installed (apt-get install postgresql-$PG_VERSION)"
[[ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]] || die "PostgreSQL $PG_VERSION not installed (apt-get install postgresql-$PG_VERSION)"

if [[ "${1:-start}" == stop ]]; then
    if cluster_exists && cluster_running; then
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop
        log "stopped cluster $PG_VERSION/$PG_CLUSTER"
    else
        log "cluster $PG_VERSION/$PG_CLUSTER not running"
    fi
    exit 0
fi

# 1. cluster
if cluster_exists; then
    log "cluster $PG_VERSION/$PG_CLUSTER exists"
else
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >/dev/null
    log "created cluster $PG_VERSION/$PG_CLUSTER (port $PG_PORT)"
fi

# 2. running
if cluster_running; then
    log "cluster already running"
else
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    log "started cluster $PG_VERSION/$PG_CLUSTER"
fi

wait_for_port "$PG_HOST" "$PG_PORT" 30 || die "PostgreSQL not accepting TCP connections on $PG_HOST:$PG_PORT"
for _ in $(seq 1 50); do psql_admin -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql_admin -c 'select 1' >/dev/null || die "cannot connect as postgres via unix socket"

# 3. dev settings
changed=() need_restart=0
for kv in "${DEV_SETTINGS[@]}"; do
    name="${kv%%=*}" want="${kv#*=}"
    row="$(psql_admin -F '|' -c "select setting, context from pg_settings where name = '$name'")"
    have="${row%%|*}" context="${row#*|}"
    if [[ "$have" != "$want" ]]; then
        psql_admin -c "alter system set $name = '$want'"
        changed+=("$name=$want")
        [[ "$context" == postmaster ]] && need_restart=1
    fi
done
if ((${#changed[@]} == 0)); then
    log "settings ok (${DEV_SETTINGS[*]})"
elif ((need_restart)); then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart
    wait_for_port "$PG_HOST" "$PG_PORT" 30 || die "PostgreSQL did not come back after restart"
    for _ in $(seq 1 50); do psql_admin -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
    log "applied ${changed[*]} and restarted"
else
    psql_admin -c 'select pg_reload_conf()' >/dev/null
    log "applied ${changed[*]} (reloaded)"
fi

# 4. role herald (checked by actually logging in over TCP with the password)
if PGPASSWORD="$HERALD_PASSWORD" psql -X -q -At -h "$PG_HOST" -p "$PG_PORT" -U "$HERALD_ROLE" -d postgres \
    -c "select rolsuper from pg_roles where rolname = current_user" 2>/dev/null | grep -qx t; then
    log "role $HERALD_ROLE ok"
else
    psql_admin <<SQL
do \$\$
begin
  if not exists (select from pg_roles where rolname = '$HERALD_ROLE') then
    create role $HERALD_ROLE;
  end if;
end
\$\$;
alter role $HERALD_ROLE with login superuser password '$HERALD_PASSWORD';
SQL
    log "created/updated role $HERALD_ROLE (login, superuser)"
fi

# 5. database herald, so that postgres://herald@127.0.0.1:5432 (no dbname) works as-is
if [[ "$(psql_admin -c "select 1 from pg_database where datname = '$HERALD_ROLE'")" == 1 ]]; then
    log "database $HERALD_ROLE ok"
else
    psql_admin -c "create database $HERALD_ROLE owner $HERALD_ROLE"
    log "created database $HERALD_ROLE"
fi

# 6. statement counts, read by scripts/bench.sh (the standbys get the extension by WAL)
psql_admin -c "create extension if not exists pg_stat_statements"

log "ready (password: $HERALD_PASSWORD)"
echo "postgres://$HERALD_ROLE@$PG_HOST:$PG_PORT"
