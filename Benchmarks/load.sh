#!/usr/bin/env bash
# Issue 4 benchmark: throughput and p50/p99 latency of the JSON-lines gateway with 1, 8 and 32
# connections on a 1,000,000-customer fixture, for (a) a primary-key lookup and (b) a city count,
# plus the generator's own ceiling (ping) and raw SQLite on all cores for comparison.
#   Benchmarks/load.sh [ROWS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
SECONDS_PER_RUN=${2:-10}
PORT=${PORT:-7900}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/load-policies

rm -rf "$DIR/load-state"
"$BIN/sandgate" serve --policies "$DIR/load-policies" --state "$DIR/load-state" --listen "127.0.0.1:$PORT" --max-in-flight-per-consumer 64 > "$DIR/load-serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "is serving" "$DIR/load-serve.log" && break; sleep 0.2; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); rows: $ROWS; $SECONDS_PER_RUN s per run"
LOAD="$BIN/sandgate-load --port $PORT --rows $ROWS --seconds $SECONDS_PER_RUN --consumer bench --key $KEY"
$LOAD --query ping --connections 32
for query in pk city; do
  for connections in 1 8 32; do
    $LOAD --query $query --connections $connections
  done
done
SNAPSHOT=$(ls "$DIR"/load-state/snapshots/*.sqlite | head -1)
$BIN/sandgate-load --raw "$SNAPSHOT" --threads "$(nproc)" --seconds "$SECONDS_PER_RUN" --query pk --rows "$ROWS"
$BIN/sandgate-load --raw "$SNAPSHOT" --threads "$(nproc)" --seconds "$SECONDS_PER_RUN" --query city --rows "$ROWS"
