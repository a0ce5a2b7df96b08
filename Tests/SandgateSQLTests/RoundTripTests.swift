import Foundation
import SandgateFixtures
import SandgateSQL
import SandgateSQLite
import Testing

/// `render(parse(Q))` executed by SQLite must give exactly the result of Q, column names included.
@Suite struct RoundTripTests {
    static let fixture: String = {
        let path = NSTemporaryDirectory() + "sandgate-sql-fixture-\(ProcessInfo.processInfo.processIdentifier).sqlite"
        try! RetailFixture.generate(customers: 300, path: path)
        return path
    }()

    /// Hand-written queries over the retail fixture, one or more per construct of the dialect.
    static let handWritten: [String] = [
        // Basics, DISTINCT, ALL, aliases, stars.
        "SELECT * FROM customers", "SELECT ALL city FROM customers", "SELECT DISTINCT city FROM customers",
        "SELECT c.* FROM customers c", "SELECT customers.* FROM customers", "SELECT name AS n, phone p FROM customers",
        "SELECT name AS 'quoted alias' FROM customers", "SELECT 1, 'two', 3.0, NULL, x'ff', 0x1F, 1e3, .5, 2.5E-2",
        "SELECT 'it''s', '', 'a\"b'", "SELECT TRUE, FALSE, TRUE + 1", "SELECT typeof(CURRENT_DATE), length(CURRENT_TIME), length(CURRENT_TIMESTAMP)",
        "SELECT \"name\", [phone], `email` FROM \"customers\"", "SELECT c.\"name\" FROM customers AS c",
        "SELECT main.customers.name FROM main.customers LIMIT 3",
        // Operators and precedence exactly as SQLite's.
        "SELECT 1 + 2 * 3, (1 + 2) * 3, 2 * 3 % 4, 7 / 2, 7.0 / 2, -2 * -3, - - 4, ~5, +6",
        "SELECT 1 || 2 + 3, 'a' || 'b' || 'c', 3 - 2 - 1, 2 << 1 + 1, 6 & 3 | 8, 1 < 2 = 1, 1 = 1 = 1",
        "SELECT NOT 0 AND 0, NOT (0 AND 0), 1 OR 0 AND 0, (1 OR 0) AND 0, NOT 1 = 2, 1 = NOT 0",
        "SELECT 1 IS 1, 1 IS NOT 2, NULL IS NULL, 1 IS DISTINCT FROM 2, NULL IS NOT DISTINCT FROM NULL",
        "SELECT 5 BETWEEN 1 AND 10, 5 NOT BETWEEN 6 AND 7, 1 + 1 BETWEEN 2 AND 3 = 1",
        "SELECT 'abc' LIKE 'a%', 'abc' NOT LIKE 'b%', 'a_c' LIKE 'a\\_c' ESCAPE '\\', 'ABC' GLOB 'A*', 'x' NOT GLOB 'y'",
        "SELECT 2 IN (1, 2, 3), 2 NOT IN (1, 3), 2 IN (), NULL IN (1), 3 IN (SELECT 3)",
        "SELECT NULL ISNULL, 1 NOTNULL, 1 NOT NULL, NULL IS NULL",
        "SELECT '{\"a\":[1,2]}' -> '$.a', '{\"a\":[1,2]}' ->> '$.a[1]'",
        "SELECT 'a' COLLATE NOCASE = 'A', 'a' = 'A' COLLATE NOCASE, name COLLATE RTRIM FROM customers LIMIT 2",
        "SELECT CASE WHEN 1 > 2 THEN 'x' WHEN 2 > 1 THEN 'y' ELSE 'z' END, CASE 3 WHEN 1 THEN 'a' WHEN 3 THEN 'c' END",
        "SELECT CAST('12' AS INTEGER), CAST(3.7 AS INT), CAST(1 AS TEXT), CAST('x' AS BLOB), CAST(5 AS VARCHAR(10)), CAST(1 AS DECIMAL(10, 2))",
        "SELECT (1, 2) = (1, 2), (1, 2) < (1, 3), (customer_id, city) IN (SELECT customer_id, city FROM customers) FROM customers LIMIT 3",
        "SELECT -9223372036854775808, 9223372036854775807, -(1), 1 - -1",
        "SELECT ?1 IS NULL", "SELECT :a IS NULL, @b IS NULL, $c IS NULL",
        // WHERE, GROUP BY, HAVING, ORDER BY, LIMIT/OFFSET.
        "SELECT city, count(*) FROM customers GROUP BY city", "SELECT city, count(*) AS n FROM customers GROUP BY city HAVING n > 5 ORDER BY n DESC, city",
        "SELECT count(*) FROM customers HAVING count(*) > 0", "SELECT status, avg(salary), min(salary), max(salary), sum(salary), total(salary) FROM customers GROUP BY 1 ORDER BY 1",
        "SELECT city FROM customers ORDER BY city DESC NULLS LAST, name ASC NULLS FIRST LIMIT 5",
        "SELECT name FROM customers ORDER BY customer_id LIMIT 5 OFFSET 10", "SELECT name FROM customers ORDER BY customer_id LIMIT 10, 5",
        "SELECT name FROM customers ORDER BY 1 LIMIT (SELECT 2) + 1", "SELECT count(DISTINCT city), count(ALL city), count(city) FROM customers",
        "SELECT group_concat(DISTINCT status) FROM (SELECT status FROM customers ORDER BY status)",
        "SELECT city, group_concat(name, '|') FROM (SELECT city, name FROM customers ORDER BY customer_id) GROUP BY city ORDER BY city",
        "SELECT customer_id FROM customers WHERE salary > 20000 AND (city = 'Beijing' OR city = 'Shanghai') ORDER BY customer_id",
        "SELECT customer_id FROM customers WHERE name LIKE '王%' AND phone GLOB '13*' ORDER BY 1",
        "SELECT upper(email), lower(city), length(name), substr(phone, 1, 3), instr(email, '@'), replace(phone, '1', 'x') FROM customers LIMIT 4",
        "SELECT abs(-3), round(2.567, 2), coalesce(NULL, 2), ifnull(NULL, 3), nullif(1, 1), iif(1, 'a', 'b'), hex('a'), quote('x''y'), unicode('王'), char(65, 66)",
        "SELECT date('2024-02-29', '+1 year'), datetime(0, 'unixepoch'), strftime('%Y', '2024-05-06'), julianday('2000-01-01'), time('12:34:56')",
        "SELECT json_object('a', 1, 'b', json_array(1, 2)), json_extract('{\"x\":5}', '$.x'), json_valid('{'), json_type('[1]')",
        "SELECT sqrt(16), pow(2, 10), floor(2.5), ceil(2.1), ln(1), log10(100), pi() > 3, mod(7, 3)",
        // Joins of every form.
        "SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.customer_id ORDER BY o.order_id LIMIT 10",
        "SELECT count(*) FROM customers c INNER JOIN orders o ON o.customer_id = c.customer_id",
        "SELECT count(*) FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.amount > 100",
        "SELECT count(*) FROM customers c LEFT OUTER JOIN orders o USING (customer_id)",
        "SELECT count(*) FROM orders o RIGHT JOIN customers c ON o.customer_id = c.customer_id",
        "SELECT count(*) FROM orders o FULL OUTER JOIN customers c ON o.customer_id = c.customer_id",
        "SELECT count(*) FROM customers c CROSS JOIN (SELECT 1 UNION SELECT 2)", "SELECT count(*) FROM customers, orders WHERE customers.customer_id = orders.customer_id",
        "SELECT count(*) FROM customers NATURAL JOIN orders", "SELECT count(*) FROM customers NATURAL LEFT JOIN orders",
        "SELECT count(*) FROM (customers c JOIN orders o ON c.customer_id = o.customer_id)",
        "SELECT count(*) FROM customers c JOIN orders o USING (customer_id) JOIN orders o2 ON o2.order_id = o.order_id",
        "SELECT a.city, b.city FROM customers a JOIN customers b ON a.customer_id = b.customer_id + 1 ORDER BY a.customer_id LIMIT 5",
        "SELECT count(*) FROM customers INDEXED BY customers_by_city WHERE city = 'Beijing'", "SELECT count(*) FROM customers NOT INDEXED",
        // Subqueries.
        "SELECT (SELECT count(*) FROM orders), (SELECT max(name) FROM customers)",
        "SELECT name FROM customers WHERE customer_id IN (SELECT customer_id FROM orders WHERE amount > 150) ORDER BY 1",
        "SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id AND o.channel = 'store') ORDER BY 1",
        "SELECT name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id) ORDER BY 1",
        "SELECT x.city, x.n FROM (SELECT city, count(*) AS n FROM customers GROUP BY city) AS x WHERE x.n > 3 ORDER BY x.n, x.city",
        "SELECT name, (SELECT count(*) FROM orders o WHERE o.customer_id = c.customer_id) AS orders FROM customers c ORDER BY customer_id LIMIT 10",
        "SELECT * FROM (SELECT * FROM (SELECT city FROM customers) WHERE city > 'M') ORDER BY 1 LIMIT 5",
        "SELECT city FROM customers WHERE salary > (SELECT avg(salary) FROM customers) ORDER BY customer_id LIMIT 5",
        // CTEs.
        "WITH t AS (SELECT city FROM customers) SELECT count(*) FROM t",
        "WITH t(c, n) AS (SELECT city, count(*) FROM customers GROUP BY city) SELECT c FROM t WHERE n > 2 ORDER BY n, c",
        "WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 10) SELECT sum(x) FROM cnt",
        "WITH a AS MATERIALIZED (SELECT 1 AS v), b AS NOT MATERIALIZED (SELECT v + 1 AS v FROM a) SELECT * FROM a, b",
        "WITH RECURSIVE f(n, v) AS (SELECT 1, 1 UNION ALL SELECT n + 1, v * (n + 1) FROM f LIMIT 10) SELECT * FROM f",
        // Compounds and VALUES.
        "SELECT city FROM customers UNION SELECT channel FROM orders ORDER BY 1",
        "SELECT city FROM customers UNION ALL SELECT city FROM customers ORDER BY 1 LIMIT 5",
        "SELECT city FROM customers INTERSECT SELECT city FROM customers WHERE salary > 10000 ORDER BY 1",
        "SELECT city FROM customers EXCEPT SELECT city FROM customers WHERE salary > 5000 ORDER BY 1",
        "VALUES (1, 'a'), (2, 'b')", "SELECT * FROM (VALUES (1), (2), (3)) ORDER BY 1 DESC",
        "SELECT 1 UNION SELECT 2 UNION ALL SELECT 2 EXCEPT SELECT 1 ORDER BY 1",
        // Window functions.
        "SELECT name, row_number() OVER (ORDER BY customer_id) FROM customers LIMIT 5",
        "SELECT city, salary, rank() OVER (PARTITION BY city ORDER BY salary DESC) FROM customers ORDER BY city, salary DESC LIMIT 10",
        "SELECT customer_id, sum(salary) OVER (ORDER BY customer_id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM customers LIMIT 8",
        "SELECT customer_id, avg(salary) OVER (ORDER BY customer_id RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM customers LIMIT 3",
        "SELECT customer_id, count(*) OVER (ORDER BY city GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE TIES) FROM customers ORDER BY customer_id LIMIT 5",
        "SELECT customer_id, sum(salary) OVER (ORDER BY customer_id ROWS 3 PRECEDING EXCLUDE CURRENT ROW) FROM customers LIMIT 5",
        "SELECT customer_id, lag(name, 1, '-') OVER w, lead(name) OVER w FROM customers WINDOW w AS (ORDER BY customer_id) LIMIT 5",
        "SELECT customer_id, first_value(name) OVER (w ROWS UNBOUNDED PRECEDING) FROM customers WINDOW w AS (PARTITION BY city ORDER BY customer_id) ORDER BY customer_id LIMIT 5",
        "SELECT city, count(*) FILTER (WHERE salary > 10000), sum(salary) FILTER (WHERE status = 'active') FROM customers GROUP BY city ORDER BY city",
        "SELECT ntile(4) OVER (ORDER BY salary), percent_rank() OVER (ORDER BY salary), cume_dist() OVER (ORDER BY salary), dense_rank() OVER (ORDER BY city) FROM customers ORDER BY customer_id LIMIT 5",
        "SELECT nth_value(name, 2) OVER (ORDER BY customer_id), last_value(name) OVER (ORDER BY customer_id) FROM customers LIMIT 4",
        // Comments and layout.
        "SELECT /* inline */ name -- trailing\n FROM customers\n\tWHERE customer_id = 1;",
        "select Name from CUSTOMERS where CITY = 'Beijing' order by CUSTOMER_ID limit 2",
    ]

    /// Generated expression queries: every binary operator over several operand kinds, so each
    /// precedence pair is exercised with literals, columns, NULL and negative numbers.
    static let generated: [String] = {
        let operands = ["salary", "-2", "3.5", "NULL", "'7'", "customer_id % 5", "length(name)"]
        let operators = ["+", "-", "*", "/", "%", "||", "<", "<=", ">", ">=", "=", "==", "!=", "<>", "IS", "IS NOT", "AND", "OR", "&", "|", "<<", ">>"]
        var queries: [String] = []
        for (index, op) in operators.enumerated() {
            let a = operands[index % operands.count]
            let b = operands[(index + 3) % operands.count]
            let c = operands[(index + 5) % operands.count]
            for otherOp in ["+", "*", "=", "AND", "||", "<"] {
                queries.append("SELECT \(a) \(op) \(b) \(otherOp) \(c), \(c) \(otherOp) \(a) \(op) \(b) FROM customers ORDER BY customer_id LIMIT 3")
            }
            queries.append("SELECT NOT \(a) \(op) \(b), - \(a) \(op) \(b) FROM customers ORDER BY customer_id LIMIT 3")
        }
        return queries
    }()

    static var corpus: [String] { handWritten + generated }

    @Test("the corpus is large and varied")
    func corpusSize() {
        #expect(Self.corpus.count >= 200)
    }

    @Test("render(parse(Q)) gives Q's result", arguments: corpus)
    func roundTrip(sql: String) throws {
        let select = try Parser.parseSelect(sql)
        let rendered = Renderer.render(select)
        let db = try Connection(path: Self.fixture, mode: .readOnly)
        let original = try Self.run(db, sql)
        let again = try Self.run(db, rendered)
        #expect(again.columns == original.columns, "\(sql)\n→ \(rendered)")
        if select.orderBy.isEmpty {
            #expect(again.rows.sorted(by: Self.before) == original.rows.sorted(by: Self.before), "\(sql)\n→ \(rendered)")
        } else {
            #expect(again.rows == original.rows, "\(sql)\n→ \(rendered)")
        }
        // Rendering is a fixed point.
        #expect(Renderer.render(try Parser.parseSelect(rendered)) == rendered)
    }

    static func run(_ db: Connection, _ sql: String) throws -> (columns: [String], rows: [[String]]) {
        guard let statement = try db.prepare(sql) else { return ([], []) }
        var rows: [[String]] = []
        let columns = (0..<statement.columnCount).map { statement.columnName(at: $0) }
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { "\(statement.value(at: $0))" })
        }
        return (columns, rows)
    }

    static func before(_ a: [String], _ b: [String]) -> Bool { a.lexicographicallyPrecedes(b) }
}

@Suite struct ParserTests {
    @Test("statements other than SELECT are recognised and refused", arguments: [
        "PRAGMA table_info(t)", "ATTACH 'x' AS y", "INSERT INTO t VALUES (1)", "CREATE TABLE t(x)", "DROP TABLE t",
        "VACUUM", "BEGIN", "EXPLAIN SELECT 1", "UPDATE t SET x = 1", "DELETE FROM t", "REPLACE INTO t VALUES (1)",
        "SELECT 1; SELECT 2", "SELECT 1; DROP TABLE t",
    ])
    func notASelect(sql: String) {
        do {
            _ = try Parser.parseSelect(sql)
            Issue.record("accepted \(sql)")
        } catch {
            guard case .notASelect = error.kind else { Issue.record("\(sql): \(error)"); return }
        }
    }

    @Test("syntax errors say where and what was expected", arguments: [
        ("SELECT FROM t", 1, 8), ("SELECT a FROM", 1, 14), ("SELECT (1 + 2", 1, 14), ("SELECT a\nFROM t WHERE", 2, 13),
        ("SELECT CASE END", 1, 16), ("SELECT a FROM t JOIN", 1, 21), ("SELECT 'x", 1, 8), ("SELECT a, FROM t", 1, 11),
    ])
    func syntaxErrors(sql: String, line: Int, column: Int) {
        do {
            _ = try Parser.parseSelect(sql)
            Issue.record("accepted \(sql)")
        } catch {
            #expect(error.kind == .syntax)
            #expect(error.position?.line == line && error.position?.column == column, "\(sql): \(error)")
        }
    }

    @Test("adversarial input fails cleanly and quickly")
    func adversarial() {
        let cases = [
            "SELECT " + String(repeating: "(", count: 100_000) + "1" + String(repeating: ")", count: 100_000),
            "SELECT " + String(repeating: "NOT ", count: 250_000) + "1",
            "SELECT " + String(repeating: "- ", count: 100_000) + "1",
            "SELECT " + String(repeating: "(SELECT ", count: 5_000) + "1",
            "SELECT " + String(repeating: "1 + ", count: 50_000) + "1",
            "SELECT 'unterminated" + String(repeating: "x", count: 1_000_000),
            "SELECT /* unterminated" + String(repeating: "x", count: 1_000_000),
            "SELECT CASE " + String(repeating: "CASE ", count: 10_000),
        ]
        for sql in cases {
            do {
                _ = try Parser.parseSelect(sql)
            } catch {
                #expect(error.kind != .notASelect(keyword: ""))
            }
        }
    }

    @Test("precedence matches SQLite's", arguments: [
        ("SELECT 1 + 2 * 3", "SELECT (1 + (2 * 3)) AS \"1 + 2 * 3\""),
        ("SELECT NOT a = b", "SELECT (NOT (\"a\" = \"b\")) AS \"NOT a = b\""),
        ("SELECT a OR b AND c", "SELECT (\"a\" OR (\"b\" AND \"c\")) AS \"a OR b AND c\""),
        ("SELECT a || b + c", "SELECT ((\"a\" || \"b\") + \"c\") AS \"a || b + c\""),
        ("SELECT -a * b", "SELECT ((- \"a\") * \"b\") AS \"-a * b\""),
        ("SELECT a < b = c", "SELECT ((\"a\" < \"b\") = \"c\") AS \"a < b = c\""),
        ("SELECT a BETWEEN b AND c AND d", "SELECT ((\"a\" BETWEEN \"b\" AND \"c\") AND \"d\") AS \"a BETWEEN b AND c AND d\""),
        ("SELECT a & b + c", "SELECT (\"a\" & (\"b\" + \"c\")) AS \"a & b + c\""),
    ])
    func precedence(sql: String, rendered: String) throws {
        #expect(Renderer.render(try Parser.parseSelect(sql)) == rendered)
    }
}
