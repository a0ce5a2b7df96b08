#!/usr/bin/env bash
# Before/after of the lookup load benchmark: the primary-key lookup over JSON lines (sandgate-load,
# 1/8/32 connections) and over the PostgreSQL front end (pgbench, simple protocol, 8/32), with two
# builds of sandgate alternating round by round in one run, so a loaded machine slows both alike.
# Prints each figure's median and min–max over ROUNDS and the after/before ratio of medians.
#   Benchmarks/ab-load.sh BEFORE_DIR AFTER_DIR [ROWS] [SECONDS] [ROUNDS]
# Each DIR holds release binaries `sandgate` and `sandgate-load` (e.g. .build/release of two
# checkouts). The fixture and policies come from bench-setup.sh in this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$(realpath "$1"); AFTER=$(realpath "$2")
ROWS=${3:-1000000}
SECONDS_PER_RUN=${4:-10}
ROUNDS=${5:-3}
PORT=${PORT:-7902}
PG_PORT=${PG_PORT:-5902}
. Benchmarks/bench-setup.sh
bench_setup "$ROWS" .build/bench/ab-policies scram
cat > "$DIR/ab-lookup.sql" <<SQL
\\set id random(1, $ROWS)
SELECT customer_id, city, status FROM customers WHERE customer_id = :id;
SQL
RESULTS=$(mktemp)
export PGPASSWORD=$KEY PGOPTIONS='-c client_min_messages=warning'

run_side() {  # run_side LABEL BINDIR ROUND
  local label=$1 bin=$2 round=$3
  rm -rf "$DIR/ab-state"
  "$bin/sandgate" serve --policies "$DIR/ab-policies" --state "$DIR/ab-state" --listen "127.0.0.1:$PORT" \
      --pg-listen "127.0.0.1:$PG_PORT" --max-in-flight-per-consumer 64 > "$DIR/ab-serve.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 300); do grep -q "is serving" "$DIR/ab-serve.log" && break; sleep 0.2; done
  for connections in 1 8 32; do
    local rps
    rps=$("$bin/sandgate-load" --port "$PORT" --rows "$ROWS" --seconds "$SECONDS_PER_RUN" --consumer bench --key "$KEY" \
        --query pk --connections "$connections" | sed -n 's/.*→ \([0-9]*\) req\/s.*/\1/p')
    echo "$label jsonl-c$connections $rps" >> "$RESULTS"
  done
  for connections in 8 32; do
    local tps
    tps=$(cd "$DIR" && pgbench -n -M simple -f ab-lookup.sql -c "$connections" -j 2 -T "$SECONDS_PER_RUN" \
        -h 127.0.0.1 -p "$PG_PORT" -U bench retail 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | cut -d. -f1)
    echo "$label pgwire-simple-c$connections $tps" >> "$RESULTS"
  done
  kill -INT "$server"; wait "$server" 2>/dev/null || true
  echo "round $round $label done" >&2
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg); rows: $ROWS; $SECONDS_PER_RUN s per run; $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which side goes first, so neither always runs on a warmer (or hotter) machine.
  if (( round % 2 )); then run_side before "$BEFORE" "$round"; run_side after "$AFTER" "$round"
  else run_side after "$AFTER" "$round"; run_side before "$BEFORE" "$round"; fi
done
python3 - "$RESULTS" <<'PY'
import sys, statistics, collections
values = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, name, value = line.split()
    values[(side, name)].append(float(value or 0))
names = sorted({name for _, name in values}, key=lambda n: (n.split("-c")[0], int(n.split("-c")[1])))
print(f"{'figure':24} {'before median (min–max)':>26} {'after median (min–max)':>26} {'after/before':>12}")
for name in names:
    b, a = values[("before", name)], values[("after", name)]
    mb, ma = statistics.median(b), statistics.median(a)
    print(f"{name:24} {mb:10.0f} ({min(b):.0f}–{max(b):.0f})     {ma:10.0f} ({min(a):.0f}–{max(a):.0f})     {ma / mb if mb else 0:10.2f}")
PY
rm -f "$RESULTS"
