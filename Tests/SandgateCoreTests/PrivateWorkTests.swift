import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Issue 21 item 1: on a private table nothing observable depends on one person. The work of
/// stage 1 is bounded from the query before any row is read; a query that read rows spends its ε
/// and counts against `daily_queries` whatever its outcome; meters show the size class, never
/// the exact row count.
@Suite struct PrivateWorkTests {
    /// One customer's order times, and the same times one second later (present in no row).
    static func probeTimes(_ workspace: TestWorkspace) throws -> (present: [String], absent: [String]) {
        let connection = try Connection(path: workspace.source, mode: .readOnly)
        let rows = try connection.rows("""
            SELECT created_at, datetime(created_at, '+1 second') FROM orders
            WHERE customer_id = (SELECT customer_id FROM orders GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 1)
            """)
        let present = rows.compactMap { row -> String? in if case .text(let text) = row[0] { text } else { nil } }
        let absent = rows.compactMap { row -> String? in if case .text(let text) = row[1] { text } else { nil } }
        try #require(!present.isEmpty && present.count == absent.count)
        return (present, absent)
    }

    /// The red team's probe: a bounded but costly per-row expression, evaluated only on the rows
    /// of the chosen times.
    static func probe(times: [String], likes: Int) -> String {
        let list = times.map { "'\($0)'" }.joined(separator: ", ")
        let branches = (0..<likes).map { "WHEN ? LIKE '%a%a%a%a%a%a%a%a%b\($0)' THEN \($0)" }.joined(separator: " ")
        return "SELECT channel, count(*) AS n FROM orders WHERE created_at IN (\(list)) AND CASE \(branches) ELSE 0 END = 0 GROUP BY channel"
    }

    @Test("red team: the timeout probe is refused before reading, with the customer present and absent alike, spending nothing")
    func timeoutProbe() throws {
        let workspace = try PrivateRetail.workspace(grant: "{ max_rows: 200, daily_queries: 10 }")
        let gateway = try workspace.gateway()
        let times = try Self.probeTimes(workspace)
        let parameter = String(repeating: "a", count: 1000)
        var outcomes: [String] = []
        for list in [times.present, times.absent, times.present] {
            let likes = 300
            let response = gateway.query(Self.probe(times: list, likes: likes),
                                         parameters: .positional(Array(repeating: .text(parameter), count: likes)))
            #expect(response.error?.code == .budgetExceeded, "\(String(describing: response.error))")
            #expect(response.error?.message.contains("refused before reading any row") == true)
            #expect(response.usage.epsilonMicros == 0)
            outcomes.append("\(response.error?.code.rawValue ?? "ok") \(response.error?.message ?? "")")
        }
        #expect(Set(outcomes).count == 1, "the answer must not depend on the customer: \(outcomes)")
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        #expect(records.map(\.status) == [.refused, .refused, .refused])
        #expect(records.allSatisfy { $0.epsilonMicros == 0 && $0.vmSteps == 0 })
        // Refused before reading: it did not count against daily_queries.
        #expect(gateway.query("SELECT count(*) AS n FROM orders").error == nil)
    }

    @Test("a private query stopped after it started reading spends its ε and counts against daily_queries")
    func stoppedQuerySpends() throws {
        let workspace = try PrivateRetail.workspace(grant: "{ max_rows: 200, daily_queries: 2 }")
        let gateway = try workspace.gateway()
        let cancelled = Cancellation()
        cancelled.cancel()
        let stopped = gateway.run(QueryRequest(consumer: "analyst-a", dataset: "retail",
                                               sql: "SELECT channel, count(*) AS n FROM orders GROUP BY channel", cancellation: cancelled))
        #expect(stopped.error != nil && stopped.result == nil)
        #expect(stopped.usage.epsilonMicros == 1_000_000, "a stopped stage 1 is an outcome: its ε is spent")
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        #expect(records.map(\.status) == [.failed] && records.map(\.epsilonMicros) == [1_000_000])
        // The failed query counted: one more runs, the third is over daily_queries.
        #expect(gateway.query("SELECT count(*) AS n FROM orders").error == nil)
        #expect(gateway.query("SELECT count(*) AS n FROM orders WHERE channel <> 'x'").error?.code == .quotaExceeded)
    }

    @Test("a failed query counts against daily_queries on a table without privacy too")
    func failedCountsEverywhere() throws {
        let workspace = try TestWorkspace(policy: TestWorkspace.retailPolicy, consumers: TestWorkspace.consumers(grant: "{ max_rows: 200, daily_queries: 1 }"))
        let gateway = try workspace.gateway()
        let cancelled = Cancellation()
        cancelled.cancel()
        let stopped = gateway.run(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT city FROM customers", cancellation: cancelled))
        #expect(stopped.error != nil)
        #expect(gateway.query("SELECT city FROM customers LIMIT 1").error?.code == .quotaExceeded)
    }

    @Test("the per-row bound covers what SQLite runs: stage 1's steps per row stay under it for the shapes consumers write")
    func boundCoversSteps() throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 100, period: month }"))
        let gateway = try workspace.gateway()
        let connection = try Connection(path: workspace.source, mode: .readOnly)
        guard case .integer(let orders)? = try connection.rows("SELECT count(*) FROM orders").first?.first,
              case .integer(let customers)? = try connection.rows("SELECT count(*) FROM customers").first?.first else {
            Issue.record("no row counts")
            return
        }
        let runtime = try #require(gateway.runtime("retail"))
        for sql in [
            "SELECT count(*) AS n FROM orders",
            "SELECT channel, count(*) AS n, sum(amount) AS s, avg(amount) AS a FROM orders GROUP BY channel",
            "SELECT strftime('%Y-%m', created_at) AS month, count(*) AS n FROM orders WHERE channel IN ('web', 'store', 'app') GROUP BY month",
            "SELECT channel, count(*) AS n FROM orders WHERE channel LIKE '%e%' AND created_at BETWEEN '2024-01-01' AND '2026-12-31' GROUP BY channel",
            "SELECT c.city, count(*) AS n FROM orders o JOIN customers c ON c.customer_id = o.customer_id GROUP BY c.city",
            "SELECT count(DISTINCT customer_id) AS units, count(amount) AS n FROM orders WHERE lower(channel) = 'web' OR created_at > '2025-01-01'",
        ] {
            let prepared = runtime.prepare(sql)
            let plan = try #require(try? prepared.get().plan.privacy, "not a private plan: \(sql): \(prepared)")
            let response = gateway.query(sql)
            #expect(response.error == nil, "\(sql): \(String(describing: response.error))")
            var steps: Int64 = 0
            try gateway.ledger.records { record in
                if record.sql == sql { steps = record.vmSteps }
                return true
            }
            let rows = sql.contains("JOIN") ? orders + customers : orders
            print("stage-1 work: \(steps / rows) steps per row, bound \(plan.work.stepsPerRow): \(sql)")
            #expect(steps > 0 && steps <= rows * plan.work.stepsPerRow,
                    "\(sql): \(steps) steps for \(rows) rows, bound \(plan.work.stepsPerRow) per row")
        }
    }

    @Test("meters and refusals of a private plan show the size class, never the exact row count")
    func sizeClassOnly() throws {
        let policy = PrivateRetail.policy().replacingOccurrences(of: "max_vm_steps: 50000000", with: "max_vm_steps: 1000")
        let workspace = try PrivateRetail.workspace(policy: policy)
        let gateway = try workspace.gateway()
        guard case .integer(let orders)? = try Connection(path: workspace.source, mode: .readOnly).rows("SELECT count(*) FROM orders").first?.first else {
            Issue.record("no row count")
            return
        }
        let refused = gateway.query("SELECT count(*) AS n FROM orders")
        #expect(refused.error?.code == .budgetExceeded)
        let message = refused.error?.message ?? ""
        #expect(message.contains("up to \(StageOneWork.sizeClass(orders)) rows"), "\(message)")
        #expect(!message.contains("\(orders) "), "the exact count \(orders) must not appear: \(message)")
    }

    @Test("in stage 1 a pattern match past its step cap answers NULL; elsewhere it runs to its answer")
    func patternCap() {
        let budget = BudgetState()
        let subject = Array(repeating: UInt8(ascii: "a"), count: 4000)
        let pattern = Array("%a%a%a%b".utf8).withUnsafeBufferPointer { BoundedFunctions.likeElements($0, escape: nil) }
        let uncapped = subject.withUnsafeBufferPointer { BoundedFunctions.match(pattern, $0, caseInsensitive: true, budget: budget) }
        #expect(uncapped == .matched(false))
        budget.patternStepCap = StageOneWork.patternStepCap
        let capped = subject.withUnsafeBufferPointer { BoundedFunctions.match(pattern, $0, caseInsensitive: true, budget: budget) }
        #expect(capped == .gaveUp)
        let short = Array("xab".utf8).withUnsafeBufferPointer { BoundedFunctions.match(pattern, $0, caseInsensitive: true, budget: budget) }
        #expect(short == .matched(false))
    }

    @Test("the bound: nodes, calls and patterns per row, parameters by length, tables by size class")
    func boundArithmetic() throws {
        #expect(StageOneWork.sizeClass(0) == 1_024 && StageOneWork.sizeClass(1_025) == 2_048 && StageOneWork.sizeClass(2_048) == 2_048)
        #expect(StageOneWork.sizeClass(.max) > 0)
        let work = StageOneWork(stepsPerRow: 100, parameterCalls: 2)
        #expect(work.bound(rows: 1_000, parameterBytes: 0) == 1_024 * 100)
        #expect(work.bound(rows: 1_000, parameterBytes: 160) == 1_024 * (100 + 2 * 10))
        #expect(StageOneWork(stepsPerRow: .max / 2, parameterCalls: 0).bound(rows: .max, parameterBytes: 0) == .max)
    }
}
