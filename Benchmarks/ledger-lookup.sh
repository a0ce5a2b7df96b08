#!/usr/bin/env bash
# Issue 9: the JSON-lines lookup benchmark (32 connections, primary-key lookup on the
# 1,000,000-customer fixture) with the embedded SQLite ledger and with a PostgreSQL ledger, side by
# side: RUNS alternating runs of SECONDS each, medians printed at the end. PostgreSQL 15 is a
# throw-away server in .build/bench/ledger-pg (initdb as the postgres user when run as root).
#   Benchmarks/ledger-lookup.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECONDS_PER_RUN=${2:-10}
ROWS=1000000
PORT=${PORT:-7910}
PGPORT=${PGPORT:-55450}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/lookup-policies
DIR=$PWD/$DIR

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (make pg-deps)"; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGDIR=$DIR/ledger-pg
rm -rf "$PGDIR"; mkdir -p "$PGDIR"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U sandgate --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDIR" start >/dev/null
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && { kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null || true
}
trap cleanup EXIT

# One run: a fresh gateway on the given ledger, 32 connections, prints req/s.
run() {
  rm -rf "$DIR/lookup-state"
  "$BIN/sandgate" serve --policies "$DIR/lookup-policies" --state "$DIR/lookup-state" --listen "127.0.0.1:$PORT" \
    --max-in-flight-per-consumer 64 "$@" > "$DIR/lookup-serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do grep -q "is serving" "$DIR/lookup-serve.log" && break; sleep 0.2; done
  "$BIN/sandgate-load" --port "$PORT" --rows "$ROWS" --seconds "$SECONDS_PER_RUN" --consumer bench --key "$KEY" --query pk --connections 32
  kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $RUNS runs of $SECONDS_PER_RUN s each"
: > "$DIR/lookup-results"
for i in $(seq 1 "$RUNS"); do
  "$PGBIN/dropdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate --if-exists ledger; "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate ledger
  echo "sqlite $(run | tee /dev/stderr | sed -E 's/.*→ ([0-9]+) req\/s.*p99 ([0-9.]+) ms.*/\1 \2/')" >> "$DIR/lookup-results"
  echo "postgres $(run --ledger "postgres://sandgate@127.0.0.1:$PGPORT/ledger" --node-id bench-1 | tee /dev/stderr | sed -E 's/.*→ ([0-9]+) req\/s.*p99 ([0-9.]+) ms.*/\1 \2/')" >> "$DIR/lookup-results"
done
for store in sqlite postgres; do
  grep "^$store " "$DIR/lookup-results" | awk -v s="$store" '{print $2, $3}' | sort -n | awk -v s="$store" '
    { r[NR]=$1; p[NR]=$2 } END { m=int((NR+1)/2); printf "%s ledger: median %d req/s (runs: ", s, r[m]; for (i=1;i<=NR;i++) printf "%s%d", (i>1?", ":""), r[i]; print ")" }'
done
