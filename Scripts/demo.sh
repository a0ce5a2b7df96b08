#!/usr/bin/env bash
# `make demo`: runs the README's example queries through the gateway on the shipped policies and
# demo fixture, as the demo consumer analyst-a, without starting a server.
set -euo pipefail
cd "$(dirname "$0")/.."
sandgate=.build/debug/sandgate

"$sandgate" policy check
echo "\$ sandgate policy test | tail -1"
"$sandgate" policy test | tail -1
echo
run() {
    echo "\$ sandgate query --dataset retail --as analyst-a \"$1\""
    "$sandgate" query --dataset retail --as analyst-a "$1" || true
    echo
}
run "SELECT name, phone, id_card, email, city, birth_date FROM customers LIMIT 5"
run "SELECT strftime('%Y', birth_date) AS year, count(*) AS customers FROM customers GROUP BY year ORDER BY year LIMIT 3"
run "SELECT city, count(*) AS customers FROM customers GROUP BY city ORDER BY customers DESC LIMIT 5"
run "SELECT count(*) FROM customers WHERE phone LIKE '138%'"
run "SELECT salary FROM customers"
run "SELECT * FROM orders"
run "SELECT channel, count(*) AS orders, round(avg(amount), 2) AS mean FROM orders GROUP BY channel ORDER BY orders DESC"
run "SELECT c.city, count(*) AS orders FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY orders DESC LIMIT 5"
run "SELECT created_at, count(*) FROM orders GROUP BY created_at LIMIT 3"
echo "\$ sandgate explain --dataset retail --as analyst-a \"SELECT city, count(*) FROM customers GROUP BY city\""
"$sandgate" explain --dataset retail --as analyst-a "SELECT city, count(*) FROM customers GROUP BY city"
echo
run "PRAGMA table_info(customers)"
"$sandgate" describe --as analyst-a
echo
echo "\$ sandgate usage export --format csv | tail -3     # this month so far"
"$sandgate" usage export --format csv | tail -3
echo "\$ sandgate query --dataset retail --as analyst-a --purpose credit_risk \"SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY n DESC LIMIT 3\""
"$sandgate" query --dataset retail --as analyst-a --purpose credit_risk "SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY n DESC LIMIT 3"
echo
echo "\$ sandgate usage invoice"
"$sandgate" usage invoice
echo "\$ sandgate usage settle     # per holder, dataset and purpose: gross, platform fee, holder revenue"
"$sandgate" usage settle
"$sandgate" usage verify
echo "\$ sandgate consumer list"
"$sandgate" consumer list
