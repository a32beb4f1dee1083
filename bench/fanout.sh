#!/bin/sh
# Fan-out benchmark: one CP, N DPs in a second process, a config of SIZE gzipped bytes
# pushed RUNS times, the DPs speaking PROTOCOL (wrpc or json).
# Usage: bench/fanout.sh [N] [SIZE] [RUNS] [PROTOCOL]
# Prints the JSON lines of examples/fanout.rs; the last one is the summary.
set -e
N=${1:-10000}
SIZE=${2:-1048576}
RUNS=${3:-5}
PROTOCOL=${4:-wrpc}
# Every connection holds one descriptor on each side; raise the limit as far as allowed
# (the hard limit caps it without CAP_SYS_RESOURCE).
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
cargo build --release --example fanout >&2
exec "${CARGO_TARGET_DIR:-target}/release/examples/fanout" run -n "$N" --size "$SIZE" --runs "$RUNS" --protocol "$PROTOCOL"
