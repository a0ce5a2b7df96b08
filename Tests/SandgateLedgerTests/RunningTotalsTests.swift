import Foundation
import SandgateLedger
import SandgateLedgerPostgres
import SandgateTestSupport
import Testing
import SandgateSupport

/// Issue 24 item 1: quotas, cost and ε decided from running totals kept in the commit of the
/// records they sum, in both stores, recomputed by `verify`, kept by archives and built once for
/// a ledger that has none.
@Suite struct RunningTotalsTests {
    static let now: Int64 = 1_795_000_000_000_000   // 2026-11-18
    static let day = Timestamp.startOfDay(containing: now)
    static let month = Timestamp.startOfMonth(containing: now)
    static let hour: Int64 = 3_600_000_000
    static let nextMonth = Timestamp.startOfMonth(containing: month + 40 * 24 * hour)

    /// Records of analyst-a on retail over yesterday, today (two purposes, three statuses) and the
    /// next month, and one of another consumer.
    static func records() -> [UsageRecord] {
        func record(_ index: Int, at time: Int64, status: UsageStatus = .ok, purpose: String = "", rows: Int64, cost: Int64,
                    epsilon: Int64 = 0, suppressed: Int64 = 0, consumer: String = "analyst-a") -> UsageRecord {
            var record = sampleRecord(index, consumer: consumer, startedAt: time - Int64(index))
            record.status = status
            record.purpose = purpose
            record.rows = rows
            record.costMicros = cost
            record.epsilonMicros = epsilon
            record.suppressedGroups = suppressed
            return record
        }
        return [
            record(1, at: day - 2 * hour, rows: 10, cost: 100, epsilon: 50),                        // yesterday
            record(2, at: day + hour, rows: 3, cost: 30),                                           // today
            record(3, at: day + 2 * hour, purpose: "credit_risk", rows: 4, cost: 40, epsilon: 200, suppressed: 2),
            record(4, at: day + 3 * hour, status: .refused, rows: 0, cost: 0),
            record(5, at: day + 4 * hour, status: .failed, rows: 7, cost: 5),                       // failed: cost, no rows
            record(6, at: nextMonth + hour, rows: 1, cost: 1000, epsilon: 1),                       // next month
            record(7, at: day + hour, rows: 99, cost: 99, consumer: "other"),
        ]
    }

    @Test("each record adds to its day, its month and all time; reads sum the purposes", arguments: StoreKind.allCases)
    func sums(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        for record in Self.records() { _ = try subject.store.append(record) }
        let today = try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.now)
        #expect(today.day == UsageCounts(records: 4, okQueries: 2, okRows: 7, costMicros: 75, epsilonMicros: 200, refused: 1, suppressedGroups: 2))
        #expect(today.month == UsageCounts(records: 5, okQueries: 3, okRows: 17, costMicros: 175, epsilonMicros: 250, refused: 1, suppressedGroups: 2))
        #expect(today.total == UsageCounts(records: 6, okQueries: 4, okRows: 18, costMicros: 1175, epsilonMicros: 251, refused: 1, suppressedGroups: 2))
        let later = try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.nextMonth + 2 * Self.hour)
        #expect(later.day == later.month)
        #expect(later.month == UsageCounts(records: 1, okQueries: 1, okRows: 1, costMicros: 1000, epsilonMicros: 1))
        #expect(try subject.store.totals(consumer: "nobody", dataset: "retail", at: Self.now) == UsageTotals())
        #expect(try subject.store.verify() == nil)
    }

    @Test("a busy month: daily quotas count today only, the cost quota and a monthly ε budget the whole month", arguments: StoreKind.allCases)
    func busyMonth(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        for record in Self.records() { _ = try subject.store.append(record) }
        func decide(_ limits: QuotaLimits, epsilon: Int64 = 0) throws -> QuotaDecision {
            let decision = try subject.store.reserve(QuotaRequest(consumer: "analyst-a", dataset: "retail", day: Self.day, month: Self.month,
                                                                  rowLimit: 100, limits: limits, epsilonMicros: epsilon))
            if case .granted(let hold, _) = decision { subject.store.release(hold) }
            return decision
        }
        // Today: 2 ok and 1 failed query count (issue 21: a failure after work is not free), the
        // refused one does not.
        #expect(try decide(QuotaLimits(dailyQueries: 3)) == .exceeded(quota: "daily_queries", limit: 3))
        #expect(try decide(QuotaLimits(dailyQueries: 4)) != .exceeded(quota: "daily_queries", limit: 4))
        guard case .granted(_, let rowLimit) = try decide(QuotaLimits(dailyRows: 10)) else {
            Issue.record("3 rows are left of 10 today (\(kind))")
            return
        }
        #expect(rowLimit == 3)
        #expect(try decide(QuotaLimits(monthlyCostMicros: 175)) == .exceeded(quota: "monthly_cost_micros", limit: 175))
        #expect(try decide(QuotaLimits(monthlyCostMicros: 176)) != .exceeded(quota: "monthly_cost_micros", limit: 176))
        #expect(try decide(QuotaLimits(epsilonMicros: 300, epsilonPeriod: .month), epsilon: 51) == .budgetExhausted(remainingMicros: 50, budgetMicros: 300))
        #expect(try decide(QuotaLimits(epsilonMicros: 300, epsilonPeriod: .day), epsilon: 100) != .budgetExhausted(remainingMicros: 100, budgetMicros: 300))
        #expect(try decide(QuotaLimits(epsilonMicros: 300, epsilonPeriod: .total), epsilon: 50) == .budgetExhausted(remainingMicros: 49, budgetMicros: 300))
    }

    @Test("admission reads the totals, not the records: records deleted behind the ledger's back still count", arguments: StoreKind.allCases)
    func admissionReadsTotals(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        for record in Self.records() { _ = try subject.store.append(record) }
        subject.store.sync()
        try subject.execute("DELETE FROM usage WHERE consumer = 'analyst-a'")
        let decision = try subject.store.reserve(QuotaRequest(consumer: "analyst-a", dataset: "retail", day: Self.day, month: Self.month,
                                                              rowLimit: 10, limits: QuotaLimits(dailyQueries: 2)))
        #expect(decision == .exceeded(quota: "daily_queries", limit: 2))
        #expect(try subject.store.verify() != nil)
    }

    @Test("verify recomputes the totals: an edited, a deleted and a forged row are each reported", arguments: StoreKind.allCases)
    func tamperedTotals(kind: StoreKind) throws {
        let tampering = [
            "UPDATE usage_totals SET ok_queries = ok_queries - 1 WHERE consumer = 'analyst-a' AND period = 'day'",
            "DELETE FROM usage_totals WHERE consumer = 'other' AND period = 'month'",
            kind == .sqlite
                ? "INSERT INTO usage_totals VALUES ('ghost', 'retail', 'total', 0, '', 1, 1, 1, 1, 1, 0, 0)"
                : "INSERT INTO usage_totals VALUES ('node-a', 'ghost', 'retail', 'total', 0, '', 1, 1, 1, 1, 1, 0, 0)",
        ]
        for (index, sql) in tampering.enumerated() {
            let subject = try StoreUnderTest.make(kind)
            for record in Self.records() { _ = try subject.store.append(record) }
            subject.store.sync()
            #expect(try subject.store.verify() == nil)
            try subject.execute(sql)
            let problem = try #require(try subject.store.verify(), "tampering \(index) must be found (\(kind))")
            let who = ["analyst-a", "other", "ghost"][index]
            #expect(problem.reason.contains("running totals of \(who) on retail"), "\(problem.reason)")
        }
    }

    @Test("a ledger without totals (an older sandgate's) gets them built from its records, once", arguments: StoreKind.allCases)
    func builtOnOpen(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        for record in Self.records() { _ = try subject.store.append(record) }
        let expected = try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.now)
        subject.store.sync()
        try subject.execute("DELETE FROM usage_totals")
        try subject.execute("DELETE FROM ledger_meta")
        let reports = ProgressLog()
        let reopened: any LedgerStore = switch kind {
        case .sqlite: try Ledger(path: subject.path, progress: reports.report)
        case .postgres: try PostgresLedgerStore(url: try #require(subject.url), nodeID: "node-b", keyPath: subject.keyPath, progress: reports.report)
        }
        #expect(try reopened.totals(consumer: "analyst-a", dataset: "retail", at: Self.now) == expected)
        #expect(try reopened.verify() == nil)
        #expect(reports.last.map { [$0.0, $0.1] } == [7, 7])
        // Built once: a later open with the totals in place reports nothing.
        let again = ProgressLog()
        _ = switch kind {
        case .sqlite: try Ledger(path: subject.path, progress: again.report) as any LedgerStore
        case .postgres: try PostgresLedgerStore(url: try #require(subject.url), nodeID: "node-c", keyPath: subject.keyPath, progress: again.report)
        }
        #expect(again.last.map { [$0.0, $0.1] } == nil)
    }

    @Test("archiving keeps the totals, and the ledger still verifies", arguments: StoreKind.allCases)
    func archiveKeepsTotals(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        for record in Self.records() { _ = try subject.store.append(record) }
        let before = try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.now)
        let archive = try temporaryLedgerDirectory() + "-archive.sqlite"
        let moved: Int64 = switch subject.store {
        case let ledger as Ledger: try ledger.archive(before: Self.day + Self.hour + Self.hour / 2, to: archive)
        case let store as PostgresLedgerStore: try store.archive(before: Self.day + Self.hour + Self.hour / 2, to: archive)
        default: 0
        }
        #expect(moved == 2)
        #expect(try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.now) == before)
        #expect(try subject.store.verify() == nil)
        _ = try subject.store.append(sampleRecord(8, startedAt: Self.now))
        #expect(try subject.store.totals(consumer: "analyst-a", dataset: "retail", at: Self.now).day.okQueries == before.day.okQueries + 1)
        #expect(try subject.store.verify() == nil)
    }
}

/// Collects a store's progress reports.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var reports: [(Int64, Int64)] = []

    var last: (Int64, Int64)? { lock.withLock { reports.last } }

    var report: LedgerProgress {
        { [self] done, total in lock.withLock { reports.append((done, total)) } }
    }
}
