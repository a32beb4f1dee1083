#!/bin/sh
# The machine's limit for the fan-out: the same bytes sealed by rustls server connections,
# sent over loopback TCP to rustls client connections in a second process, and opened
# there, with nothing of this crate in between. LANES messages are on the wire at once,
# each until its receiver answers (the fan-out's window keeps 16 pushes on the wire).
# Usage: bench/limit.sh [N=10000] [SIZE=1048576] [RUNS=5] [LANES=16]
# Prints one JSON line per run (seconds, CPU seconds of each process), then the medians.
set -e
N=${1:-10000}
SIZE=${2:-1048576}
RUNS=${3:-5}
LANES=${4:-16}
# Every connection holds one descriptor on each side; raise the limit as far as allowed.
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
cargo build --release --example fanout >&2
exec "${CARGO_TARGET_DIR:-target}/release/examples/fanout" limit -n "$N" --size "$SIZE" --runs "$RUNS" --lanes "$LANES"
