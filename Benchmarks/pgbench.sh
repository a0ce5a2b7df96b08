#!/usr/bin/env bash
# Issue 8 benchmark: the primary-key lookup of the load benchmark through the PostgreSQL front end
# (pgbench, simple protocol, 8 and 32 connections) beside the same query over JSON lines
# (sandgate-load) in the same run, on a 1,000,000-customer fixture, release build.
#   Benchmarks/pgbench.sh [ROWS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
SECONDS_PER_RUN=${2:-20}
PORT=${PORT:-7901}
PG_PORT=${PG_PORT:-5901}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/pg-policies scram
cat > "$DIR/lookup.sql" <<SQL
\\set id random(1, $ROWS)
SELECT customer_id, city, status FROM customers WHERE customer_id = :id;
SQL

rm -rf "$DIR/pg-state"
"$BIN/sandgate" serve --policies "$DIR/pg-policies" --state "$DIR/pg-state" --listen "127.0.0.1:$PORT" --pg-listen "127.0.0.1:$PG_PORT" \
    --max-in-flight-per-consumer 64 > "$DIR/pg-serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "is serving" "$DIR/pg-serve.log" && break; sleep 0.2; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); rows: $ROWS; $SECONDS_PER_RUN s per run"
export PGPASSWORD=$KEY PGOPTIONS='-c client_min_messages=warning'
for connections in 8 32; do
  $BIN/sandgate-load --port "$PORT" --rows "$ROWS" --seconds "$SECONDS_PER_RUN" --consumer bench --key "$KEY" --query pk --connections "$connections"
  # simple: the issue's command (a new SQL text per lookup: every one is parsed, checked and
  # prepared); prepared: the same lookup as a server-side prepared statement ($1), as drivers do.
  for mode in simple prepared; do
    rm -f "$DIR"/pgbench_log.*
    (cd "$DIR" && pgbench -n -M "$mode" -f lookup.sql -c "$connections" -j 2 -T "$SECONDS_PER_RUN" -l --log-prefix=pgbench_log \
        -h 127.0.0.1 -p "$PG_PORT" -U bench retail 2>&1 | grep -E "^(tps|number of failed)")
    # p50/p99 from the per-transaction log (column 3: latency in microseconds).
    cat "$DIR"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "pgbench -M %s c=%d: p50 %.2f ms, p99 %.2f ms over %d lookups\n", "'"$mode"'", '"$connections"', a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000, NR}'
  done
done
