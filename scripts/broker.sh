#!/usr/bin/env bash
# Ensure a local Kafka-protocol broker (tansu 0.6.0, SQLite storage) is running
# on 127.0.0.1:9092. Idempotent: if the port is already served, it only checks.
#
#   scripts/broker.sh            ensure installed + running (default: start)
#   scripts/broker.sh stop       stop the broker started by this script
#   scripts/broker.sh reset      stop it and delete its data (all topics/offsets)
#   scripts/broker.sh status     exit 0 if the broker answers metadata requests
#
# State: $HERALD_STATE_DIR/tansu/{tansu.db,tansu.log,tansu.pid}
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql,postgres
BROKER_HOST=127.0.0.1
BROKER_PORT="${BROKER_PORT:-9092}"
TANSU_DIR="$HERALD_STATE_DIR/tansu"
PID_FILE="$TANSU_DIR/tansu.pid"
LOG_FILE="$TANSU_DIR/tansu.log"
INSTALL_LOG="$HERALD_STATE_DIR/tansu-install.log"
CARGO_BIN="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"

mkdir -p "$TANSU_DIR"

find_tansu() {
    if [[ -x "$CARGO_BIN/tansu" ]]; then
        echo "$CARGO_BIN/tansu"
    else
        command -v tansu 2>/dev/null || return 1
    fi
}

ensure_tansu() {
    local bin
    if bin="$(find_tansu)"; then
        log "tansu installed: $bin"
        TANSU="$bin"
        return
    fi
    if pgrep -f 'cargo install tansu' >/dev/null; then
        log "a 'cargo install tansu' is already running; waiting for it (up to 40 min)"
        local deadline=$((SECONDS + 2400))
        while pgrep -f 'cargo install tansu' >/dev/null && ((SECONDS < deadline)); do sleep 5; done
    else
        command -v cargo >/dev/null || die "cargo not found (need a Rust toolchain to install tansu)"
        log "installing tansu $TANSU_VERSION with cargo (~15 min on 2 cores), log: $INSTALL_LOG"
        # CARGO_TARGET_DIR (set by scripts/test.sh) would mix tansu's build into the project's target dir
        if ! env -u CARGO_TARGET_DIR cargo install tansu --locked --version "$TANSU_VERSION" --features "$TANSU_FEATURES" \
            >"$INSTALL_LOG" 2>&1; then
            tail -n 30 "$INSTALL_LOG" >&2
            die "cargo install tansu failed (full log: $INSTALL_LOG)"
        fi
    fi
    bin="$(find_tansu)" || die "tansu still not found after install"
    log "tansu installed: $bin"
    TANSU="$bin"
}

pid_alive() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q tansu "/proc/$pid/cmdline" 2>/dev/null
}

# Real Kafka Metadata (v1) request using only the python3 stdlib: checks that the
# broker answers and advertises $BROKER_HOST:$BROKER_PORT. Falls back to a port check.
metadata_ok() {
    if ! command -v python3 >/dev/null; then
        port_open "$BROKER_HOST" "$BROKER_PORT"
        return
    fi
    python3 - "$BROKER_HOST" "$BROKER_PORT" <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
client = b"herald-broker-sh"
# header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id; body: topics=null (all)
req = struct.pack(">hhih", 3, 1, 42, len(client)) + client + struct.pack(">i", -1)
try:
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(5)
    s.sendall(struct.pack(">i", len(req)) + req)
    def recv(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError("connection closed")
            b += c
        return b
    size, = struct.unpack(">i", recv(4))
    buf = recv(size)
    corr, nbrokers = struct.unpack(">ii", buf[:8])
    assert corr == 42, corr
    off, brokers = 8, []
    for _ in range(nbrokers):
        node, hlen = struct.unpack(">ih", buf[off:off + 6]); off += 6
        h = buf[off:off + hlen].decode(); off += hlen
        p, = struct.unpack(">i", buf[off:off + 4]); off += 4
        rlen, = struct.unpack(">h", buf[off:off + 2]); off += 2 + max(rlen, 0)
        brokers.append((node, h, p))
except Exception as e:
    print(f"metadata request failed: {e!r}", file=sys.stderr)
    sys.exit(1)
if not any(h == host and p == port for _, h, p in brokers):
    print(f"broker advertises {brokers}, expected {host}:{port}", file=sys.stderr)
    sys.exit(2)
PY
}

wait_ready() {
    wait_for_port "$BROKER_HOST" "$BROKER_PORT" 30 || return 1
    local deadline=$((SECONDS + 30))
    until metadata_ok 2>/dev/null; do
        if ((SECONDS >= deadline)); then metadata_ok; return 1; fi
        sleep 0.5
    done
}

stop_broker() {
    if pid_alive; then
        local pid
        pid="$(cat "$PID_FILE")"
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid"
            log "broker pid $pid did not exit on TERM; killed"
        else
            log "stopped broker (pid $pid)"
        fi
    else
        log "broker not running (no live pid in $PID_FILE)"
        if port_open "$BROKER_HOST" "$BROKER_PORT"; then
            log "WARNING: $BROKER_HOST:$BROKER_PORT is still served by a process not started by this script"
        fi
    fi
    rm -f "$PID_FILE"
}

start_broker() {
    if port_open "$BROKER_HOST" "$BROKER_PORT"; then
        if pid_alive; then
            log "broker already listening on $BROKER_HOST:$BROKER_PORT (pid $(cat "$PID_FILE"))"
        else
            log "$BROKER_HOST:$BROKER_PORT already served by another process; leaving it alone"
        fi
        wait_ready || die "something listens on $BROKER_HOST:$BROKER_PORT but metadata requests fail"
        log "metadata request ok"
        echo "$BROKER_HOST:$BROKER_PORT"
        return
    fi

    if pid_alive; then
        log "broker process $(cat "$PID_FILE") alive but not listening yet; waiting"
    else
        ensure_tansu
        # tansu resolves sqlite://NAME relative to its cwd (absolute paths do not work),
        # so it must be started from the data dir.
        (
            cd "$TANSU_DIR"
            nohup setsid "$TANSU" broker \
                --cluster-id herald \
                --listener-url "tcp://$BROKER_HOST:$BROKER_PORT" \
                --advertised-listener-url "tcp://$BROKER_HOST:$BROKER_PORT" \
                --storage-engine "sqlite://tansu.db" \
                </dev/null >>"$LOG_FILE" 2>&1 &
            echo $! >"$PID_FILE"
        )
        log "started tansu broker (pid $(cat "$PID_FILE"), log $LOG_FILE, data $TANSU_DIR/tansu.db)"
    fi

    if ! wait_ready; then
        tail -n 20 "$LOG_FILE" >&2 || true
        die "broker did not become ready on $BROKER_HOST:$BROKER_PORT (log: $LOG_FILE)"
    fi
    log "broker ready on $BROKER_HOST:$BROKER_PORT (metadata request ok)"
    echo "$BROKER_HOST:$BROKER_PORT"
}

case "${1:-start}" in
    start) start_broker ;;
    stop) stop_broker ;;
    reset)
        stop_broker
        rm -f "$TANSU_DIR"/tansu.db*
        log "deleted broker data in $TANSU_DIR"
        ;;
    status)
        if metadata_ok; then log "broker up on $BROKER_HOST:$BROKER_PORT"; else log "broker down"; exit 1; fi
        ;;
    *) die "usage: $0 [start|stop|reset|status]" ;;
esac
