/// The `privacy:` block of an aggregate table: every release from such a table is
/// differentially private (issue 10; docs/CONTRACT.md §3, "Differential privacy").
///
/// ε values are kept as integer micro-ε (ε × 1,000,000) so that budgets add up exactly in the
/// ledger across nodes; δ is a probability and stays a `Double` (it only calibrates thresholds,
/// which are computed from public parameters, never from data).
public struct PrivacyPolicy: Sendable, Hashable {
    /// ε one query spends, in micro-ε.
    public let epsilonPerQueryMicros: Int64
    /// δ of one query: the probability that group selection releases a key held by one unit.
    public let delta: Double
    /// ε one consumer may spend on the dataset per `period`, in micro-ε.
    public let budgetMicros: Int64
    public let period: BudgetPeriod
    /// A unit contributes to at most this many groups of one query.
    public let maxGroupsPerUnit: Int
    /// … and at most this many rows to one group.
    public let maxRowsPerUnit: Int
    public let location: SourceLocation

    public init(
        epsilonPerQueryMicros: Int64, delta: Double, budgetMicros: Int64, period: BudgetPeriod,
        maxGroupsPerUnit: Int, maxRowsPerUnit: Int, location: SourceLocation
    ) {
        self.epsilonPerQueryMicros = epsilonPerQueryMicros
        self.delta = delta
        self.budgetMicros = budgetMicros
        self.period = period
        self.maxGroupsPerUnit = maxGroupsPerUnit
        self.maxRowsPerUnit = maxRowsPerUnit
        self.location = location
    }

    /// Micro-ε per ε.
    public static let microsPerEpsilon: Int64 = 1_000_000
    /// Largest ε one query may spend (a larger one gives no meaningful protection).
    public static let maxEpsilonPerQuery = 10.0
    /// Largest budget per period.
    public static let maxBudget = 1_000.0
    public static let maxGroupsRange = 1...1_000
    public static let maxRowsRange = 1...100_000
    /// Largest sensitivity of one aggregate, in grid units (keeps noise parameters in 64 bits).
    public static let maxSensitivityUnits: Double = 1e12
}

/// How often a consumer's ε budget refreshes.
public enum BudgetPeriod: String, Sendable, Hashable {
    /// Every UTC day at 00:00.
    case day
    /// On the 1st of every month, 00:00 UTC.
    case month
    /// Never: the budget is spent once for all.
    case total
}

/// `bounds: [lo, hi]` of a measure: values are clamped to it before they are summed, and its
/// width sets the noise of sums and averages.
public struct MeasureBounds: Sendable, Hashable {
    public let lower: Double
    public let upper: Double
    /// Decimal places written in the bounds (at most 6): sums are rounded to 10⁻ᵈ before noise
    /// is added on that integer grid.
    public let decimals: Int

    public init(lower: Double, upper: Double, decimals: Int) {
        self.lower = lower
        self.upper = upper
        self.decimals = decimals
    }

    /// Largest absolute value a clamped row can carry.
    public var magnitude: Double { max(abs(lower), abs(upper)) }
}
