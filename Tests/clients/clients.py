"""Real PostgreSQL clients against a running sandgate (psycopg 3, psycopg2, pandas through
SQLAlchemy), and the parity suite: each policy case through JSON lines, pgwire and the local CLI
must give the same decision, the same values and the same usage record.

Usage: clients.py SANDGATE_BINARY POLICIES STATE JSON_PORT PG_PORT KEY
Every check raises on failure; the script prints one line per check and exits 1 on the first failure.
"""
import json, re, socket, subprocess, sys, datetime

import pandas as pd
import psycopg
import psycopg2
import sqlalchemy as sa

binary, policies, state, json_port, pg_port, key = sys.argv[1:7]
dsn = f"host=127.0.0.1 port={pg_port} user=analyst-a dbname=retail password={key}"


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


# --- psycopg 3: server-side binding, prepared statements, binary results, refusals -------------
with psycopg.connect(dsn, autocommit=True) as conn:
    notices = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    cur = conn.execute("SELECT city, count(*) AS n FROM customers WHERE city = %s GROUP BY city", ["Shanghai"])
    rows = cur.fetchall()
    check(len(rows) == 1 and rows[0][0] == "Shanghai" and isinstance(rows[0][1], int), "psycopg: server-side parameter, int8 column")
    check([d.type_code for d in cur.description] == [25, 20], "psycopg: RowDescription types text, int8")
    check(any(n.startswith("sandgate: query ") for n in notices), "psycopg: usage notice received")
    for _ in range(6):
        cur = conn.execute("SELECT count(*) FROM customers WHERE city = %s", ["Beijing"], prepare=True)
    check(cur.fetchone()[0] > 0, "psycopg: prepare=True statement reused six times")
    with conn.cursor(binary=True) as c:
        c.execute("SELECT 2::int8 AS a, 2.5 AS b, 'x' AS c, %s AS d", [42])
        check(c.fetchone() == (2, 2.5, "x", 42), "psycopg: binary results and parameters")
    cur = conn.execute("SELECT created_at, count(*) AS n FROM orders GROUP BY created_at LIMIT 1")
    check(cur.description[0].type_code in (25, 1114), "psycopg: aggregate query over orders")
    try:
        conn.execute("SELECT salary FROM customers")
        check(False, "psycopg: hidden column refused")
    except psycopg.Error as error:
        check(error.sqlstate == "42703" and error.diag.message_primary.startswith("no_such_column:") and "columns here" in (error.diag.message_hint or ""),
              "psycopg: hidden column refused with 42703, code and hint")
    try:
        conn.execute("SELECT count(*) FROM customers a, customers b, customers c")
        check(False, "psycopg: budget breach refused")
    except psycopg.Error as error:
        check(error.sqlstate == "54000" and error.diag.message_primary.startswith("budget_exceeded:"), "psycopg: budget breach is 54000 budget_exceeded")

# --- psycopg2 (client-side parameters, implicit BEGIN) ------------------------------------------
c2 = psycopg2.connect(dsn)
cur = c2.cursor()
cur.execute("SELECT city, count(*) FROM customers WHERE city = %s GROUP BY city", ("Shenzhen",))
check(cur.fetchall()[0][0] == "Shenzhen", "psycopg2: query with a client-side parameter inside its implicit transaction")
c2.rollback()
c2.close()

# --- Issue 13: declaring a purpose from Python (options in the connection, or SET) ----------------
with psycopg.connect(dsn, autocommit=True, options="-c sandgate.purpose=credit_risk") as conn:
    check(conn.execute("SHOW sandgate.purpose").fetchone()[0] == "credit_risk", "psycopg: options='-c sandgate.purpose=credit_risk' declares the purpose")
    conn.execute("SET sandgate.purpose = 'public_health_research'")
    check(conn.execute("SELECT city FROM customers LIMIT 1").fetchone() is not None, "psycopg: query under the purpose set by SET")
    check(conn.execute("SHOW sandgate.purpose").fetchone()[0] == "public_health_research", "psycopg: SET sandgate.purpose changes the session's purpose")

# --- pandas through SQLAlchemy's PostgreSQL dialect ----------------------------------------------
engine = sa.create_engine(f"postgresql+psycopg://analyst-a:{key}@127.0.0.1:{pg_port}/retail")
frame = pd.read_sql("SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY n DESC LIMIT 5", engine)
check(list(frame.columns) == ["city", "n"] and len(frame) == 5 and frame["n"].dtype.kind == "i", "pandas.read_sql: five rows, integer counts")
inspector = sa.inspect(engine)
check(inspector.get_table_names() == ["customers", "orders"], "SQLAlchemy inspector: the consumer's tables")
columns = [c["name"] for c in inspector.get_columns("customers")]
check("salary" not in columns and "city" in columns, "SQLAlchemy inspector: hidden columns are not in the catalog")

# --- Parity: JSON lines, pgwire and the local CLI ------------------------------------------------
class Lines:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", int(json_port)))
        self.file = self.sock.makefile("rwb")
        answer = self.request({"op": "auth", "consumer": "analyst-a", "key": key})
        assert answer["ok"], answer

    def request(self, obj):
        self.file.write((json.dumps(obj) + "\n").encode())
        self.file.flush()
        return json.loads(self.file.readline())


def text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat(sep=" ")
    return str(value)


lines = Lines()
cases = [
    "SELECT name, phone, email, city, birth_date FROM customers ORDER BY customer_id LIMIT 5",
    "SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY city",
    "SELECT channel, count(*) AS n, sum(amount) AS total FROM orders GROUP BY channel ORDER BY channel",
    "SELECT c.city, count(*) AS n FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY c.city",
    "SELECT customer_id, status FROM customers ORDER BY customer_id LIMIT 3",
    "SELECT city FROM customers",
    "SELECT salary FROM customers",
    "SELECT amount FROM orders",
    "SELECT * FROM custmers",
    "SELEC 1",
]
with psycopg.connect(dsn, autocommit=True) as conn:
    notices = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    for sql in cases:
        via_json = lines.request({"op": "query", "dataset": "retail", "sql": sql})
        notices.clear()
        try:
            cur = conn.execute(sql)
            via_pg = {"ok": True, "rows": [[text(v) for v in row] for row in cur.fetchall()]}
        except psycopg.Error as error:
            via_pg = {"ok": False, "code": error.diag.message_primary.split(":")[0]}
        pg_query_id = re.search(r"query ([0-9a-f]{32})", " ".join(notices))
        local = subprocess.run([binary, "query", "--policies", policies, "--state", state, "--dataset", "retail", "--as", "analyst-a", "--format", "json", sql],
                               capture_output=True, text=True)
        via_cli = json.loads(local.stdout.splitlines()[0])
        decisions = [via_json["ok"], via_pg["ok"], via_cli["ok"]]
        check(len(set(decisions)) == 1, f"parity decision: {sql}")
        if via_json["ok"]:
            json_rows = [[text(v) for v in row] for row in via_json["rows"]]
            cli_rows = [[text(v) for v in row] for row in via_cli["rows"]]
            # join tokens are per query text and key, identical across front ends
            check(json_rows == via_pg["rows"] == cli_rows, f"parity values: {sql}")
            check(via_json["types"] == via_cli["types"], f"parity types: {sql}")
        else:
            check(via_json["error"]["code"] == via_pg["code"] == via_cli["error"]["code"], f"parity code: {sql}")
        check(pg_query_id is not None, f"pgwire notice names the query: {sql}")
        ids = [via_json["usage"]["query_id"], pg_query_id.group(1), via_cli["usage"]["query_id"]]
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        export = subprocess.run([binary, "usage", "export", "--policies", policies, "--state", state, "--from", today, "--to", today, "--format", "jsonl"],
                                capture_output=True, text=True, check=True)
        records = {r["query_id"]: r for r in map(json.loads, export.stdout.splitlines())}
        fields = ["status", "error_code", "rows", "cells", "bytes", "masked_cells", "suppressed_groups", "cost_micros", "rewritten_sql", "dataset", "consumer"]
        found = [records.get(i) for i in ids]
        check(all(found), f"parity: every front end's query has its record: {sql}")
        shapes = [{f: r.get(f) for f in fields} for r in found]
        check(shapes[0] == shapes[1] == shapes[2], f"parity usage record: {sql}")
print("all client checks passed")
