#!/usr/bin/env bash
# Issue 12 item 4 benchmark: release build of the server on the demo policies; a client's ping
# latency (p50/p99/max) while 8 connections stream 1 MiB lines of nested JSON, then while 3
# connections pipeline 300,000 pings each (the red team's finding).
#   Benchmarks/flood.sh [SECONDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
PORT=${PORT:-7910}
swift build -c release --product sandgate >/dev/null
[ -f Fixtures/retail.sqlite ] || .build/release/sandgate fixtures generate --rows 5000 --out Fixtures/retail.sqlite
STATE=$(mktemp -d)
.build/release/sandgate serve --policies Policies --state "$STATE" --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$STATE"' EXIT
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
for _ in $(seq "$RUNS"); do python3 Benchmarks/flood.py 127.0.0.1 "$PORT" "$SECONDS_PER_RUN" lines; done
for _ in $(seq "$RUNS"); do python3 Benchmarks/flood.py 127.0.0.1 "$PORT" 8 pings; done
echo "server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print $2, $3}')"
