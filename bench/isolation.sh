#!/bin/sh
# Isolation benchmark: a good DP's PingCP round trip alone and beside each kind of bad peer,
# and the fan-out to N good DPs without and with bad peers, against one ControlPlane.
# Usage: bench/isolation.sh [REPS=3] [DPS=1000] [BAD=100]
# Prints one JSON line per measurement, then a table of medians with the targets.
set -e
REPS=${1:-3}; DPS=${2:-1000}; BAD=${3:-100}
# Every connection holds one descriptor on each side; raise the limit as far as allowed.
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
cargo build --release --example isolation >&2
exec "${CARGO_TARGET_DIR:-target}/release/examples/isolation" run --reps "$REPS" --dps "$DPS" --bad "$BAD"
