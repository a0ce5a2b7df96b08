/// What a consumer may still use of a dataset: the grant's quotas (nil: no such quota).
public struct QuotaLimits: Sendable, Equatable {
    public var dailyQueries: Int64?
    public var dailyRows: Int64?
    /// Cost of every record (ok and failed) in the calendar month, UTC.
    public var monthlyCostMicros: Int64?
    /// Privacy budget (micro-ε) of the consumer on the dataset for `epsilonPeriod` (issue 10).
    public var epsilonMicros: Int64?
    /// The budget's period: the request's day, its month, or all time (a budget that never refreshes).
    public var epsilonPeriod: TotalsPeriod

    public init(dailyQueries: Int64? = nil, dailyRows: Int64? = nil, monthlyCostMicros: Int64? = nil,
                epsilonMicros: Int64? = nil, epsilonPeriod: TotalsPeriod = .total) {
        self.dailyQueries = dailyQueries
        self.dailyRows = dailyRows
        self.monthlyCostMicros = monthlyCostMicros
        self.epsilonMicros = epsilonMicros
        self.epsilonPeriod = epsilonPeriod
    }

    public var isEmpty: Bool { dailyQueries == nil && dailyRows == nil && monthlyCostMicros == nil && epsilonMicros == nil }
}

/// One request's demand on a quota, made before it runs.
public struct QuotaRequest: Sendable, Equatable {
    public var consumer: String
    public var dataset: String
    /// Start of the UTC day and of the UTC month of the request (µs since the epoch).
    public var day: Int64
    public var month: Int64
    /// Rows the query may return at most before the row quota is applied.
    public var rowLimit: Int64
    public var limits: QuotaLimits
    /// Privacy budget the query spends if it runs (micro-ε; 0 for queries without noise).
    public var epsilonMicros: Int64
    /// The most the query can cost (its price at its row, step and byte limits): held against
    /// `monthly_cost_micros` while it runs, so concurrent queries cannot all start below the
    /// limit and together pass it (red team: 8 concurrent queries spent 8.7 × the quota).
    public var costMicros: Int64

    public init(consumer: String, dataset: String, day: Int64, month: Int64, rowLimit: Int64, limits: QuotaLimits, epsilonMicros: Int64 = 0,
                costMicros: Int64 = 0) {
        self.epsilonMicros = epsilonMicros
        self.costMicros = costMicros
        self.consumer = consumer
        self.dataset = dataset
        self.day = day
        self.month = month
        self.rowLimit = rowLimit
        self.limits = limits
    }
}

/// What counts against a quota: committed `ok` queries and rows today, the cost of every record
/// this month, plus what requests in flight hold.
public struct QuotaUse: Sendable, Equatable {
    public var queries: Int64 = 0
    public var rows: Int64 = 0
    public var costMicros: Int64 = 0
    /// Micro-ε spent since the budget's period began, plus micro-ε held.
    public var epsilonMicros: Int64 = 0

    public init(queries: Int64 = 0, rows: Int64 = 0, costMicros: Int64 = 0, epsilonMicros: Int64 = 0) {
        self.epsilonMicros = epsilonMicros
        self.queries = queries
        self.rows = rows
        self.costMicros = costMicros
    }
}

/// A request's hold on a quota until its record is committed: one query and `rows` rows. The
/// store that granted it turns it into a charge when it appends the record, or drops it on
/// `release`.
public struct QuotaHold: Sendable, Equatable {
    /// Unique per hold (the PostgreSQL store's reservation row).
    public let id: String
    public let consumer: String
    public let dataset: String
    public let day: Int64
    public let rows: Int64
    /// Micro-ε reserved: spent when the record is appended with it, refunded by `release`.
    public let epsilonMicros: Int64
    /// The query's most possible cost, held against `monthly_cost_micros` until its record counts.
    public let costMicros: Int64

    public init(id: String, consumer: String, dataset: String, day: Int64, rows: Int64, epsilonMicros: Int64 = 0, costMicros: Int64 = 0) {
        self.epsilonMicros = epsilonMicros
        self.costMicros = costMicros
        self.id = id
        self.consumer = consumer
        self.dataset = dataset
        self.day = day
        self.rows = rows
    }
}

/// The answer to a `QuotaRequest`.
public enum QuotaDecision: Sendable, Equatable {
    /// Run, returning at most `rowLimit` rows (less than asked when the row quota is nearly used).
    case granted(QuotaHold, rowLimit: Int64)
    /// Refused: this quota (`daily_queries`, `daily_rows` or `monthly_cost_micros`) is used up.
    case exceeded(quota: String, limit: Int64)
    /// Refused: the query's ε does not fit in what is left of the privacy budget.
    case budgetExhausted(remainingMicros: Int64, budgetMicros: Int64)
}

extension QuotaRequest {
    /// The decision for this request given what is used and held: the one rule both stores apply
    /// under their lock. A query is admitted while fewer than `daily_queries` are used or held,
    /// rows are left, and this month's committed cost plus the most that the queries in flight
    /// can cost is below `monthly_cost_micros` (the query admitted below it still completes: its
    /// cost is known only afterwards; so at most one query's cost passes the limit, as when
    /// queries come one after another).
    public func decide(used: QuotaUse, holdID: String) -> QuotaDecision {
        if let daily = limits.dailyQueries, used.queries >= daily {
            return .exceeded(quota: "daily_queries", limit: daily)
        }
        if let monthly = limits.monthlyCostMicros, used.costMicros >= monthly {
            return .exceeded(quota: "monthly_cost_micros", limit: monthly)
        }
        // ε is reserved in full before the query runs: spent plus held plus this query's ε
        // never passes the budget, across concurrent requests and nodes.
        if epsilonMicros > 0, let budget = limits.epsilonMicros, used.epsilonMicros > budget - epsilonMicros {
            return .budgetExhausted(remainingMicros: max(0, budget - used.epsilonMicros), budgetMicros: budget)
        }
        var rowLimit = self.rowLimit
        if let daily = limits.dailyRows {
            let left = daily - used.rows
            guard left > 0 else { return .exceeded(quota: "daily_rows", limit: daily) }
            rowLimit = min(rowLimit, left)
        }
        let hold = QuotaHold(id: holdID, consumer: consumer, dataset: dataset, day: day, rows: limits.dailyRows == nil ? 0 : rowLimit,
                             epsilonMicros: limits.epsilonMicros == nil ? 0 : epsilonMicros,
                             costMicros: limits.monthlyCostMicros == nil ? 0 : costMicros)
        return .granted(hold, rowLimit: rowLimit)
    }
}

extension Int64 {
    /// `self + other`, or `.max` when that overflows: sums of charges, holds and ε saturate
    /// instead of trapping (their parts are never negative).
    func saturatingAdding(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
