#!/usr/bin/env bash
# Issue 24 item 1: JSON-lines lookups (32 connections, primary key, 1,000,000 customers) with a
# grant without quotas and the same grant with daily_queries, daily_rows and monthly_cost_micros,
# on an empty ledger and on ledgers holding N records of that consumer in the current month, for
# each store. Runs alternate between the two grants; medians at the end.
#   Benchmarks/quota-lookup.sh [RUNS] [SECONDS] ["SIZES"] ["STORES"]
#   e.g. Benchmarks/quota-lookup.sh 3 10 "0 1000000 3000000" "sqlite postgres"
# SERVE_BIN=path/to/sandgate measures another build of the gateway (an earlier commit) on the same
# ledgers; the ledgers are always filled by this tree's sandgate-ledger-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
SIZES=${3:-"0 1000000"}
STORES=${4:-"sqlite postgres"}
ROWS=1000000
PORT=${PORT:-7920}
PGPORT=${PGPORT:-55460}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/quota-free
swift build -c release --product sandgate-ledger-bench >/dev/null
DIR=$PWD/$DIR
SERVE_BIN=${SERVE_BIN:-$BIN/sandgate}
# The same policies, the grant with quotas that a busy consumer never reaches.
mkdir -p "$DIR/quota-held"
cp "$DIR/quota-free/retail.yaml" "$DIR/quota-held/retail.yaml"
sed 's/      retail: {}/      retail: { daily_queries: 1000000000, daily_rows: 1000000000000, monthly_cost_micros: 1000000000000000 }/' \
  "$DIR/quota-free/consumers.yaml" > "$DIR/quota-held/consumers.yaml"
grep -q daily_queries "$DIR/quota-held/consumers.yaml"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
SERVER=""
PGDIR=$DIR/quota-pg
cleanup() {
  [ -n "$SERVER" ] && { kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
  [ -d "$PGDIR/data" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [[ " $STORES " == *" postgres "* ]]; then
  [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (make pg-deps)"; exit 1; }
  rm -rf "$PGDIR"; mkdir -p "$PGDIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U sandgate --auth=trust -E UTF8 --locale=C >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDIR" start >/dev/null
fi
PGURL() { echo "postgres://sandgate@127.0.0.1:$PGPORT/$1"; }

# A filled ledger per store and size, kept as a template: every run starts from a copy of it.
prepare() {
  local store=$1 size=$2 template=$DIR/quota-filled-$1-$2
  [ -d "$template" ] && return
  mkdir -p "$template"
  if [ "$store" = postgres ]; then
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate "filled_$size"
    [ "$size" -gt 0 ] && "$BIN/sandgate-ledger-bench" fill "$template" "$size" "$(PGURL "filled_$size")" bench-1
  else
    [ "$size" -gt 0 ] && "$BIN/sandgate-ledger-bench" fill "$template" "$size"
  fi
  return 0
}

# One run: a gateway on a fresh copy of the filled ledger; prints req/s and p99.
run() {
  local store=$1 size=$2 policies=$3 state=$DIR/quota-state extra=()
  rm -rf "$state"; cp -r "$DIR/quota-filled-$store-$size" "$state"
  if [ "$store" = postgres ]; then
    "$PGBIN/dropdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate --if-exists run
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate -T "filled_$size" run
    extra=(--ledger "$(PGURL run)" --node-id bench-1)
  fi
  "$SERVE_BIN" serve --policies "$DIR/$policies" --state "$state" --listen "127.0.0.1:$PORT" \
    --max-in-flight-per-consumer 64 "${extra[@]}" > "$DIR/quota-serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do grep -q "is serving" "$DIR/quota-serve.log" && break; sleep 0.5; done
  "$BIN/sandgate-load" --port "$PORT" --rows "$ROWS" --seconds "$SECONDS_PER_RUN" --consumer bench --key "$KEY" --query pk --connections 32 \
    | sed -E 's/.*→ ([0-9]+) req\/s.*p99 ([0-9.]+) ms.*/\1 \2/'
  kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); gateway $SERVE_BIN; $RUNS runs of $SECONDS_PER_RUN s"
RESULTS=$DIR/quota-results
: > "$RESULTS"
for store in $STORES; do for size in $SIZES; do prepare "$store" "$size"; done; done
# Rounds: each round runs every store, size and grant once, so load from elsewhere spreads evenly.
for i in $(seq 1 "$RUNS"); do
  for store in $STORES; do
    for size in $SIZES; do
      for grant in free held; do
        result=$(run "$store" "$size" "quota-$grant")
        echo "$store $size $grant $result" | tee -a "$RESULTS"
      done
    done
  done
done
echo
echo "store     records   grant        median req/s   (runs)              median p99 ms"
for store in $STORES; do
  for size in $SIZES; do
    for grant in free held; do
      rates=$(grep "^$store $size $grant " "$RESULTS" | awk '{print $4}')
      median=$(echo "$rates" | sort -n | awk '{ r[NR]=$1 } END { print r[int((NR+1)/2)] }')
      p99=$(grep "^$store $size $grant " "$RESULTS" | awk '{print $5}' | sort -n | awk '{ r[NR]=$1 } END { print r[int((NR+1)/2)] }')
      printf "%-9s %-9s %-12s %12s   (%s)   %8s\n" "$store" "$size" "$([ $grant = free ] && echo 'no quotas' || echo quotas)" \
        "$median" "$(echo $rates | sed 's/ /, /g')" "$p99"
    done
  done
done
