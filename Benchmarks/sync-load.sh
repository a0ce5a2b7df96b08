#!/usr/bin/env bash
# Issue 24 item 4: syncs per query and lookups/s with the SQLite ledger on disk and on tmpfs, at
# 1, 8 and 32 connections (JSON lines, primary key, 1,000,000 customers). Each round starts one
# gateway per place and runs the three connection counts against it; `perf stat` counts the
# gateway's fsync and fdatasync calls during each run. Medians of the rounds at the end.
#   Benchmarks/sync-load.sh [ROUNDS] [SECONDS]
# SERVE_BIN=path/to/sandgate measures another build (an earlier commit) the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
ROWS=1000000
PORT=${PORT:-7930}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/sync-policies
DIR=$PWD/$DIR
SERVE_BIN=${SERVE_BIN:-$BIN/sandgate}
command -v perf >/dev/null || { echo "perf is needed (apt install linux-perf)"; exit 1; }
SHM=/dev/shm/sandgate-sync-state
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && { kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
  rm -rf "$SHM"
}
trap cleanup EXIT
RESULTS=$DIR/sync-results.txt
: > "$RESULTS"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); gateway $SERVE_BIN; $ROUNDS rounds of $SECONDS_PER_RUN s"

for round in $(seq 1 "$ROUNDS"); do
  for place in disk tmpfs; do
    state=$DIR/sync-state
    [ "$place" = tmpfs ] && state=$SHM
    rm -rf "$state"
    "$SERVE_BIN" serve --policies "$DIR/sync-policies" --state "$state" --listen "127.0.0.1:$PORT" \
      --max-in-flight-per-consumer 64 > "$DIR/sync-serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 600); do grep -q "is serving" "$DIR/sync-serve.log" && break; sleep 0.5; done
    for connections in 1 8 32; do
      perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$SERVER" -o "$DIR/sync-perf.txt" &
      PERF=$!
      line=$("$BIN/sandgate-load" --port "$PORT" --rows "$ROWS" --seconds "$SECONDS_PER_RUN" --consumer bench --key "$KEY" \
        --query pk --connections "$connections")
      kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
      rate=$(echo "$line" | sed -E 's/.*→ ([0-9]+) req\/s.*/\1/')
      requests=$(echo "$line" | sed -E 's/.*: ([0-9]+) ok, ([0-9]+) errors.*/\1/')
      syncs=$(awk -F, '/sys_enter_f/ { total += $1 } END { print total + 0 }' "$DIR/sync-perf.txt")
      echo "$place $connections $rate $syncs $requests" | tee -a "$RESULTS"
    done
    kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
  done
done

echo
printf '%-6s %-11s %12s   %-26s %s\n' place connections "median req/s" "(rounds)" "syncs per query (rounds)"
for connections in 1 8 32; do
  for place in disk tmpfs; do
    rates=$(awk -v p="$place" -v c="$connections" '$1 == p && $2 == c { print $3 }' "$RESULTS")
    median=$(echo "$rates" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    perquery=$(awk -v p="$place" -v c="$connections" '$1 == p && $2 == c && $5 > 0 { printf "%.2f ", $4 / $5 }' "$RESULTS")
    printf '%-6s %-11s %12s   %-26s %s\n' "$place" "$connections" "$median" "($(echo $rates | tr ' ' ','))" "$perquery"
  done
done
