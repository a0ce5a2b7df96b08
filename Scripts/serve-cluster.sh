#!/usr/bin/env bash
# `make serve-cluster`: a throw-away PostgreSQL 15 on 127.0.0.1 and three gateway nodes sharing it
# as their ledger (docs/operator-guide.md). Everything lives under var/cluster; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/debug/sandgate
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql-15)"; exit 1; }
PGPORT=${PGPORT:-55432}
ROOT=$PWD/var/cluster
mkdir -p "$ROOT"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -d "$ROOT/pg/data" ]; then
  mkdir -p "$ROOT/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$ROOT/pg"
  as_pg "$PGBIN/initdb" -D "$ROOT/pg/data" -U sandgate --auth=trust -E UTF8 --locale=C >/dev/null
fi
as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -l "$ROOT/pg/server.log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $ROOT/pg" start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sandgate ledger 2>/dev/null || true
URL="postgres://sandgate@127.0.0.1:$PGPORT/ledger"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -m fast stop >/dev/null || true
}
trap cleanup EXIT INT TERM
# One ledger key for every node (like the policies): the first node's, copied to the others.
for n in 1 2 3; do mkdir -p "$ROOT/node-$n"; done
[ -f "$ROOT/node-1/usage.key" ] || head -c 32 /dev/urandom > "$ROOT/node-1/usage.key"
chmod 600 "$ROOT/node-1/usage.key"
for n in 2 3; do cp -p "$ROOT/node-1/usage.key" "$ROOT/node-$n/usage.key"; done
for n in 1 2 3; do
  "$BIN" serve --policies Policies --state "$ROOT/node-$n" --ledger "$URL" --node-id "node-$n" \
    --listen "127.0.0.1:788$n" 2>"$ROOT/node-$n.log" &
  pids+=($!)
done
sleep 2
cat <<MSG
PostgreSQL ledger: $URL
Gateway nodes:     127.0.0.1:7881 (node-1), 127.0.0.1:7882 (node-2), 127.0.0.1:7883 (node-3)
                   logs in $ROOT/node-N.log
Verify and bill:   $BIN usage verify --state $ROOT/node-1 --ledger $URL
                   $BIN usage invoice --state $ROOT/node-1 --ledger $URL --from $(date -u +%F) --to $(date -u +%F) --format csv
Ctrl-C stops the nodes and PostgreSQL.
MSG
wait
