#!/usr/bin/env bash
# Runs a benchmark (tests/benches/NAME.rs) against the real parts, release build:
# PostgreSQL, its two standbys and the broker are started if needed, as the test command does.
#
#   scripts/bench.sh [pipeline] [OPTIONS]   the whole pipeline and its raw stages, one table
#   scripts/bench.sh detection              commit → event latency, rows read again per poll, poll time
#   scripts/bench.sh sender                 messages sent per second, provider answering at once and in 100 ms
#   scripts/bench.sh tenants [--flood N] [--provider-latency MS]
#                                           a small tenant's latency while a large one's flood drains
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'EOF'
usage: scripts/bench.sh [pipeline] [OPTIONS]
       scripts/bench.sh detection | sender
       scripts/bench.sh tenants [--flood N (100000)] [--provider-latency MS (50)]

The pipeline benchmark (the default) measures, in one run on this machine:
  - raw stages: broker produce and consume (the services' own client settings), the
    notification database's claim → sending → sent cycle, HTTP to the fake provider
    (hundreds of calls in flight) at the provider latency and at 0;
  - end to end: N contact inserts → N emails accepted by the fake provider, with the
    detector, K renderers and K senders on local defaults; fails if any recipient is
    accepted other than exactly once or any message does not end `sent`;
  - latency: commit → accepted p50 / p99 under a steady insert rate for 15 s;
  - per process: CPU seconds and peak RSS; statements per message on the notification
    database and the source standby; PostgreSQL's durability settings.
It prints one markdown table.

options:
  --messages N            inserts timed end to end, and the size of each raw stage (20000)
  --provider-latency MS   the fake provider answers every request after MS ms (0)
  --renderers K           renderer processes (1)
  --senders K             sender processes (1)
  --rate R                steady inserts per second for the latency figure (1000)
  --json FILE             also write the figures as JSON, to compare two runs
  -h, --help              this text
EOF
}

name=pipeline
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "" | -*) ;;
    *) name="$1"; shift ;;
esac
[[ -f "$(repo_root)/tests/benches/$name.rs" ]] || { usage >&2; die "no benchmark named $name"; }
# A relative --json path is the caller's; the benchmark runs in tests/.
args=()
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --json) args+=("$1" "$(realpath -m -- "${2:?--json takes a file}")"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

cd "$(repo_root)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERALD_STATE_DIR/target}"
scripts/postgres.sh >/dev/null
scripts/replica.sh >/dev/null
REPLICA_PORT=5434 scripts/replica.sh >/dev/null
scripts/broker.sh >/dev/null
log "building the services (release)"
cargo build --release --workspace --bins --locked --quiet
cargo bench --locked -p herald-tests --bench "$name" -- "${args[@]}"
