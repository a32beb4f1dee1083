#!/bin/sh
# Reconnect storm benchmark: one CP restarted under N connected DPs (a second process),
# measured from the new listener until every DP has re-synced, RUNS times per scenario.
# Usage: bench/storm.sh [N] [RUNS] [SCENARIOS]
#   SCENARIOS: comma-separated ARRIVAL:KEYS, ARRIVAL once|jitter, KEYS shared|lost|off
#   (default once:shared,once:lost,jitter:shared,jitter:lost)
# Prints the JSON lines of examples/storm.rs (the last one has the medians), then the
# isolated handshake rates (`storm handshakes`).
set -e
N=${1:-10000}
RUNS=${2:-3}
SCENARIOS=${3:-once:shared,once:lost,jitter:shared,jitter:lost}
# Every connection holds one descriptor on each side; raise the limit as far as allowed
# (the hard limit caps it without CAP_SYS_RESOURCE).
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
cargo build --release --example storm >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/storm"
"$BIN" run -n "$N" --runs "$RUNS" --scenarios "$SCENARIOS"
"$BIN" handshakes -n 2000
