#!/usr/bin/env bash
# Real clients against a running gateway (issue: PostgreSQL wire protocol): psql, psycopg 3,
# psycopg2, pandas/SQLAlchemy, pgjdbc, and the JSON-lines / pgwire / CLI parity suite.
# Usage: Tests/clients/run.sh [SANDGATE_BINARY]   (make test runs it after `swift test`)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-.build/debug/sandgate}
KEY=sg_demo_analyst_a_2026
missing=""
command -v psql >/dev/null || missing="$missing psql(postgresql-client)"
command -v openssl >/dev/null || missing="$missing openssl"
command -v java >/dev/null || missing="$missing java(openjdk-17-jdk-headless)"
[ -f /usr/share/java/postgresql.jar ] || missing="$missing pgjdbc(libpostgresql-jdbc-java)"
[ -x .venv/bin/python ] || missing="$missing python-venv(.venv: make client-deps)"
if [ -n "$missing" ]; then echo "client tests: missing$missing — run 'make client-deps'"; exit 1; fi

WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp -r Policies "$WORK/Policies"
# The copy points at the shipped fixture; a lower step budget makes the budget breach deterministic.
sed -i "s#source: ../Fixtures/retail.sqlite#source: $PWD/Fixtures/retail.sqlite#; s/max_vm_steps: .*/max_vm_steps: 20000000/" "$WORK/Policies/retail.yaml"
# TLS on the PostgreSQL listener with a throw-away self-signed certificate (clients default to
# sslmode=prefer, so most checks below run over TLS; one runs in plain text).
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
"$BIN" serve --policies "$WORK/Policies" --state "$WORK/state" --listen 127.0.0.1:0 --pg-listen 127.0.0.1:0 \
    --pg-tls-cert "$WORK/cert.pem" --pg-tls-key "$WORK/key.pem" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do grep -q "psql:" "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
JSON_PORT=$(sed -n 's/.* on 127.0.0.1:\([0-9]*\) (JSON lines).*/\1/p' "$WORK/serve.log" | head -1)
PG_PORT=$(sed -n "s/.*port=\([0-9]*\) user=.*/\1/p" "$WORK/serve.log" | head -1)
[ -n "$JSON_PORT" ] && [ -n "$PG_PORT" ] || { echo "client tests: the gateway did not start"; cat "$WORK/serve.log"; exit 1; }
echo "client tests: gateway on JSON $JSON_PORT, PostgreSQL $PG_PORT"

fail() { echo "FAIL: $1"; echo "--- output:"; cat "$WORK/out"; exit 1; }
export PGPASSWORD=$KEY PGCONNECT_TIMEOUT=10
CONN="host=127.0.0.1 port=$PG_PORT user=analyst-a dbname=retail"
psql "$CONN" -X -A -t -c "SELECT city, count(*) FROM customers WHERE city = 'Shanghai' GROUP BY city" > "$WORK/out" 2>&1 || fail "psql query"
grep -q '^Shanghai|[0-9]*$' "$WORK/out" || fail "psql query result"
grep -q 'NOTICE:  sandgate: query [0-9a-f]\{32\}' "$WORK/out" || fail "psql usage notice"
echo "ok: psql query with its usage notice"
psql "$CONN sslmode=require" -X -c '\conninfo' > "$WORK/out" 2>&1 && grep -q 'SSL connection (protocol: TLS' "$WORK/out" || fail "psql over TLS (sslmode=require)"
psql "$CONN sslmode=disable" -X -A -t -c "SELECT 1 AS one" > "$WORK/out" 2>&1 && grep -q '^1$' "$WORK/out" || fail "psql in plain text (sslmode=disable)"
echo "ok: psql over TLS and in plain text"
psql "$CONN" -X -c '\dt' > "$WORK/out" 2>&1 || fail "psql \\dt"
grep -q 'customers | table' "$WORK/out" && grep -q 'orders    | table' "$WORK/out" || fail "psql \\dt lists the tables"
echo "ok: psql \\dt"
psql "$CONN" -X -c '\d customers' > "$WORK/out" 2>&1 || fail "psql \\d customers"
grep -q 'birth_date' "$WORK/out" && ! grep -q salary "$WORK/out" || fail "psql \\d customers shows visible columns only"
echo "ok: psql \\d customers (no hidden column)"
psql "$CONN" -X -c '\l' > "$WORK/out" 2>&1 && grep -q '^ retail' "$WORK/out" || fail "psql \\l"
echo "ok: psql \\l"
psql "$CONN" -X -v ON_ERROR_STOP=1 -c "SELECT salary FROM customers" > "$WORK/out" 2>&1 && fail "psql refusal must fail"
grep -q 'ERROR:  no_such_column: no such column: salary' "$WORK/out" && grep -q 'HINT:' "$WORK/out" || fail "psql refusal message and hint"
echo "ok: psql refused query with code and hint"
psql "$CONN" -X -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM customers a, customers b, customers c" > "$WORK/out" 2>&1 && fail "psql budget breach must fail"
grep -q 'ERROR:  budget_exceeded' "$WORK/out" || fail "psql budget breach"
echo "ok: psql budget breach"
PGPASSWORD=wrong psql "$CONN" -X -c "SELECT 1" > "$WORK/out" 2>&1 && fail "psql wrong key must fail"
grep -q 'password authentication failed' "$WORK/out" || fail "psql wrong key message"
echo "ok: psql wrong key refused"
# Issue 13: the purpose as a startup option (in the connection string and through PGOPTIONS) and
# by SET; the demo dataset lists no purposes, so a purpose is optional there and recorded.
psql "$CONN options='-c sandgate.purpose=credit_risk'" -X -A -t -c "SELECT city FROM customers LIMIT 1" > "$WORK/out" 2>&1 || fail "psql with options=-c sandgate.purpose"
PGOPTIONS="-c sandgate.purpose=public_health_research" psql "$CONN" -X -A -t -c "SHOW sandgate.purpose" > "$WORK/out" 2>&1 && grep -q '^public_health_research$' "$WORK/out" || fail "psql PGOPTIONS sandgate.purpose"
psql "$CONN" -X -A -t -v ON_ERROR_STOP=1 -c "SET sandgate.purpose = 'not a name'" -c "SELECT city FROM customers LIMIT 1" > "$WORK/out" 2>&1 && fail "an invalid purpose must be refused"
grep -q 'ERROR:  purpose_not_allowed' "$WORK/out" || fail "psql invalid purpose refused with purpose_not_allowed"
"$BIN" usage export --policies "$WORK/Policies" --state "$WORK/state" --format jsonl > "$WORK/out" 2>&1 || fail "usage export"
grep -q '"purpose":"credit_risk"' "$WORK/out" || fail "the purpose declared over psql is in the ledger"
echo "ok: psql declares a purpose (options, PGOPTIONS, SET); recorded in the ledger"

java -cp /usr/share/java/postgresql.jar Tests/clients/JdbcClient.java "$PG_PORT" "$KEY" > "$WORK/out" 2>&1 || fail "pgjdbc"
grep -q '^prepared: Shanghai [0-9]*$' "$WORK/out" || fail "pgjdbc PreparedStatement (server-prepared after 5 runs)"
grep -q '^refusal: 42703 ERROR: no_such_column' "$WORK/out" || fail "pgjdbc refusal"
grep -q '^tables: customers orders$' "$WORK/out" || fail "pgjdbc getTables"
grep -q '^columns: customer_id:text amount:float8 channel:text created_at:timestamp$' "$WORK/out" || fail "pgjdbc getColumns"
echo "ok: pgjdbc PreparedStatement, refusal, getTables, getColumns"

.venv/bin/python Tests/clients/clients.py "$BIN" "$WORK/Policies" "$WORK/state" "$JSON_PORT" "$PG_PORT" "$KEY"
