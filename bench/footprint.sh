#!/bin/sh
# Footprint: the stripped size of examples/dp built with [profile.small], and the RSS of
# that DP once connected to examples/cp, config applied, idle for IDLE seconds.
#
# Two builds of the same DP: linked against the system's glibc (dynamic), and, when the
# x86_64-unknown-linux-musl target can be had (rustup target add), a static musl build,
# what a minimal or embedded DP ships: no shared libc pages in its RSS.
# Usage: bench/footprint.sh [RUNS] [IDLE]
set -e
RUNS=${1:-5}; IDLE=${2:-5}
MUSL=x86_64-unknown-linux-musl
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
cargo build --profile small --example dp >&2
BUILDS="glibc:$T/small/examples/dp"
if rustup target list --installed 2>/dev/null | grep -q "^$MUSL\$" \
  || rustup target add "$MUSL" >&2 2>/dev/null; then
  # ring's C parts build with the system's gcc for musl (no musl-gcc needed).
  CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc} \
    cargo build --profile small --example dp --target "$MUSL" >&2
  BUILDS="$BUILDS musl-static:$T/$MUSL/small/examples/dp"
else
  echo "footprint: no $MUSL target, measuring the glibc build only" >&2
fi
cargo build --release --example cp --example echo >&2
DIR=$(mktemp -d)
trap 'kill $CP $DP 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$T/release/examples/echo" gen-certs "$DIR" >/dev/null
"$T/release/examples/cp" --listen 127.0.0.1:0 --cert "$DIR/server.pem" --key "$DIR/server.key" \
  --mtls none --config examples/kong.json >"$DIR/cp.out" 2>"$DIR/cp.err" &
CP=$!
while ! grep -q listening "$DIR/cp.out" 2>/dev/null; do sleep 0.1; done
ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*"event":"listening".*/\1/p; s/.*"event":"listening".*"addr":"\([^"]*\)".*/\1/p' "$DIR/cp.out" | head -1)
i=0
while [ $i -lt "$RUNS" ]; do
  for build in $BUILDS; do
    LIBC=${build%%:*}; BIN=${build#*:}
    SIZE=$(stat -c %s "$BIN")
    rm -f "$DIR/dp.out"
    "$BIN" --cp "$ADDR" --ca "$DIR/ca.pem" >"$DIR/dp.out" 2>"$DIR/dp.err" &
    DP=$!
    while ! grep -q config_applied "$DIR/dp.out" 2>/dev/null; do sleep 0.1; done
    sleep "$IDLE"
    RSS=$(awk '/^VmRSS:/ {print $2}' /proc/$DP/status)
    # Private memory (heap, stacks, written data) and file pages (the program's code and
    # read-only data, and with glibc the shared libc): shared with the page cache.
    ANON=$(awk '/^RssAnon:/ {print $2}' /proc/$DP/status)
    FILE=$(awk '/^RssFile:/ {print $2}' /proc/$DP/status)
    THREADS=$(awk '/^Threads:/ {print $2}' /proc/$DP/status)
    echo "{\"event\":\"idle-dp\",\"libc\":\"$LIBC\",\"run\":$((i+1)),\"stripped_bytes\":$SIZE,\"rss_kib\":$RSS,\"rss_anon_kib\":$ANON,\"rss_file_kib\":$FILE,\"threads\":$THREADS}"
    kill $DP; wait $DP 2>/dev/null || true
  done
  i=$((i+1))
done
