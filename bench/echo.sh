#!/bin/sh
# Echo benchmark: the wRPC echo server in one process, the load generator in another,
# and the raw rustls+tungstenite baseline measured by the load generator in the same run.
# Usage: bench/echo.sh [RUNS] [N] [M] [C] [SIZE]
# Prints one JSON line per phase per run, then the medians.
set -e
RUNS=${1:-5}; N=${2:-20000}; M=${3:-200000}; C=${4:-32}; SIZE=${5:-64}
cd "$(dirname "$0")/.."
cargo build --release --example echo >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/echo"
DIR=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" gen-certs "$DIR" >/dev/null
"$BIN" server --listen 127.0.0.1:0 --cert "$DIR/server.pem" --key "$DIR/server.key" >"$DIR/server.out" &
SERVER=$!
while ! grep -q listening "$DIR/server.out" 2>/dev/null; do sleep 0.1; done
ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$DIR/server.out")
i=0
while [ $i -lt "$RUNS" ]; do
  "$BIN" bench --url "wss://$ADDR/v1/wrpc" --ca "$DIR/ca.pem" -n "$N" -m "$M" -c "$C" \
    --size "$SIZE" --baseline | tee -a "$DIR/runs.jsonl"
  i=$((i+1))
done
python3 - "$DIR/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for phase in ("raw-sequential", "sequential", "concurrent"):
    r = [x for x in rows if x["phase"] == phase]
    med[phase] = {k: statistics.median(x[k] for x in r) for k in ("calls_per_sec", "p50_us", "p99_us")}
ratio = med["sequential"]["p50_us"] / med["raw-sequential"]["p50_us"]
print(json.dumps({"event": "medians", "runs": len(rows) // 3, **med,
                  "sequential_p50_vs_raw": round(ratio, 2)}))
PY
