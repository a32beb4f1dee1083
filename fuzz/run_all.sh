#!/usr/bin/env bash
# Runs every fuzz target for MAX_TIME seconds (default 600), JOBS at a time (default 2),
# at low priority, each starting from its seeds and keeping its corpus in corpus/<target>.
# Logs go to LOG_DIR (default fuzz/logs); the last line of each is libFuzzer's
# "Done N runs in T second(s)". Exits non-zero if any target crashed, hung or ran out of
# memory (the failing input is in artifacts/<target>/).
#
#   fuzz/run_all.sh                      # the long run: 10 minutes per target
#   MAX_TIME=30 fuzz/run_all.sh          # a smoke run
set -u
cd "$(dirname "$0")"
MAX_TIME=${MAX_TIME:-600}
JOBS=${JOBS:-2}
LOG_DIR=${LOG_DIR:-logs}
SANITIZER=${SANITIZER:-none}
mkdir -p "$LOG_DIR"
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
cargo fuzz build -s "$SANITIZER" || exit 1
run() {
    t=$1
    mkdir -p "corpus/$t"
    nice -n 10 cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$MAX_TIME" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
        >"$LOG_DIR/$t.log" 2>&1
    rc=$?
    echo "$t: exit $rc, $(grep -E '^Done [0-9]+ runs' "$LOG_DIR/$t.log" || echo 'no final line')"
    return $rc
}
export -f run
export MAX_TIME LOG_DIR SANITIZER
echo "$targets" | xargs -P "$JOBS" -I{} bash -c 'run {}'
