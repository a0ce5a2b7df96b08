import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgateLedgerPostgres
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Synchronization
import Testing

/// The ε of every record in the gateway's ledger, summed.
func recordedEpsilon(_ gateway: Gateway) throws -> Int64 {
    var total: Int64 = 0
    try gateway.ledger.records { total += $0.epsilonMicros; return true }
    return total
}

/// Issue 10: queries on a table with `privacy:` are answered with bounded contributions, exact
/// discrete noise and private group selection, and pay ε from the consumer's budget.
@Suite struct PrivateQueryTests {
    func raw(_ workspace: TestWorkspace, _ sql: String) throws -> [[SQLValue]] {
        try Connection(path: workspace.source, mode: .readOnly).rows(sql)
    }

    @Test("a private GROUP BY releases noisy counts and sums near the truth, in key order, with their 95% half-widths")
    func groupByChannel() throws {
        let workspace = try PrivateRetail.workspace()
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT channel, count(*) AS n, sum(amount) AS total FROM orders GROUP BY channel")
        let result = try #require(response.result, "\(String(describing: response.error))")
        #expect(response.usage.epsilonMicros == 1_000_000)
        #expect(response.usage.suppressedGroups == nil)
        // ε = 1: half for selection (G = 2: scale 4), a quarter each for count(*) (sensitivity
        // G·R = 10: scale 40) and sum(amount) (G·(R·5000 + 1) = 50,002: scale 200,008).
        let rowsWidth = Double(LaplaceScale(numerator: 40, denominator: 1)!.halfWidth())
        let sumWidth = Double(LaplaceScale(numerator: 200_008, denominator: 1)!.halfWidth())
        #expect(response.usage.noise == [NoiseInterval(column: "n", halfWidth: rowsWidth), NoiseInterval(column: "total", halfWidth: sumWidth)])
        let truth = try raw(workspace, "SELECT channel, count(*), sum(amount) FROM orders GROUP BY channel ORDER BY channel")
        let channels = result.rows.map { $0[0] }
        #expect(channels == channels.sorted { "\($0)" < "\($1)" })
        #expect(Set(channels).isSubset(of: Set(truth.map { $0[0] })))
        #expect(!channels.isEmpty)
        for row in result.rows {
            guard let exact = truth.first(where: { $0[0] == row[0] }), case .integer(let n) = row[1], case .integer(let exactN) = exact[1] else {
                Issue.record("unexpected row \(row)")
                continue
            }
            // Bounding lowers the count (at most 5 orders per customer and channel, 2 channels
            // per customer; the fixture's customers have 1–7 orders), and noise beyond 4
            // half-widths has probability < 10⁻⁵.
            #expect(Double(n) <= Double(exactN) + 4 * rowsWidth)
            #expect(Double(n) >= Double(exactN) / 2 - 4 * rowsWidth)
        }
    }

    @Test("1,000 repetitions cost the ε of one and return the same answer; varied queries are charged until the budget refuses")
    func cacheAndBudget() throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 3, period: month }"))
        let gateway = try workspace.gateway()
        let sql = "SELECT channel, sum(amount) AS total FROM orders GROUP BY channel"
        let first = gateway.query(sql)
        let answer = try #require(first.result?.rows, "\(String(describing: first.error))")
        #expect(first.usage.epsilonMicros == 1_000_000)
        for _ in 0..<999 {
            let again = gateway.query(sql)
            #expect(again.result?.rows == answer)
            #expect(again.usage.epsilonMicros == 0)
            #expect(again.usage.noise == first.usage.noise)
        }
        #expect(try recordedEpsilon(gateway) == 1_000_000)
        // Stage 2 changes (ORDER BY, LIMIT) reuse the released groups: post-processing is free.
        let reordered = gateway.query(sql + " ORDER BY total DESC")
        #expect(reordered.usage.epsilonMicros == 0)
        #expect(Set(reordered.result?.rows ?? []) == Set(answer))
        // A slightly varied query is charged each time until the budget refuses.
        var spent = 1
        for channel in ["x1", "x2", "x3"] {
            let varied = gateway.query("SELECT channel, sum(amount) AS total FROM orders WHERE channel <> '\(channel)' GROUP BY channel")
            if spent < 3 {
                #expect(varied.isOK && varied.usage.epsilonMicros == 1_000_000)
                spent += 1
            } else {
                let error = try #require(varied.error)
                #expect(error.code == .privacyBudgetExhausted)
                #expect(error.hint.contains("remaining epsilon 0;"))
                #expect(error.hint.contains("refreshes on the 1st of the month, 00:00 UTC"))
                #expect(varied.usage.epsilonMicros == 0)
            }
        }
        #expect(try recordedEpsilon(gateway) == 3_000_000)
        // The cached answer is still free when the budget is spent.
        #expect(gateway.query(sql).result?.rows == answer)
        let quota = try gateway.quota(consumer: "analyst-a", dataset: "retail").get()
        #expect(quota.privacy == PrivacyBudgetStatus(budgetMicros: 3_000_000, spentMicros: 3_000_000, period: .month,
                                                      refresh: "on the 1st of the month, 00:00 UTC"))
    }

    /// Red team: the cache was keyed on stage 1 alone, so count, sum and avg of one measure
    /// shared one answer (the count came back as the sum and as an average far outside the
    /// bounds, free), and a different number of aggregates failed on the cached shape.
    @Test("count, sum and avg of one measure are different queries: each charged, each its own answer")
    func cacheDistinguishesAggregates() throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 10, period: month }"))
        let gateway = try workspace.gateway()
        let filter = "FROM orders WHERE created_at >= '2025-01-01' GROUP BY channel"
        let count = gateway.query("SELECT channel, count(amount) AS v \(filter)")
        let sum = gateway.query("SELECT channel, sum(amount) AS v \(filter)")
        let avg = gateway.query("SELECT channel, avg(amount) AS v \(filter)")
        let both = gateway.query("SELECT channel, count(*) AS c, sum(amount) AS s \(filter)")
        for response in [count, sum, avg, both] {
            #expect(response.isOK, "\(String(describing: response.error))")
            #expect(response.usage.epsilonMicros == 1_000_000)
        }
        // Averages stay within the bounds [0, 5000] of the test policy.
        for row in avg.result?.rows ?? [] {
            guard case .real(let value) = row[1] else { continue }
            #expect(value >= 0 && value <= 5000)
        }
        #expect(count.usage.noise.map(\.halfWidth) != sum.usage.noise.map(\.halfWidth))
        #expect(both.result?.columns == ["channel", "c", "s"] && both.result?.rows.first?.count == 3)
        // The same query again is free and identical.
        let again = gateway.query("SELECT channel, sum(amount) AS v \(filter)")
        #expect(again.usage.epsilonMicros == 0 && again.result?.rows == sum.result?.rows)
    }

    @Test("a grant's epsilon_budget lowers the table's budget")
    func grantLowersBudget() throws {
        let workspace = try PrivateRetail.workspace(grant: "{ max_rows: 200, epsilon_budget: 1.5 }")
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT count(*) AS n FROM orders").isOK)
        let second = gateway.query("SELECT count(*) AS n FROM orders WHERE channel <> 'z'")
        #expect(second.error?.code == .privacyBudgetExhausted)
        #expect(second.error?.hint.contains("remaining epsilon 0.5;") == true)
    }

    @Test("differencing two large groups that differ by one person gives noise, not the person: the spread matches the noise scale")
    func differencingAttack() throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 1000, period: month }"))
        let gateway = try workspace.gateway()
        // One customer's first order time singles them out within the table.
        let target = try raw(workspace, "SELECT created_at FROM orders GROUP BY created_at HAVING count(*) = 1 LIMIT 1")
        guard case .text(let moment)? = target.first?.first else {
            Issue.record("the fixture has no unique order time")
            return
        }
        var differences: [Double] = []
        for attempt in 0..<150 {
            // Each pair differs in text, so each is charged (and noised) anew.
            let all = gateway.query("SELECT sum(amount) AS s FROM orders WHERE channel <> 'n\(attempt)'")
            let without = gateway.query("SELECT sum(amount) AS s FROM orders WHERE channel <> 'n\(attempt)' AND created_at <> ?", parameters: .positional([.text(moment)]))
            guard case .integer(let a)? = all.result?.rows.first?[0], case .integer(let b)? = without.result?.rows.first?[0] else {
                Issue.record("\(String(describing: all.error)) \(String(describing: without.error))")
                return
            }
            differences.append(Double(a - b))
        }
        // sum(amount) alone: ε/2 for it, sensitivity G·(R·5000 + 1) = 50,002 → scale 100,004;
        // the difference of two independent draws has standard deviation sqrt(2)·sqrt(2q)/(1−q).
        let scale = LaplaceScale(numerator: 100_004, denominator: 1)!
        let q = scale.ratio
        let expected = sqrt(2) * sqrt(2 * q) / (1 - q)
        let mean = differences.reduce(0, +) / Double(differences.count)
        let spread = sqrt(differences.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(differences.count - 1))
        #expect(abs(spread - expected) / expected < 0.3, "spread \(spread), expected \(expected)")
        // The person's own contribution is at most 5 × 5000: far inside the noise.
        #expect(abs(mean) < 4 * expected / sqrt(Double(differences.count)) + 25_000)
        #expect(try recordedEpsilon(gateway) == 300_000_000)
    }

    @Test("32 concurrent clients spending the last ε: the total spent never exceeds the budget")
    func budgetRace() throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 5, period: day }"))
        let gateway = try workspace.gateway()
        let ok = Atomic<Int>(0)
        let others = Mutex<[String]>([])
        concurrently(32) { index in
            let response = gateway.query("SELECT channel, count(*) AS n FROM orders WHERE channel <> 'c\(index)' GROUP BY channel")
            if response.isOK {
                ok.add(1, ordering: .relaxed)
            } else if response.error?.code != .privacyBudgetExhausted {
                others.withLock { $0.append(response.error?.description ?? "?") }
            }
        }
        #expect(ok.load(ordering: .relaxed) == 5)
        #expect(others.withLock { $0 } == [])
        #expect(try recordedEpsilon(gateway) == 5_000_000)
    }

    @Test("3 gateway nodes × 32 clients on one PostgreSQL ledger spending the last ε: never more than the budget", .needsPostgres)
    func clusterBudgetRace() throws {
        let server = try PostgresTestServer.shared()
        let url = try server.makeDatabase()
        let key = NSTemporaryDirectory() + "sandgate-dp-key-\(UUID().uuidString)"
        let workspaces = try (0..<3).map { _ in try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 10, period: total }")) }
        let nodes = try workspaces.enumerated().map { index, workspace in
            try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: workspace.policies, stateDirectory: workspace.state, poolSize: 2,
                ledger: { () throws(LedgerError) in try PostgresLedgerStore(url: url, nodeID: "node-\(index)", keyPath: key) }))
        }
        for index in 0..<3 { #expect(nodes[index].query("SELECT count(*) AS n FROM orders WHERE channel <> 'pre\(index)'").isOK) }
        let ok = Atomic<Int>(0)
        let others = Mutex<[String]>([])
        concurrently(96) { index in
            let response = nodes[index % 3].query("SELECT count(*) AS n FROM orders WHERE channel <> 'r\(index)'")
            if response.isOK {
                ok.add(1, ordering: .relaxed)
            } else if response.error?.code != .privacyBudgetExhausted {
                others.withLock { $0.append(response.error?.description ?? "?") }
            }
        }
        #expect(ok.load(ordering: .relaxed) == 7)
        #expect(others.withLock { $0 } == [])
        #expect(try recordedEpsilon(nodes[0]) == 10_000_000)
        for node in nodes { #expect(try node.ledger.verify() == nil) }
    }

    @Test("ε is refunded when a query stops before its noise is drawn, and spent when stage 2 fails after it")
    func refundsAndFailures() throws {
        let workspace = try PrivateRetail.workspace(grant: "{ max_rows: 200, max_result_bytes: 1024 }",
                                                    policy: PrivateRetail.policy(budget: "{ epsilon: 2, period: month }"))
        let gateway = try workspace.gateway()
        let refused = gateway.query("SELECT count(*) AS n FROM orders WHERE channel = ?", parameters: .positional([]))
        #expect(refused.error?.code == .badRequest)
        #expect(try recordedEpsilon(gateway) == 0)
        // Stage 1 runs and is noised; stage 2's row is wider than the grant's 1024 bytes. Were
        // this refunded, `CASE WHEN sum(amount) > x THEN <wide> END` would read one bit of a
        // fresh noisy answer per try, for free, and averaging would defeat the noise.
        let wide = "SELECT count(*) AS n, printf('%1000d', count(*)) AS wide, printf('%1000d', count(*)) AS wider FROM orders"
        let failed = gateway.query(wide)
        #expect(failed.error?.code == .resultTooLarge, "\(String(describing: failed.error))")
        #expect(failed.usage.epsilonMicros == 1_000_000)
        var records: [(UsageStatus, Int64)] = []
        try gateway.ledger.records { records.append(($0.status, $0.epsilonMicros)); return true }
        #expect(records.map(\.0) == [.refused, .failed] && records.map(\.1) == [0, 1_000_000])
        // The same stage 1 reuses the released groups: free, and fails the same way.
        let again = gateway.query(wide)
        #expect(again.error?.code == .resultTooLarge && again.usage.epsilonMicros == 0)
        #expect(gateway.query("SELECT count(*) AS n FROM orders").usage.epsilonMicros == 0)
        #expect(gateway.query("SELECT count(*) AS n FROM orders WHERE channel <> 'q'").usage.epsilonMicros == 1_000_000)
        #expect(gateway.query("SELECT count(*) AS n FROM orders WHERE channel <> 'r'").error?.code == .privacyBudgetExhausted)
        #expect(try recordedEpsilon(gateway) == 2_000_000)
    }

    @Test("on a private table min, max and DISTINCT over a measure are refused")
    func refusedAggregates() throws {
        let workspace = try PrivateRetail.workspace()
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT max(amount) FROM orders").error?.code == .functionNotAllowed)
        #expect(gateway.query("SELECT count(DISTINCT amount) FROM orders").error?.code == .shapeNotAllowed)
        #expect(try recordedEpsilon(gateway) == 0)
    }

    /// A source where 50 customers have one order of 100 in channel `web` and customer 999 has
    /// 1,000 orders of 5,000 spread over 10 channels.
    static func heavyUnitSource(_ path: String, withHeavyUnit: Bool) throws {
        try? FileManager.default.removeItem(atPath: path)
        let db = try Connection(path: path, mode: .readWriteCreate)
        try db.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, city TEXT)")
        try db.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL, channel TEXT, created_at TEXT)")
        try db.execute("BEGIN")
        for customer in 1...50 {
            try db.execute("INSERT INTO customers VALUES (\(customer), 'X')")
            try db.execute("INSERT INTO orders (customer_id, amount, channel, created_at) VALUES (\(customer), 100, 'web', '2026-01-01')")
        }
        if withHeavyUnit {
            try db.execute("INSERT INTO customers VALUES (999, 'X')")
            for order in 0..<1_000 {
                try db.execute("INSERT INTO orders (customer_id, amount, channel, created_at) VALUES (999, 5000, 'c\(order % 10)', '2026-01-01')")
            }
        }
        try db.execute("COMMIT")
    }

    @Test("contribution bounding: a unit with 1,000 rows changes a sum by at most max_rows_per_unit × bound (plus noise)")
    func contributionBounding() throws {
        // ε 10 (the largest a query may spend) so the noise is small beside the 5,000,000 an
        // unbounded unit would add; one group per unit, five rows per group.
        let policy = PrivateRetail.policy(epsilon: "10", budget: "{ epsilon: 1000, period: month }", groups: 1, rows: 5, minGroupSize: 10)
        var totals: [Bool: (sum: Int64, rows: Int64, width: Double, rowWidth: Double)] = [:]
        for heavy in [false, true] {
            let workspace = try PrivateRetail.workspace(policy: policy)
            try Self.heavyUnitSource(workspace.source, withHeavyUnit: heavy)
            let gateway = try workspace.gateway()
            let response = gateway.query("SELECT sum(amount) AS s, count(*) AS n FROM orders")
            guard case .integer(let sum)? = response.result?.rows.first?[0], case .integer(let rows)? = response.result?.rows.first?[1] else {
                Issue.record("\(String(describing: response.error)) \(String(describing: response.result?.rows))")
                return
            }
            totals[heavy] = (sum, rows, response.usage.noise[0].halfWidth, response.usage.noise[1].halfWidth)
        }
        guard let light = totals[false], let heavy = totals[true] else { return }
        // At most 5 rows × 5000 in the one group the unit keeps; 4 half-widths of noise either side.
        let bound = 5.0 * 5000
        #expect(Double(heavy.sum - light.sum) <= bound + 4 * (heavy.width + light.width))
        #expect(Double(heavy.rows - light.rows) <= 5 + 4 * (heavy.rowWidth + light.rowWidth))
        #expect(heavy.width < 100_000, "the noise must be small enough for this test to mean something")
    }

    @Test("contribution bounding, exactly: stage 1 keeps at most max_rows_per_unit rows in at most max_groups_per_unit groups per unit, clamped")
    func contributionBoundingExact() throws {
        let policy = PrivateRetail.policy(budget: "{ epsilon: 1000, period: month }", groups: 2, rows: 5, bounds: "[0, 3000]")
        let workspace = try PrivateRetail.workspace(policy: policy)
        try Self.heavyUnitSource(workspace.source, withHeavyUnit: true)
        let gateway = try workspace.gateway()
        let runtime = try #require(gateway.runtime("retail"))
        let plan = try #require(try runtime.prepare("SELECT channel, count(*) AS n, sum(amount) AS s FROM orders GROUP BY channel").get().plan.privacy)
        // Measurements: units, rows, sum(amount) (in that order).
        var chosen: Set<Set<String>> = []
        for _ in 0..<20 {
            var groups: [String: [SQLValue]] = [:]
            let outcome = try runtime.pool.withConnection { sandbox in
                sandbox.runStageOne(plan, parameters: .none, limits: runtime.policy.limits, cancellation: nil) { keys, raw in
                    if case .text(let channel) = keys[0] { groups[channel] = raw }
                }
            }
            #expect(throws: Never.self) { try outcome.get() }
            #expect(groups["web"].map { [$0[0], $0[1], $0[2]] } == [.integer(50), .integer(50), .real(5_000)])
            // Customer 999 has 100 orders of 5,000 in each of c0…c9: two channels, five rows each,
            // each clamped to 3,000 — chosen at random per query.
            let heavy = groups.filter { $0.key.hasPrefix("c") }
            #expect(heavy.count == 2)
            for raw in heavy.values { #expect(raw == [.integer(1), .integer(5), .real(15_000)]) }
            chosen.insert(Set(heavy.keys))
        }
        // A fresh random choice per query: 20 draws of 2 of 10 channels repeat one pair with
        // probability 45^-19.
        #expect(chosen.count > 1)
    }

    @Test("explain shows the ε cost and the expected 95% interval of every aggregate, runs nothing and spends nothing")
    func explainShowsCostAndIntervals() throws {
        let workspace = try PrivateRetail.workspace()
        let gateway = try workspace.gateway()
        let sql = "SELECT channel, count(*) AS n, sum(amount) AS total FROM orders GROUP BY channel"
        let explanation = try gateway.explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: sql)).get()
        let privacy = try #require(explanation.privacy)
        #expect(privacy.epsilonMicros == 1_000_000)
        #expect(privacy.budget == PrivacyBudgetStatus(budgetMicros: 10_000_000, spentMicros: 0, period: .month, refresh: "on the 1st of the month, 00:00 UTC"))
        let rowsWidth = Double(LaplaceScale(numerator: 40, denominator: 1)!.halfWidth())
        let sumWidth = Double(LaplaceScale(numerator: 200_008, denominator: 1)!.halfWidth())
        #expect(privacy.intervals == [NoiseInterval(column: "count(*)", halfWidth: rowsWidth), NoiseInterval(column: "sum(amount)", halfWidth: sumWidth)])
        #expect(explanation.rules.contains("ε spent: 1 of 10 left"))
        #expect(explanation.sql.contains("max(0, min(5000, \"orders\".\"amount\"))"))
        #expect(try recordedEpsilon(gateway) == 0)
        // The query then reports the same widths, and a second explain says it is free.
        let response = gateway.query(sql)
        #expect(response.usage.noise.map(\.halfWidth) == [rowsWidth, sumWidth])
        let again = try gateway.explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: sql)).get()
        #expect(again.privacy?.epsilonMicros == 0)
        #expect(again.privacy?.budget?.remainingMicros == 9_000_000)
    }

    @Test("policy check refuses δ ≥ 1/units against the data")
    func deltaAgainstUnits() throws {
        // 2,500 customers: δ = 0.0005 ≥ 1/2500 is refused (the test fixture's 400 would pass).
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(delta: "0.0005"))
        try? FileManager.default.removeItem(atPath: workspace.source)
        let db = try Connection(path: workspace.source, mode: .readWriteCreate)
        try db.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, city TEXT)")
        try db.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL, channel TEXT, created_at TEXT)")
        try db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) INSERT INTO orders (customer_id, amount, channel, created_at) SELECT i, 1, 'web', '2026-01-01' FROM n")
        let policy = try #require(PolicyLoader.load(directory: workspace.policies).datasets["retail"])
        let problems = DataValidator.validate(policy, databasePath: workspace.source)
        #expect(problems.map(\.message) == ["privacy: delta 0.0005 is not below 1/2500 (one over the number of distinct customer_id values): it would allow releasing one person's data outright"])
        #expect(problems.first?.location.line == 24)  // the `privacy:` key
    }
}

/// `policy diff` ranks edits of `privacy:` (issue 10).
@Suite struct PrivacyPolicyDiffTests {
    func orders(_ policy: String) throws -> TablePolicy {
        let workspace = try PrivateRetail.workspace(policy: policy)
        return try #require(PolicyLoader.load(directory: workspace.policies).datasets["retail"]?.table(named: "orders"))
    }

    @Test("removing privacy, raising ε or widening bounds exposes more; the reverse exposes less")
    func privacyEdits() throws {
        let base = try orders(PrivateRetail.policy())
        let raised = try orders(PrivateRetail.policy(epsilon: "2.0", bounds: "[0, 9000]"))
        let forward = PolicyDiff.privacyChanges(base, raised, subject: "retail.orders").map(\.description)
        #expect(forward == [
            "+ exposes more: retail.orders: privacy epsilon_per_query raised from 1 to 2",
            "+ exposes more: retail.orders.amount: bounds [0.0, 5000.0] → [0.0, 9000.0]",
        ])
        #expect(PolicyDiff.privacyChanges(raised, base, subject: "retail.orders").allSatisfy { $0.direction == .narrower })
        let plain = try orders(TestWorkspace.retailPolicy)
        #expect(PolicyDiff.privacyChanges(base, plain, subject: "retail.orders").map(\.description)
                == ["+ exposes more: retail.orders: privacy removed: answers are exact again, and differencing two queries reveals one person"])
    }
}
