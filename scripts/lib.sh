# shellcheck shell=bash
# Shared helpers for herald's local-infrastructure scripts.
# Source it:  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides:
#   repo_root              prints the absolute path of the repository root
#   HERALD_STATE_DIR       state dir (data, logs, pid files); never inside the clone
#   log MSG...             one short line on stderr, prefixed with the script name
#   die MSG...             log and exit 1
#   port_open HOST PORT    true if a TCP connection to HOST:PORT succeeds
#   wait_for_port HOST PORT TIMEOUT_SECS
#                          waits until HOST:PORT accepts connections; fails after TIMEOUT_SECS

repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

HERALD_STATE_DIR="${HERALD_STATE_DIR:-${HOME:-/root}/.cache/herald}"
export HERALD_STATE_DIR
mkdir -p "$HERALD_STATE_DIR"

log() {
    printf '[%s] %s\n' "$(basename "${0:-herald}" .sh)" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# Plain-bash TCP probe (no nc/curl needed). The subshell closes the fd.
port_open() {
    local host="$1" port="$2"
    # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" >/dev/null 2>&1
}

wait_for_port() {
    local host="$1" port="$2" timeout="${3:-30}"
    local deadline=$((SECONDS + timeout))
    until port_open "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${timeout}s waiting for $host:$port"
            return 1
        fi
        sleep 0.2
    done
}
