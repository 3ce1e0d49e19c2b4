#!/usr/bin/env bash
# Runs every check and test on a fresh or warm machine: starts PostgreSQL, two streaming
# standbys of it and the Kafka-protocol broker if they are not running (installing the
# broker and Chromium the first time), then formatting, lints, the build and the whole
# test suite.
# Idempotent; safe to re-run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"
# Build output is cached outside the clone, so a fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERALD_STATE_DIR/target}"

scripts/postgres.sh
# Two hot standbys as source replicas: one in sync, one the scenarios delay and pause.
scripts/replica.sh
REPLICA_PORT=5434 scripts/replica.sh
# A broker with no topics: every test makes its own, and tansu's SQLite store slows down as
# they (and benchmark runs) pile up.
scripts/broker.sh reset
scripts/broker.sh
# A real browser for the status page's test.
scripts/chromium.sh

log "dropping databases left by earlier test runs"
PGPASSWORD=herald psql -h 127.0.0.1 -U herald -d postgres -Atqc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'herald\_t\_%'" |
    while read -r db; do
        PGPASSWORD=herald psql -h 127.0.0.1 -U herald -d postgres -qc \
            "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    done

# No SQL Server runs here: every T-SQL file and query is parsed with a real T-SQL parser.
scripts/check-tsql.sh

# Nor Docker: the compose file and CI workflows are checked against their schemas.
scripts/check-yaml.sh

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building the services"
cargo build --workspace --bins --locked
log "running the tests"
results="$HERALD_STATE_DIR/test-results.log"
status=0
# Every test target, not the benchmarks (scripts/bench.sh runs those, on a release build).
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$results" || status=$?
# One closing line for the whole run (SQL Server scenarios count as skipped without one).
awk '/^test result:/ { passed += $4; failed += $6; skipped += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$results"
exit "$status"
