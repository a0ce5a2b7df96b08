import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgateSQLite
import SandgateTestSupport
import Testing

/// The withheld groups of the last request, as its usage record keeps them for the holder (the
/// consumer's response does not disclose them).
func recordedSuppressedGroups(_ gateway: Gateway) throws -> Int64 {
    var count: Int64 = -1
    try gateway.ledger.records { count = $0.suppressedGroups; return true }
    return count
}

/// DESIGN.md §3: aggregate tables release only groups of at least `min_group_size` distinct units.
@Suite struct AggregateTableTests {
    /// The raw source, to compute what the gateway should release.
    func raw(_ workspace: TestWorkspace, _ sql: String) throws -> [[SQLValue]] {
        try Connection(path: workspace.source, mode: .readOnly).rows(sql)
    }

    @Test("grouped aggregates over a dimension are released when every group is large enough")
    func groupsByDimension() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT channel, count(*) AS n, sum(amount) AS total FROM orders GROUP BY channel ORDER BY channel")
        let rows = try #require(response.result?.rows, "\(String(describing: response.error))")
        let expected = try raw(workspace, "SELECT channel, count(*), sum(amount) FROM orders GROUP BY channel HAVING count(DISTINCT customer_id) >= 10 ORDER BY channel")
        #expect(rows == expected)
        #expect(try recordedSuppressedGroups(gateway) == 0)
        #expect(response.usage.suppressedGroups == nil)
    }

    @Test("groups below the threshold never appear and are counted as suppressed")
    func smallGroupsAreSuppressed() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT created_at, count(*) FROM orders GROUP BY created_at")
        #expect(response.result?.rowCount == 0)
        let groups = try raw(workspace, "SELECT count(DISTINCT created_at) FROM orders")
        #expect([[SQLValue.integer(try recordedSuppressedGroups(gateway))]] == groups)
    }

    @Test("a global aggregate over too few units returns no row")
    func globalAggregateBelowThreshold() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let one = try #require(try raw(workspace, "SELECT created_at FROM orders LIMIT 1").first?.first)
        guard case .text(let stamp) = one else { Issue.record("fixture"); return }
        let few = gateway.query("SELECT count(*), sum(amount) FROM orders WHERE created_at = ?", parameters: .positional([.text(stamp)]))
        #expect(few.result?.rowCount == 0)
        #expect(try recordedSuppressedGroups(gateway) == 1)
        let all = gateway.query("SELECT count(*) FROM orders")
        #expect(all.result?.rows == (try raw(workspace, "SELECT count(*) FROM orders")))
    }

    @Test("a join with a rows table: orders by customer city, LIMIT counting only released groups")
    func joinWithRowsTable() throws {
        let workspace = try TestWorkspace()
        let sql = "SELECT c.city, count(*) AS orders, avg(o.amount) AS mean FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY c.city LIMIT 3 OFFSET 1"
        let gateway = try workspace.gateway()
        let response = gateway.query(sql)
        let rows = try #require(response.result?.rows, "\(String(describing: response.error))")
        let expected = try raw(workspace, """
            SELECT c.city, count(*), avg(o.amount) FROM orders o JOIN customers c ON o.customer_id = c.customer_id
            WHERE c.status = 'active' GROUP BY c.city HAVING count(DISTINCT o.customer_id) >= 10 ORDER BY c.city LIMIT 3 OFFSET 1
            """)
        #expect(rows == expected)
        let suppressed = try raw(workspace, """
            SELECT count(*) FROM (SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.customer_id
            WHERE c.status = 'active' GROUP BY c.city HAVING count(DISTINCT o.customer_id) < 10)
            """)
        #expect([[SQLValue.integer(try recordedSuppressedGroups(gateway))]] == suppressed)
    }

    @Test("user HAVING and ORDER BY on aggregates still work")
    func userHaving() throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT channel, count(*) AS n FROM orders GROUP BY channel HAVING count(*) > 100 ORDER BY n DESC, channel")
        let expected = try raw(workspace, "SELECT channel, count(*) AS n FROM orders GROUP BY channel HAVING count(*) > 100 AND count(DISTINCT customer_id) >= 10 ORDER BY n DESC, channel")
        #expect(response.result?.rows == expected)
    }

    @Test("shapes that could release an individual's value are refused", arguments: [
        ("SELECT * FROM orders", ErrorCode.aggregateRequired),
        ("SELECT channel FROM orders", .aggregateRequired),
        ("SELECT amount FROM orders GROUP BY channel", .columnNotAllowed),
        ("SELECT channel, created_at, count(*) FROM orders GROUP BY channel", .columnNotAllowed),
        ("SELECT sum(amount * 2) FROM orders", .shapeNotAllowed),
        ("SELECT sum(CASE WHEN channel = 'web' THEN amount END) FROM orders", .shapeNotAllowed),
        ("SELECT sum(amount) FILTER (WHERE channel = 'web') FROM orders", .shapeNotAllowed),
        ("SELECT group_concat(channel) FROM orders", .shapeNotAllowed),
        ("SELECT json_group_array(amount) FROM orders", .shapeNotAllowed),
        ("SELECT channel, row_number() OVER () FROM orders GROUP BY channel", .shapeNotAllowed),
        ("SELECT customer_id, count(*) FROM orders GROUP BY customer_id", .columnNotAllowed),
        ("SELECT count(*) FROM orders WHERE customer_id = 5", .columnNotAllowed),
        ("SELECT count(customer_id) FROM orders", .columnNotAllowed),
        ("SELECT sum(DISTINCT customer_id) FROM orders", .columnNotAllowed),
        ("SELECT count(*) FROM orders WHERE amount > 100", .columnNotAllowed),
        ("SELECT count(*) FROM orders GROUP BY amount", .columnNotAllowed),
        ("SELECT total(amount) FROM orders", .functionNotAllowed),
        ("SELECT x FROM (SELECT count(*) AS x FROM orders)", .shapeNotAllowed),
        ("WITH t AS (SELECT count(*) AS x FROM orders) SELECT x FROM t", .shapeNotAllowed),
        ("SELECT count(*) FROM orders UNION SELECT 1", .shapeNotAllowed),
        ("SELECT (SELECT count(*) FROM orders)", .shapeNotAllowed),
        ("SELECT count(*) FROM customers WHERE city IN (SELECT channel FROM orders GROUP BY channel)", .shapeNotAllowed),
        ("SELECT count(*), (SELECT 1) FROM orders", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id > c.customer_id", .shapeNotAllowed),
    ])
    func refusals(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect(response.error?.code == code, "\(sql) → \(String(describing: response.error))")
        #expect(!(response.error?.message.isEmpty ?? true))
    }

    @Test("min and max are allowed only where the policy lists them")
    func minMaxListed() throws {
        let workspace = try TestWorkspace()
        #expect(try workspace.gateway().query("SELECT channel, min(amount), max(amount) FROM orders GROUP BY channel").isOK)
        let strict = TestWorkspace.retailPolicy.replacing("aggregates: [count, sum, avg, min, max]", with: "aggregates: [count, sum]")
        let other = try TestWorkspace(policy: strict)
        #expect(try other.gateway().query("SELECT max(amount) FROM orders").error?.code == .functionNotAllowed)
        #expect(try other.gateway().query("SELECT avg(amount) FROM orders").error?.code == .functionNotAllowed)
    }

    @Test("the executed SQL carries the threshold and is recorded")
    func recordedRewrite() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        _ = gateway.query("SELECT channel, count(*) FROM orders GROUP BY channel")
        var last: String?
        try gateway.ledger.records { last = $0.rewrittenSQL; return true }
        #expect(last?.contains("__sg_tally(count(DISTINCT \"orders\".\"__sg_unit\"), 10)") == true, "\(last ?? "")")
        #expect(last?.contains("WHERE (\"__sg_n\" >= 10)") == true, "\(last ?? "")")
    }
}

/// The checker on rows tables: names resolve through scopes against the consumer's view.
@Suite struct CheckerTests {
    @Test("names resolve through aliases, CTEs, subqueries, USING and stars", arguments: [
        "SELECT c.name FROM customers AS c", "SELECT x.n FROM (SELECT name AS n FROM customers) x",
        "WITH t(a) AS (SELECT city FROM customers) SELECT a FROM t", "SELECT city AS town FROM customers ORDER BY town",
        "SELECT city AS town, count(*) FROM customers GROUP BY town HAVING town > 'A'",
        "SELECT * FROM customers a JOIN customers b USING (customer_id)", "SELECT a.*, b.city FROM customers a, customers b LIMIT 1",
        "SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.city = c.city)",
        "SELECT printf('%5.2f|%-10s', 3.14159, city) FROM customers LIMIT 1", "WITH t AS (SELECT city FROM customers) SELECT count(*) FROM customers WHERE city IN t",
    ])
    func resolves(sql: String) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect(response.isOK, "\(sql) → \(String(describing: response.error))")
    }

    @Test("unknown and hidden names get the same answer", arguments: [
        ("SELECT salary FROM customers", ErrorCode.noSuchColumn), ("SELECT nope FROM customers", .noSuchColumn),
        ("SELECT c.salary FROM customers c", .noSuchColumn), ("SELECT x.city FROM customers c", .noSuchColumn),
        ("SELECT * FROM secrets", .noSuchTable), ("SELECT * FROM main.customers", .noSuchTable),
        ("SELECT city FROM customers a, customers b", .syntaxError), ("SELECT printf('%.*c', 5, 'x')", .functionNotAllowed),
        ("SELECT printf('%2000d', 1)", .functionNotAllowed), ("SELECT printf(city, 1) FROM customers", .functionNotAllowed),
        ("SELECT * FROM json_each('[1]')", .functionNotAllowed), ("SELECT * FROM customers INDEXED BY customers_by_city", .shapeNotAllowed),
        ("SELECT 1 LIMIT city", .noSuchColumn),
        ("WITH __sg_m0 AS (SELECT 1) SELECT * FROM __sg_m0", .syntaxError), ("SELECT count(__sg_unit) FROM orders", .noSuchColumn),
        ("SELECT * FROM __sg_rows", .noSuchTable),
    ])
    func refuses(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect(response.error?.code == code, "\(sql) → \(String(describing: response.error))")
    }

    @Test("masked_cells counts the non-NULL result cells that come from masked columns")
    func maskedCells() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT name, city FROM customers LIMIT 5").usage.maskedCells == 5)
        #expect(gateway.query("SELECT upper(phone), email, status FROM customers LIMIT 4").usage.maskedCells == 8)
        #expect(gateway.query("SELECT count(*) FROM customers WHERE phone LIKE '13%'").usage.maskedCells == 0)
        #expect(gateway.query("WITH t AS (SELECT phone AS p FROM customers) SELECT p FROM t LIMIT 3").usage.maskedCells == 3)
    }
}

/// `small_groups: remainder`: small groups merge into one NULL-keyed group, re-aggregated from rows.
@Suite struct RemainderTests {
    static let policy = TestWorkspace.retailPolicy.replacing("min_group_size: 10\n", with: "min_group_size: 10\n    small_groups: remainder\n")

    func raw(_ workspace: TestWorkspace, _ sql: String) throws -> [[SQLValue]] {
        try Connection(path: workspace.source, mode: .readOnly).rows(sql)
    }

    @Test("released groups plus one remainder group re-aggregated from the small groups' rows")
    func mixedGroups() throws {
        #expect(Self.policy.contains("small_groups: remainder"))
        let workspace = try TestWorkspace(policy: Self.policy)
        let gateway = try workspace.gateway()
        let response = gateway.query(
            "SELECT c.city, count(*) AS n, round(avg(o.amount), 6) AS mean FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY n DESC, c.city")
        let rows = try #require(response.result?.rows, "\(String(describing: response.error))")
        let expected = try raw(workspace, """
            WITH r AS (SELECT c.city AS city, o.amount AS amount, o.customer_id AS unit FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.status = 'active'),
                 s AS (SELECT city, count(DISTINCT unit) AS n FROM r GROUP BY city)
            SELECT city, count(*) AS n, round(avg(amount), 6) FROM r WHERE city IN (SELECT city FROM s WHERE n >= 10) GROUP BY city
            UNION ALL
            SELECT NULL, count(*), round(avg(amount), 6) FROM r WHERE city IN (SELECT city FROM s WHERE n < 10) HAVING count(DISTINCT unit) >= 10
            ORDER BY 2 DESC, 1
            """)
        #expect(rows == expected)
        let small = try raw(workspace, """
            SELECT count(*) FROM (SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.customer_id
            WHERE c.status = 'active' GROUP BY c.city HAVING count(DISTINCT o.customer_id) < 10)
            """)
        #expect([[SQLValue.integer(try recordedSuppressedGroups(gateway))]] == small)
        #expect(rows.contains { $0.first == .null } == (try raw(workspace, """
            SELECT count(DISTINCT o.customer_id) >= 10 FROM orders o JOIN customers c ON o.customer_id = c.customer_id
            WHERE c.status = 'active' AND c.city IN (SELECT c2.city FROM orders o2 JOIN customers c2 ON o2.customer_id = c2.customer_id
              WHERE c2.status = 'active' GROUP BY c2.city HAVING count(DISTINCT o2.customer_id) < 10)
            """) == [[.integer(1)]]))
    }

    @Test("when every group is small, one remainder row carries everything")
    func allSmall() throws {
        let workspace = try TestWorkspace(policy: Self.policy)
        let response = try workspace.gateway().query("SELECT created_at, count(*) AS n, round(sum(amount), 4) AS total FROM orders GROUP BY created_at")
        let rows = try #require(response.result?.rows, "\(String(describing: response.error))")
        let totals = try raw(workspace, "SELECT NULL, count(*), round(sum(amount), 4) FROM orders")
        #expect(rows == totals)
    }

    @Test("ORDER BY may use aggregates that are not in the select list (stage 2 computes them)")
    func orderByAnyAggregate() throws {
        let workspace = try TestWorkspace(policy: Self.policy)
        let gateway = try workspace.gateway()
        let byCount = gateway.query("SELECT channel, count(*) FROM orders GROUP BY channel ORDER BY count(*) DESC, channel")
        #expect(byCount.result?.rows == (try raw(workspace, "SELECT channel, count(*) FROM orders GROUP BY channel ORDER BY count(*) DESC, channel")))
        let bySum = gateway.query("SELECT channel FROM orders GROUP BY channel ORDER BY sum(amount)")
        #expect(bySum.result?.rows == (try raw(workspace, "SELECT channel FROM orders GROUP BY channel ORDER BY sum(amount)")))
    }
}
