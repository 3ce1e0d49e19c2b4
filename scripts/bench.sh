#!/usr/bin/env bash
# Runs a benchmark (tests/benches/NAME.rs) against the real parts, release build:
# PostgreSQL, its two standbys and the broker are started if needed, as the test command does.
#
#   scripts/bench.sh detection     commit → event latency, rows read again per poll, poll time
#   scripts/bench.sh sender        messages sent per second, provider answering at once and in 100 ms
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERALD_STATE_DIR/target}"
name="${1:?usage: scripts/bench.sh NAME (one of: $(ls tests/benches | sed 's/\.rs$//' | tr '\n' ' '))}"

scripts/postgres.sh >/dev/null
scripts/replica.sh >/dev/null
REPLICA_PORT=5434 scripts/replica.sh >/dev/null
scripts/broker.sh >/dev/null
log "building the services (release)"
cargo build --release --workspace --bins --locked --quiet
cargo bench --locked -p herald-tests --bench "$name"
