import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateSQL
import SandgateSQLite
import SandgateTestSupport
import Synchronization
import Testing

/// The release model of DESIGN.md §3 against the attacks of issue 7: each attack is either refused
/// with a stable code, or answered with a response that does not depend on withheld groups.
enum ReleaseModel {
    /// The response as the consumer sees it, without what legitimately differs between two runs.
    static func signature(_ response: QueryResponse) -> String {
        var usage = response.usage
        usage.queryID = ""
        usage.seq = 0
        usage.nodeID = ""
        usage.recordHash = ""
        usage.elapsedMicroseconds = 0
        let outcome: String
        switch response.outcome {
        case .success(let result): outcome = "\(result.columns) \(result.columnTypes.map(\.kind)) \(result.rows)"
        case .failure(let error): outcome = "\(error.code) \(error.message) \(error.hint)"
        }
        return "\(outcome) \(response.truncated) \(response.truncatedBy ?? "") \(usage)"
    }

    static func raw(_ path: String, _ sql: String) throws -> [[SQLValue]] {
        try Connection(path: path, mode: .readOnly).rows(sql)
    }

    /// Cities whose active customers with orders are fewer than 10: their groups are withheld.
    static func smallCities(_ path: String) throws -> [String] {
        try raw(path, """
            SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.status = 'active'
            GROUP BY c.city HAVING count(DISTINCT o.customer_id) < 10 ORDER BY c.city
            """).compactMap { if case .text(let city) = $0.first { city } else { nil } }
    }

    /// A workspace whose source differs from the shared fixture only in the amounts of the orders
    /// that `whereOrders` selects (the same number of rows everywhere).
    static func workspace(policy: String = TestWorkspace.retailPolicy, changingAmountsWhere whereOrders: String?) throws -> TestWorkspace {
        let workspace = try TestWorkspace(policy: policy)
        if let whereOrders {
            let db = try Connection(path: workspace.source, mode: .readWrite)
            try db.execute("UPDATE orders SET amount = amount * 7 + 1234.5 WHERE \(whereOrders)")
        }
        return workspace
    }

    static func ordersOfCities(_ cities: [String]) -> String {
        "customer_id IN (SELECT customer_id FROM customers WHERE city IN (\(cities.map { "'\($0.replacing("'", with: "''"))'" }.joined(separator: ","))))"
    }

    static let remainderPolicy = TestWorkspace.retailPolicy.replacing("min_group_size: 10\n", with: "min_group_size: 10\n    small_groups: remainder\n")
}

@Suite struct ReleaseModelAttackTests {
    static let join = "FROM orders o JOIN customers c ON o.customer_id = c.customer_id"

    @Test("attacks 3–5 and 8 and their variants are refused with a stable code", arguments: [
        // 3. Duplicating rows: CTE, VALUES, FROM subquery, compound, OR in ON, comma and cross joins.
        ("WITH d(x) AS (VALUES (1),(2)) SELECT d.x, count(*), sum(o.amount) FROM orders o JOIN customers c ON o.customer_id = c.customer_id JOIN d ON (d.x = 1 OR c.city <> 'x') GROUP BY d.x", ErrorCode.shapeNotAllowed),
        ("with D(X) as (values (1),(2)) select count(*) from ORDERS o join D on D.X = 1", .shapeNotAllowed),
        ("SELECT d.x, count(*) FROM orders o JOIN (SELECT 1 AS x UNION ALL SELECT 2) d ON d.x = o.channel GROUP BY d.x", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id OR c.city = 'Shenzhen'", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON (o.customer_id = c.customer_id AND c.city <> 'x')", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o, customers c WHERE o.customer_id = c.customer_id", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o CROSS JOIN customers c", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.channel = c.city", .shapeNotAllowed),
        ("SELECT count(*) FROM orders a JOIN orders b ON a.customer_id = b.customer_id", .shapeNotAllowed),
        ("SELECT count(*) FROM orders /* x */ JOIN json_each('[1,2]') j ON 1", .shapeNotAllowed),
        ("SELECT count(*) FROM orders UNION ALL SELECT count(*) FROM orders", .shapeNotAllowed),
        ("SELECT channel, count(*), row_number() OVER () FROM orders GROUP BY channel", .shapeNotAllowed),
        ("SELECT channel, count(*) FROM orders WHERE channel IN (SELECT city FROM customers) GROUP BY channel", .shapeNotAllowed),
        // 4. Non-determinism anywhere in a query on an aggregate table.
        ("SELECT CASE WHEN random() % 2 = 0 THEN 'b' ELSE 'a' END AS g, count(*) FROM orders GROUP BY g", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE RANDOM() > 0", .functionNotAllowed),
        ("SELECT channel, count(*) + random() FROM orders GROUP BY channel", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE created_at < date('now')", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE created_at < DATE(' NOW ', '-1 day')", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE created_at < CURRENT_TIMESTAMP", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE unixepoch() > 0", .functionNotAllowed),
        ("SELECT hex(randomblob(4)), count(*) FROM orders", .functionNotAllowed),
        // 5. Outer joins, USING/NATURAL merged keys, literal comparisons on keys (ON included).
        ("WITH c(customer_id) AS (VALUES ('x')) SELECT count(DISTINCT customer_id), min(customer_id) FROM c RIGHT JOIN orders o USING (customer_id)", .shapeNotAllowed),
        ("SELECT count(*) FROM customers c RIGHT JOIN orders o ON o.customer_id = c.customer_id", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o LEFT JOIN customers c ON o.customer_id = c.customer_id", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o FULL JOIN customers c ON o.customer_id = c.customer_id", .shapeNotAllowed),
        ("SELECT customer_id, count(*) FROM orders JOIN customers USING (customer_id) GROUP BY customer_id", .columnNotAllowed),
        ("SELECT min(customer_id) FROM orders NATURAL JOIN customers", .columnNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id AND c.customer_id = 'abc'", .shapeNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = 'abc'", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE customer_id = 'abc'", .columnNotAllowed),
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.customer_id = ?", .columnNotAllowed),
        ("SELECT c.customer_id, count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY 1", .columnNotAllowed),
        // 8. min/max over dimensions; aggregates over expressions or other tables.
        ("SELECT min(o.created_at) FROM orders o", .columnNotAllowed),
        ("SELECT channel, max(created_at) FROM orders GROUP BY channel", .columnNotAllowed),
        ("SELECT max(c.birth_date) FROM orders o JOIN customers c ON o.customer_id = c.customer_id", .columnNotAllowed),
        ("SELECT sum(amount + 0) FROM orders", .shapeNotAllowed),
        ("SELECT count(channel) FROM orders", .columnNotAllowed),
        // Stage-1 expressions that could fail on some row.
        ("SELECT channel || created_at AS k, count(*) FROM orders GROUP BY k", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE json_extract(channel, '$.a') IS NULL", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE abs(length(channel)) > 1", .functionNotAllowed),
        ("SELECT count(*) FROM orders WHERE channel LIKE created_at", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE channel -> '$' IS NULL", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE printf('%d', channel) = '1'", .functionNotAllowed),
        // Red-team findings: errors that only some rows would raise (pattern, ESCAPE and strftime
        // format from parameters), COLLATE in keys.
        ("SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE iif(c.phone = '150****9553', o.created_at LIKE ?, 1)", .shapeNotAllowed),
        ("SELECT channel, count(*) FROM orders WHERE iif(created_at = ?, created_at LIKE 'x' ESCAPE ?, 1) GROUP BY channel", .shapeNotAllowed),
        ("SELECT channel, count(*) FROM orders WHERE created_at LIKE 'x' ESCAPE 'ab' GROUP BY channel", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE length(strftime(iif(channel = 'app', ?, ''), '2024-12-08')) >= 0", .shapeNotAllowed),
        ("SELECT count(*) FROM orders WHERE length(strftime('\(String(repeating: "%J", count: 60))', created_at)) >= 0", .shapeNotAllowed),
        ("SELECT channel COLLATE NOCASE, count(*) FROM orders GROUP BY channel COLLATE NOCASE", .shapeNotAllowed),
        // Internal names.
        ("SELECT __sg_tally(count(*), 10) FROM orders", .noSuchFunction),
        ("SELECT count(*) FROM __sg_g", .noSuchTable),
        ("SELECT count(*) AS __sg_n FROM orders", .syntaxError),
    ])
    func refused(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect(response.error?.code == code, "\(sql) → \(String(describing: response.error))")
        #expect(response.usage.rows == 0)
    }

    @Test("the same refusals hold with small_groups: remainder", arguments: [
        "SELECT CASE WHEN c.city = 'x' AND random() % 2 = 0 THEN 'b' ELSE 'a' END AS g, count(*) \(join) GROUP BY g",
        "WITH d(x) AS (VALUES (1),(2)) SELECT d.x, count(*) FROM orders o JOIN d ON d.x = 1 GROUP BY d.x",
        "SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id OR c.city = 'x'",
        "SELECT min(created_at) FROM orders",
    ])
    func refusedInRemainderMode(sql: String) throws {
        let workspace = try TestWorkspace(policy: ReleaseModel.remainderPolicy)
        let response = try workspace.gateway().query(sql)
        #expect(!response.isOK, "\(sql) was answered")
        #expect(response.usage.rows == 0)
    }

    @Test("attacks 1 and 2: HAVING never runs on withheld groups, so its errors and answers say nothing about them", arguments: [
        "SELECT c.city, count(*) \(join) WHERE c.city = '%CITY%' GROUP BY c.city HAVING json_extract('{}', sum(o.amount) || ' n=' || count(*)) IS NULL",
        "SELECT c.city, count(*) \(join) GROUP BY c.city HAVING sum(o.amount) > 1137",
        "SELECT c.city, count(*) \(join) GROUP BY c.city HAVING sum(o.amount) > 1138",
        "SELECT o.channel, count(*) \(join) WHERE c.city = '%CITY%' GROUP BY o.channel HAVING CASE WHEN sum(o.amount) > 100 THEN abs(-9223372036854775808) ELSE 1 END",
        "SELECT o.channel, avg(o.amount) AS a \(join) WHERE c.city = '%CITY%' GROUP BY o.channel ORDER BY a DESC LIMIT 1",
        "SELECT count(*), sum(o.amount), max(o.amount) \(join) WHERE c.city = '%CITY%'",
        "SELECT c.city, count(DISTINCT o.customer_id), min(o.amount) \(join) GROUP BY 1 ORDER BY 2 DESC",
        "select C.CITY as town, SUM(O.AMOUNT) /* comment */ from ORDERS O join CUSTOMERS C on O.CUSTOMER_ID = C.CUSTOMER_ID group by town having max(o.amount) < 1e9",
    ])
    func havingOnlyOnReleasedGroups(template: String) throws {
        let base = try ReleaseModel.workspace(changingAmountsWhere: nil)
        let small = try ReleaseModel.smallCities(base.source)
        let city = try #require(small.first, "the fixture has a small city")
        let sql = template.replacing("%CITY%", with: city.replacing("'", with: "''"))
        let changed = try ReleaseModel.workspace(changingAmountsWhere: ReleaseModel.ordersOfCities(small))
        let first = try base.gateway().query(sql)
        let second = try changed.gateway().query(sql)
        #expect(ReleaseModel.signature(first) == ReleaseModel.signature(second), "\(sql)")
        // SQLite's text never reaches the consumer.
        #expect(!(first.error?.message.contains("JSON") ?? false))
        #expect(!(first.error?.message.contains("overflow") ?? false))
    }

    @Test("remainder mode: a remainder below k is withheld, and withheld rows never change the response", arguments: [
        "SELECT o.channel, count(*), sum(o.amount) \(join) WHERE c.city = '%CITY%' GROUP BY o.channel",
        "SELECT o.channel, count(*) \(join) WHERE c.city = '%CITY%' GROUP BY o.channel HAVING json_extract('{}', sum(o.amount) || ' n') IS NULL",
        "SELECT substr(o.created_at, 1, 7) AS m, avg(o.amount) \(join) WHERE c.city = '%CITY%' GROUP BY m HAVING max(o.amount) > 100 ORDER BY 2 DESC",
        "SELECT c.city, count(DISTINCT o.customer_id), sum(o.amount) \(join) GROUP BY c.city ORDER BY 1",
    ])
    func remainderWithheld(template: String) throws {
        let base = try ReleaseModel.workspace(policy: ReleaseModel.remainderPolicy, changingAmountsWhere: nil)
        let small = try ReleaseModel.smallCities(base.source)
        let city = try #require(small.first)
        let sql = template.replacing("%CITY%", with: city.replacing("'", with: "''"))
        // Change only the orders of one small city; in the last query the remainder merges all
        // small cities and is released, so only the first small city's orders may change there if
        // the remainder is not released: compare only where it is withheld.
        let changed = try ReleaseModel.workspace(policy: ReleaseModel.remainderPolicy, changingAmountsWhere: ReleaseModel.ordersOfCities([city]))
        let first = try base.gateway().query(sql)
        let second = try changed.gateway().query(sql)
        #expect(first.isOK, "\(String(describing: first.error))")
        let remainderReleased = first.result?.rows.contains { $0.first == .null } ?? false
        if !remainderReleased {
            #expect(ReleaseModel.signature(first) == ReleaseModel.signature(second), "\(sql)")
        } else {
            // The released remainder is a group of ≥ k units: only its row may differ.
            let keep = { (rows: [[SQLValue]]?) in rows?.filter { $0.first != .null } }
            #expect(keep(first.result?.rows) == keep(second.result?.rows))
        }
    }

    @Test("the record counts what stage 1 withheld, whatever HAVING says; the consumer is not told")
    func suppressedIndependentOfHaving() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        var counts: Set<Int64> = []
        for condition in [">= 0", "> 1137", "> 1138", "< 0"] {
            let response = gateway.query("SELECT c.city, count(*) \(Self.join) GROUP BY c.city HAVING sum(o.amount) \(condition)")
            #expect(response.isOK, "\(String(describing: response.error))")
            #expect(response.usage.suppressedGroups == nil)
            counts.insert(try recordedSuppressedGroups(gateway))
        }
        let small = try ReleaseModel.smallCities(workspace.source)
        #expect(counts == [Int64(small.count)])
    }

    @Test("a runtime error reaches the consumer with a fixed message, never SQLite's text (rows tables too)")
    func fixedRuntimeMessages() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        for sql in [
            "SELECT json_extract(name, '$[') FROM customers",
            "SELECT json_extract('{}', city || ' secret') FROM customers",
            "SELECT abs(-9223372036854775808) FROM customers LIMIT 1",
            "SELECT channel, count(*) FROM orders GROUP BY channel HAVING json_extract('{}', sum(amount) || ' n') IS NULL",
        ] {
            let response = gateway.query(sql)
            let error = try #require(response.error, "\(sql)")
            #expect(error.code == .badRequest)
            #expect(error.message == "the query failed while running", "\(sql) → \(error.message)")
            #expect(!error.hint.contains("JSON") && !error.hint.contains("secret"))
        }
    }

    @Test("red team: whether a withheld group has rows at a given time is not disclosed")
    func existenceIsNotDisclosed() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let stamp = try #require(try ReleaseModel.raw(workspace.source, "SELECT created_at FROM orders ORDER BY order_id LIMIT 1").first?.first)
        guard case .text(let present) = stamp else { Issue.record("fixture"); return }
        let absent = "1999-01-01 00:00:00"
        let withRows = gateway.query("SELECT channel, count(*) FROM orders WHERE created_at = ? GROUP BY channel", parameters: .positional([.text(present)]))
        let withoutRows = gateway.query("SELECT channel, count(*) FROM orders WHERE created_at = ? GROUP BY channel", parameters: .positional([.text(absent)]))
        #expect(withRows.isOK && withoutRows.isOK)
        #expect(ReleaseModel.signature(withRows) == ReleaseModel.signature(withoutRows))
    }

    @Test("red team round 2: long parameters cannot turn a withheld row into a size error")
    func parameterSizeCap() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let stamp = try #require(try ReleaseModel.raw(workspace.source, "SELECT created_at FROM orders ORDER BY order_id LIMIT 1").first?.first)
        guard case .text(let present) = stamp else { Issue.record("fixture"); return }
        let keys = (1...10).map { "iif(created_at = ?2, substr(?1, \($0)), '')" }.joined(separator: ", ")
        let sql = "SELECT channel, count(*) FROM orders GROUP BY channel, \(keys)"
        let huge = gateway.query(sql, parameters: .positional([.text(String(repeating: "A", count: 950_000)), .text(present)]))
        #expect(huge.error?.code == .badRequest && huge.error?.message.contains("1024 bytes") == true, "\(String(describing: huge.error))")
        let small = String(repeating: "A", count: 1000)
        let withRow = gateway.query(sql, parameters: .positional([.text(small), .text(present)]))
        let withoutRow = gateway.query(sql, parameters: .positional([.text(small), .text("1999-01-01 00:00:00")]))
        // Both answer (moving one order out of a released group is differencing, documented).
        #expect(withRow.isOK, "\(String(describing: withRow.error))")
        #expect(withoutRow.isOK, "\(String(describing: withoutRow.error))")
    }

    @Test("red team: count(DISTINCT unit) also works after USING")
    func countDistinctAfterUsing() throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT city, count(DISTINCT customer_id) FROM orders JOIN customers USING (customer_id) GROUP BY city ORDER BY city")
        #expect(response.isOK, "\(String(describing: response.error))")
    }

    @Test("count(DISTINCT unit) is an allowed aggregate, released under the same threshold")
    func countDistinctUnits() throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT channel, count(DISTINCT customer_id) AS customers FROM orders GROUP BY channel ORDER BY channel")
        let expected = try ReleaseModel.raw(workspace.source, "SELECT channel, count(DISTINCT customer_id) FROM orders GROUP BY channel HAVING count(DISTINCT customer_id) >= 10 ORDER BY channel")
        #expect(response.result?.rows == expected)
    }

    @Test("USING joins work and resolve the merged key to both sides")
    func usingJoin() throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT city, count(*) FROM orders JOIN customers USING (customer_id) GROUP BY city ORDER BY city")
        let expected = try ReleaseModel.raw(workspace.source, """
            SELECT c.city, count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.status = 'active'
            GROUP BY c.city HAVING count(DISTINCT o.customer_id) >= 10 ORDER BY c.city
            """)
        #expect(response.result?.rows == expected, "\(String(describing: response.error))")
    }

    @Test("GROUP BY accepts ordinals and output aliases; anonymous parameters keep their order")
    func groupingTermsAndParameters() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let expected = try ReleaseModel.raw(workspace.source, "SELECT substr(created_at, 1, 4), count(*) FROM orders WHERE channel <> 'web' GROUP BY 1 HAVING count(DISTINCT customer_id) >= 10 ORDER BY 1")
        #expect(gateway.query("SELECT substr(created_at, 1, 4) AS y, count(*) FROM orders WHERE channel <> 'web' GROUP BY y ORDER BY y").result?.rows == expected)
        #expect(gateway.query("SELECT substr(created_at, 1, 4), count(*) FROM orders WHERE channel <> 'web' GROUP BY 1 ORDER BY 1").result?.rows == expected)
        let withParameters = gateway.query("SELECT ? AS tag, count(*) FROM orders WHERE channel = ?", parameters: .positional([.integer(7), .text("app")]))
        let count = try ReleaseModel.raw(workspace.source, "SELECT count(*) FROM orders WHERE channel = 'app'")
        #expect(withParameters.result?.rows == [[.integer(7)] + count[0]], "\(String(describing: withParameters.error))")
    }

    @Test("vm_steps and the price of an aggregate query come from table sizes, not from the rows it touched")
    func meteredSteps() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let all = gateway.query("SELECT count(*) FROM orders")
        let none = gateway.query("SELECT count(*) FROM orders WHERE channel = 'nowhere'")
        let orders = try ReleaseModel.raw(workspace.source, "SELECT count(*) FROM orders")
        guard case .integer(let size) = orders[0][0] else { Issue.record("fixture"); return }
        #expect(all.usage.vmSteps == size + 1)
        #expect(none.usage.vmSteps == size)
        #expect(none.usage.costMicros == all.usage.costMicros - 20)
        // The holder's record keeps the exact steps.
        var exact: Int64 = 0
        try gateway.ledger.records { exact = $0.vmSteps; return true }
        #expect(exact > size)
    }
}

/// Issue 7's property test: random aggregate queries from the stage-1 grammar; every released group
/// has at least k distinct units in the raw data, and changing the rows of the withheld groups
/// changes nothing the consumer sees.
@Suite struct ReleaseModelPropertyTests {
    /// A random query: its SQL for the gateway and, for the raw data, its keys and WHERE.
    struct Query {
        var sql: String
        var keys: [String]
        var rawWhere: String
        var join: Bool
    }

    static func randomQuery(_ random: inout SeededGenerator) -> Query {
        let join = Bool.random(using: &random)
        var dimensions = ["o.channel", "substr(o.created_at, 1, 7)", "substr(o.created_at, 6, 2)"]
        if join { dimensions += ["c.city", "c.birth_date", "c.status"] }
        let keys = Array(dimensions.shuffled(using: &random).prefix(Int.random(in: 0...2, using: &random)))
        var filters = ["o.channel <> 'web'", "o.created_at >= '2025-06'", "lower(o.channel) LIKE '%a%'", "length(o.channel) BETWEEN 3 AND 6",
                       "o.channel IN ('app', 'store')", "coalesce(o.channel, 'x') <> 'phone'"]
        if join { filters += ["c.city IN ('Beijing', 'Shanghai', 'Lhasa', 'Xining')", "c.birth_date < '1980'", "upper(c.city) GLOB 'S*'"] }
        let chosen = Array(filters.shuffled(using: &random).prefix(Int.random(in: 0...2, using: &random)))
        let aggregates = Array(["count(*)", "sum(o.amount)", "avg(o.amount)", "min(o.amount)", "max(o.amount)", "count(DISTINCT o.customer_id)"]
            .shuffled(using: &random).prefix(Int.random(in: 1...3, using: &random)))
        let from = join ? "orders o JOIN customers c ON o.customer_id = c.customer_id" : "orders o"
        var sql = "SELECT " + (keys + aggregates).joined(separator: ", ") + " FROM \(from)"
        if !chosen.isEmpty { sql += " WHERE " + chosen.joined(separator: " AND ") }
        if !keys.isEmpty { sql += " GROUP BY " + keys.joined(separator: ", ") }
        if Bool.random(using: &random) { sql += " HAVING count(*) > \(Int.random(in: 0...40, using: &random))" }
        if !keys.isEmpty { sql += " ORDER BY " + (1...keys.count).map(String.init).joined(separator: ", ") }
        // The raw data is read through no view: apply the row filter and masks by hand.
        // The `year` mask keeps a date's shape: YYYY-01-01.
        let maskedBirthDate = "(substr(c.birth_date, 1, 4) || '-01-01')"
        let rawKeys = keys.map { $0 == "c.birth_date" ? maskedBirthDate : $0 }
        var rawWhere = chosen.map { $0.replacing("c.birth_date", with: maskedBirthDate) }
        if join { rawWhere.append("c.status = 'active'") }
        return Query(sql: sql, keys: rawKeys, rawWhere: rawWhere.isEmpty ? "1" : rawWhere.joined(separator: " AND "), join: join)
    }

    @Test("released groups reach k in the raw data; withheld groups' rows never change the response")
    func property() throws {
        var random = SeededGenerator(seed: 20261129)
        let base = try TestWorkspace()
        let baseGateway = try base.gateway()
        var checked = 0, withheld = 0
        for _ in 0..<30 {
            let query = Self.randomQuery(&random)
            let response = baseGateway.query(query.sql)
            let result = try #require(response.result, "\(query.sql) → \(String(describing: response.error))")
            let from = query.join ? "orders o JOIN customers c ON o.customer_id = c.customer_id" : "orders o"
            let keyList = query.keys.isEmpty ? "'all'" : query.keys.joined(separator: ", ")
            // Every released group: at least 10 distinct customers in the raw data.
            for row in result.rows {
                let conditions = zip(query.keys, row).map { key, value -> String in
                    switch value {
                    case .null: return "\(key) IS NULL"
                    case .text(let text): return "\(key) = '\(text.replacing("'", with: "''"))'"
                    default: return "\(key) = \(value)"
                    }
                }
                let units = try ReleaseModel.raw(base.source, "SELECT count(DISTINCT o.customer_id) FROM \(from) WHERE \(query.rawWhere)" + conditions.map { " AND \($0)" }.joined())
                guard case .integer(let count) = units[0][0] else { Issue.record("raw"); continue }
                #expect(count >= 10, "\(query.sql): released group \(row) has \(count) units")
            }
            // The orders of the withheld groups of this query.
            let small = "SELECT o.order_id FROM \(from) WHERE \(query.rawWhere) AND (\(keyList)) IN (SELECT \(keyList) FROM \(from) WHERE \(query.rawWhere) GROUP BY \(keyList) HAVING count(DISTINCT o.customer_id) < 10)"
            guard let changedRows = try? ReleaseModel.raw(base.source, small), !changedRows.isEmpty else { checked += 1; continue }
            let ids = changedRows.compactMap { row -> String? in if case .integer(let id) = row[0] { String(id) } else { nil } }
            let changed = try ReleaseModel.workspace(changingAmountsWhere: "order_id IN (\(ids.joined(separator: ",")))")
            let other = try changed.gateway().query(query.sql)
            #expect(ReleaseModel.signature(response) == ReleaseModel.signature(other), "\(query.sql)")
            checked += 1
            withheld += 1
        }
        #expect(checked == 30)
        #expect(withheld > 5, "the generator should produce queries with withheld groups")
    }
}

/// Stage 1's functions (`StageOneFunctions`) over edge values: never an error, the same result twice.
@Suite struct StageOneFunctionTests {
    static let edgeValues = [
        "NULL", "-9223372036854775808", "9223372036854775807", "1e999", "-1e999", "0", "-1", "0.5", "''", "'abc'",
        "' %_[x-'", "CAST(x'ff80c0' AS TEXT)", "'{\"a\":'", "x'00ff'", "'2024-02-30 25:61:00'", "'2024-01-01'",
    ]
    static let huge = "hex(zeroblob(4000000))"

    @Test("every stage-1 function: no error and the same result twice on edge values", arguments: StageOneFunctions.arities.keys.sorted())
    func edgeValues(function: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let runtime = try #require(gateway.runtime("retail"))
        let arity = try #require(StageOneFunctions.arities[function])
        let counts = Array(arity.lowerBound...min(arity.upperBound, 3))
        var calls: [String] = []
        for count in counts {
            var combinations: [[String]] = [[]]
            for position in 0..<count {
                let values = position < 2 ? Self.edgeValues : ["NULL", "0", "-9223372036854775808", "''", "'abc'", "x'00'"]
                combinations = combinations.flatMap { prefix in values.map { prefix + [$0] } }
            }
            calls += combinations.map { "\(function)(\($0.joined(separator: ", ")))" }
            calls.append("\(function)(\(([Self.huge] + Array(repeating: "1", count: count - 1)).joined(separator: ", ")))")
            if count >= 2 { calls.append("\(function)(\((["'x'", Self.huge] + Array(repeating: "2", count: count - 2)).joined(separator: ", ")))") }
        }
        let limits = runtime.policy.limits
        try runtime.pool.withConnection { sandbox in
            for call in calls {
                let first = sandbox.execute(sql: "SELECT \(call)", parameters: .none, limits: limits, rowLimit: 10)
                let second = sandbox.execute(sql: "SELECT \(call)", parameters: .none, limits: limits, rowLimit: 10)
                switch (first, second) {
                case (.success(let a), .success(let b)):
                    #expect(a.result.rows == b.result.rows, "\(call) is not deterministic")
                case (.failure(let error), _), (_, .failure(let error)):
                    Issue.record("\(call.prefix(200)) failed: \(error.error) \(error.detail)")
                }
            }
        }
    }
}

/// Rows tables: no query carries more rows' values than the row limit through packing.
@Suite struct PackedRowsTests {
    @Test("concatenating aggregates and value-copying windows count every packed row", arguments: [
        ("SELECT json_group_array(json_array(customer_id, name, phone, id_card, email)) FROM customers", "rows_limit_exceeded"),
        ("SELECT group_concat(name) FROM customers", "rows_limit_exceeded"),
        ("SELECT group_concat(DISTINCT name) FROM customers", "rows_limit_exceeded"),
        ("SELECT json_group_object(name, phone) FROM customers", "rows_limit_exceeded"),
        ("SELECT group_concat((SELECT group_concat(phone) FROM customers))", "rows_limit_exceeded"),
        ("SELECT city, group_concat(name) OVER (ORDER BY name) FROM customers LIMIT 3", "rows_limit_exceeded"),
        ("SELECT phone, lag(phone, 1) OVER (ORDER BY customer_id), lag(phone, 2) OVER (ORDER BY customer_id) FROM customers", "rows_limit_exceeded"),
        ("SELECT group_concat(name) FROM (SELECT name FROM customers LIMIT 50)", "ok"),
        ("SELECT city, lag(city) OVER () FROM (SELECT city FROM customers LIMIT 50)", "ok"),
    ])
    func packedRows(sql: String, outcome: String) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect((response.error?.code.rawValue ?? "ok") == outcome, "\(sql) → \(String(describing: response.error))")
        if response.isOK { #expect(response.usage.rows > response.result?.rowCount ?? 0) }
    }

    @Test("packed rows are charged per row and count against daily_rows")
    func packedRowsAreCharged() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ max_rows: 200, daily_rows: 120 }"))
        let gateway = try workspace.gateway()
        let first = gateway.query("SELECT group_concat(name) FROM (SELECT name FROM customers LIMIT 50)")
        #expect(first.usage.rows == 51)
        #expect(first.usage.costMicros == 1000 + 20 * 51 + 500)
        let second = gateway.query("SELECT group_concat(name) FROM (SELECT name FROM customers LIMIT 50)")
        #expect(second.usage.rows == 51)
        // 102 of 120 rows used: 50 more packed rows would pass the quota.
        let third = gateway.query("SELECT group_concat(name) FROM (SELECT name FROM customers LIMIT 50)")
        #expect(third.error?.code == .rowsLimitExceeded, "\(String(describing: third.error))")
    }

    @Test("red team round 2: window frames and scalar subqueries count what they carry", arguments: [
        "SELECT json_array(min(phone) OVER (ORDER BY customer_id ROWS BETWEEN 200 FOLLOWING AND 200 FOLLOWING), min(phone) OVER (ORDER BY customer_id ROWS BETWEEN 400 FOLLOWING AND 400 FOLLOWING)) FROM customers LIMIT 200",
        "SELECT json_array(" + (0..<3).map { group in
            "json_array(" + (0..<30).map { "(SELECT phone FROM customers LIMIT 1 OFFSET \(group * 30 + $0))" }.joined(separator: ", ") + ")"
        }.joined(separator: ", ") + ")",
        "SELECT max(phone) OVER () FROM customers LIMIT 1",
    ])
    func framesAndSubqueries(sql: String) throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ max_rows: 50 }"))
        let response = try workspace.gateway().query(sql)
        #expect(response.error?.code == .rowsLimitExceeded, "\(String(describing: response.error))")
    }

    @Test("recursion cannot carry every row into one value")
    func recursiveAccumulation() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let attack = gateway.query("""
            WITH RECURSIVE t AS (SELECT phone, city, row_number() OVER (ORDER BY customer_id) rn FROM customers),
            r(n, s) AS (SELECT 0, '' UNION ALL SELECT r.n+1, r.s || t.phone || '|' || t.city || ';' FROM r JOIN t ON t.rn = r.n+1)
            SELECT n, s FROM r ORDER BY n DESC LIMIT 1
            """)
        #expect(attack.error?.code == .shapeNotAllowed, "\(String(describing: attack.error))")
        let counting = gateway.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT count(*) FROM c")
        #expect(counting.result?.rows == [[.integer(10)]])
    }
}

/// The parser fuzzer found that quoting by Character left a quote followed by a combining mark
/// undoubled, so the rest of a string literal reached SQLite as SQL. Quoting is by scalar now.
@Suite struct QuotingInjectionTests {
    @Test("a quote followed by a combining mark stays inside its literal", arguments: ["\u{0301}", "\u{07F3}", "\u{20DD}"])
    func combiningMarkAfterQuote(mark: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let literal = "a'\(mark) UNION SELECT amount FROM orders --"
        // Built by scalar (Swift's `replacing` has the very bug this test is about).
        let sql = "SELECT \(Renderer.string(literal)) AS v FROM customers LIMIT 1"
        #expect(sql.unicodeScalars.filter { $0 == "'" }.count == 4)
        let response = gateway.query(sql)
        #expect(response.result?.rows == [[.text(literal)]], "\(String(describing: response.error))")
        let identifier = gateway.query("SELECT city AS \(Renderer.identifier("x\"\(mark) FROM orders --")) FROM customers LIMIT 1")
        #expect(identifier.result?.columns == ["x\"\(mark) FROM orders --"], "\(String(describing: identifier.error))")
        let aggregate = gateway.query("SELECT channel, count(*) FROM orders WHERE channel <> \(Renderer.string("x'\(mark)) UNION ALL SELECT amount, 1 FROM orders --")) GROUP BY channel ORDER BY channel")
        let expected = try ReleaseModel.raw(workspace.source, "SELECT channel, count(*) FROM orders GROUP BY channel HAVING count(DISTINCT customer_id) >= 10 ORDER BY channel")
        #expect(aggregate.result?.rows == expected, "\(String(describing: aggregate.error))")
    }
}

/// Red team: a consumer's unknown dataset name never reaches the ledger or invoices as text.
@Suite struct UnknownDatasetRecordTests {
    @Test("an unknown dataset is refused and recorded as an empty dataset", arguments: ["Retail", "ret\u{0430}il", "retail\u{0}", "-5\n=1+1", String(repeating: "x", count: 100)])
    func recordedEmpty(dataset: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT 1", dataset: dataset).error?.code == .unknownDataset)
        var recorded: [String] = []
        try gateway.ledger.records { recorded.append($0.dataset); return true }
        #expect(recorded == [""])
    }
}

/// Red team: refusals cost nothing, so past 120 a minute a consumer's refusals are summarised.
@Suite struct RefusalSummaryTests {
    @Test("past 120 refusals in a minute, the rest are answered and summarised in one record")
    func summarised() throws {
        let workspace = try TestWorkspace()
        let clock = Mutex<Int64>(1_795_000_020_000_000)
        let gateway = try workspace.gateway(now: { clock.withLock { $0 } })
        for _ in 0..<130 {
            #expect(gateway.query("SELECT nope FROM customers").error?.code == .noSuchColumn)
        }
        #expect(gateway.query("SELECT city FROM customers LIMIT 1").isOK, "answers are never summarised")
        clock.withLock { $0 += 60_000_000 }
        #expect(gateway.query("SELECT nope FROM customers").error?.code == .noSuchColumn)
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        #expect(records.filter { $0.errorCode == "no_such_column" }.count == 121)
        let summary = try #require(records.first { $0.errorCode == "refusals_summarized" })
        #expect(summary.consumer == "analyst-a" && summary.rewrittenSQL.hasPrefix("10 more refused requests"))
        #expect(records.filter { $0.status == .ok }.count == 1)
        #expect(try gateway.ledger.verify() == nil)
    }
}
