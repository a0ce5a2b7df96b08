import SandgateSupport

/// The period a running total sums (docs/CONTRACT.md §7): the UTC day or the UTC calendar month
/// of a record's `started_at`, or all time.
public enum TotalsPeriod: String, Sendable, CaseIterable {
    case day, month, total
}

/// Sums over a set of records: what quotas, budgets, invoices and charts need, without a scan.
public struct UsageCounts: Sendable, Equatable {
    /// Every record (ok, refused and failed).
    public var records: Int64 = 0
    /// Records with status `ok`, and the rows they released.
    public var okQueries: Int64 = 0
    public var okRows: Int64 = 0
    /// Cost of every record (what `monthly_cost_micros` counts).
    public var costMicros: Int64 = 0
    /// Micro-ε spent.
    public var epsilonMicros: Int64 = 0
    public var refused: Int64 = 0
    public var suppressedGroups: Int64 = 0

    public init(records: Int64 = 0, okQueries: Int64 = 0, okRows: Int64 = 0, costMicros: Int64 = 0, epsilonMicros: Int64 = 0,
                refused: Int64 = 0, suppressedGroups: Int64 = 0) {
        self.records = records
        self.okQueries = okQueries
        self.okRows = okRows
        self.costMicros = costMicros
        self.epsilonMicros = epsilonMicros
        self.refused = refused
        self.suppressedGroups = suppressedGroups
    }

    /// Queries that ran, released or failed: what `daily_queries` counts (issue 21 item 1: a
    /// failure after work, a timeout in particular, is an outcome too, so it is never free).
    public var ranQueries: Int64 { records &- refused }

    /// The counts of one record.
    init(_ record: UsageRecord) {
        let ok = record.status == .ok
        self.init(records: 1, okQueries: ok ? 1 : 0, okRows: ok ? record.rows : 0, costMicros: record.costMicros,
                  epsilonMicros: record.epsilonMicros, refused: record.status == .refused ? 1 : 0,
                  suppressedGroups: record.suppressedGroups)
    }

    /// Adds `other`, saturating at `Int64.max` like the stores' `SQL` (`min(x, max − y) + y`).
    public mutating func add(_ other: UsageCounts) {
        records = records.saturatingAdding(other.records)
        okQueries = okQueries.saturatingAdding(other.okQueries)
        okRows = okRows.saturatingAdding(other.okRows)
        costMicros = costMicros.saturatingAdding(other.costMicros)
        epsilonMicros = epsilonMicros.saturatingAdding(other.epsilonMicros)
        refused = refused.saturatingAdding(other.refused)
        suppressedGroups = suppressedGroups.saturatingAdding(other.suppressedGroups)
    }

    /// The values in `RunningTotals.countColumns` order.
    package var values: [Int64] { [records, okQueries, okRows, costMicros, epsilonMicros, refused, suppressedGroups] }

    package init(values: [Int64]) {
        self.init(records: values[0], okQueries: values[1], okRows: values[2], costMicros: values[3], epsilonMicros: values[4],
                  refused: values[5], suppressedGroups: values[6])
    }
}

/// A consumer's totals on a dataset (all purposes) for the day and month containing a moment, and
/// for all time: what admission reads instead of the records (issue 24).
public struct UsageTotals: Sendable, Equatable {
    public var day = UsageCounts()
    public var month = UsageCounts()
    public var total = UsageCounts()

    public init(day: UsageCounts = UsageCounts(), month: UsageCounts = UsageCounts(), total: UsageCounts = UsageCounts()) {
        self.day = day
        self.month = month
        self.total = total
    }

    public subscript(period: TotalsPeriod) -> UsageCounts {
        get {
            switch period {
            case .day: day
            case .month: month
            case .total: total
            }
        }
        set {
            switch period {
            case .day: day = newValue
            case .month: month = newValue
            case .total: total = newValue
            }
        }
    }

    /// What counts against a quota: today's queries that ran, today's released rows, this month's
    /// cost, and the ε of the budget's period.
    public func committedUse(epsilonPeriod: TotalsPeriod) -> QuotaUse {
        QuotaUse(queries: day.ranQueries, rows: day.okRows, costMicros: month.costMicros, epsilonMicros: self[epsilonPeriod].epsilonMicros)
    }
}

/// One row of the running totals: consumer × dataset × period × start × purpose (the PostgreSQL
/// store adds the node that wrote it, so nodes never update each other's rows).
package struct TotalsKey: Hashable, Comparable, Sendable {
    package let consumer: String
    package let dataset: String
    package let period: TotalsPeriod
    /// Start of the period (µs since the epoch; 0 for `total`).
    package let start: Int64
    package let purpose: String

    package static func < (a: TotalsKey, b: TotalsKey) -> Bool {
        (a.consumer, a.dataset, a.period.rawValue, a.start, a.purpose) < (b.consumer, b.dataset, b.period.rawValue, b.start, b.purpose)
    }
}

/// The running totals both stores keep beside their records, updated in the transaction that
/// commits the records they sum (docs/CONTRACT.md §7).
package enum RunningTotals {
    /// The count columns, in `UsageCounts.values` order.
    package static let countColumns = ["records", "ok_queries", "ok_rows", "cost_micros", "epsilon_micros", "refused", "suppressed_groups"]

    /// The three rows `record` adds to.
    package static func keys(of record: UsageRecord) -> [TotalsKey] {
        [
            TotalsKey(consumer: record.consumer, dataset: record.dataset, period: .day,
                      start: Timestamp.startOfDay(containing: record.startedAt), purpose: record.purpose),
            TotalsKey(consumer: record.consumer, dataset: record.dataset, period: .month,
                      start: Timestamp.startOfMonth(containing: record.startedAt), purpose: record.purpose),
            TotalsKey(consumer: record.consumer, dataset: record.dataset, period: .total, start: 0, purpose: record.purpose),
        ]
    }

    /// What `records` add to each row, in key order (so concurrent writers lock rows in one order).
    package static func deltas(_ records: some Sequence<UsageRecord>) -> [(key: TotalsKey, counts: UsageCounts)] {
        var sums: [TotalsKey: UsageCounts] = [:]
        for record in records {
            let counts = UsageCounts(record)
            for key in keys(of: record) { sums[key, default: UsageCounts()].add(counts) }
        }
        return sums.sorted { $0.key < $1.key }.map { (key: $0.key, counts: $0.value) }
    }

    /// `column = min(column, max − excluded.column) + excluded.column` for each count: an upsert
    /// that saturates instead of overflowing (SQLite would turn the sum into a REAL, PostgreSQL fail).
    package static func saturatingUpdate(table: String, least: String) -> String {
        countColumns.map { "\($0) = \(least)(\(table).\($0), 9223372036854775807 - excluded.\($0)) + excluded.\($0)" }
            .joined(separator: ", ")
    }

    /// A difference between the stored totals and the ones recomputed from the records, as
    /// `usage verify` reports it.
    package static func mismatch(consumer: String, dataset: String, period: String, start: Int64, purpose: String, node: String? = nil) -> LedgerProblem {
        let when = period == TotalsPeriod.total.rawValue ? "all time" : "\(period) \(Timestamp.rfc3339(start).prefix(10))"
        let purposeText = purpose.isEmpty ? "no purpose" : "purpose \(purpose)"
        let nodeText = node.map { "node \($0): " } ?? ""
        return LedgerProblem(seq: nil, reason: "\(nodeText)the running totals of \(consumer) on \(dataset) (\(when), \(purposeText)) differ from its records")
    }
}
