
/// The policy of one dataset, loaded from `Policies/<dataset>.yaml`. Immutable once loaded.
public struct DatasetPolicy: Sendable {
    /// The dataset name: the file name without `.yaml`.
    public let name: String
    public let description: String
    public let owner: String
    /// Absolute path of the data holder's SQLite file.
    public let sourcePath: String
    /// `source:` as written (relative to the policy file), for `policy diff`.
    public let source: String
    public let limits: DatasetLimits
    public let pricing: Pricing
    /// Visible tables in file order; a table not listed is invisible.
    public let tables: [TablePolicy]
    /// Hex SHA-256 of the policy file's bytes: the policy version in usage records.
    public let version: String
    /// The policy file, for diagnostics.
    public let file: String
    /// Where `source:` is written, so data-level problems can point at it.
    public let sourceLocation: SourceLocation
    /// Risky but valid choices found while loading (printed by `policy check`).
    public let warnings: [PolicyDiagnostic]
    /// The file ends with the closing `...` line (`PolicyLoader.isSealed`).
    public let sealed: Bool
    /// The purposes the holder allows this dataset to be used for, in file order. Empty: the
    /// holder lists none, so a purpose is optional (recorded when a query gives one).
    public let purposes: [PurposeDeclaration]
    /// Whether `join_key` tokens and `hash` masks are keyed per consumer (traceable) or shared.
    public let tokens: TokenScope

    public init(
        name: String, description: String, owner: String, sourcePath: String, limits: DatasetLimits,
        pricing: Pricing, tables: [TablePolicy], version: String, file: String, sourceLocation: SourceLocation,
        warnings: [PolicyDiagnostic] = [], sealed: Bool = false, source: String = "",
        purposes: [PurposeDeclaration] = [], tokens: TokenScope = .shared
    ) {
        self.purposes = purposes
        self.tokens = tokens
        self.source = source
        self.warnings = warnings
        self.sealed = sealed
        self.name = name
        self.description = description
        self.owner = owner
        self.sourcePath = sourcePath
        self.limits = limits
        self.pricing = pricing
        self.tables = tables
        self.version = version
        self.file = file
        self.sourceLocation = sourceLocation
    }

    /// The declared purpose named `name` (compared as bytes, like every other name).
    public func purpose(named name: String) -> PurposeDeclaration? {
        purposes.first { Array($0.name.utf8) == Array(name.utf8) }
    }

    /// The table named `name` (ASCII case-insensitive, as SQLite compares names).
    public func table(named name: String) -> TablePolicy? {
        tables.first { $0.name.lowercased() == name.lowercased() }
    }
}

/// One purpose a dataset may be used for (`purposes:` in its policy).
public struct PurposeDeclaration: Sendable, Hashable {
    /// A `Name` (`[a-z0-9][a-z0-9_.-]{0,63}`): it is recorded in the ledger and printed in CSV.
    public let name: String
    /// One line a consumer reads in `describe`.
    public let description: String
    public let location: SourceLocation

    public init(name: String, description: String, location: SourceLocation) {
        self.name = name
        self.description = description
        self.location = location
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.name == rhs.name && lhs.description == rhs.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

/// Who shares a dataset's `join_key` tokens and `hash` values.
public enum TokenScope: String, Sendable {
    /// One key per dataset: every consumer receives the same token for a value.
    case shared
    /// One key per consumer and dataset (derived from the dataset's secret): a consumer's tokens
    /// are stable for it and different from every other consumer's, so a leaked file names its
    /// receiver (`sandgate trace`) and two consumers cannot link their results.
    case perConsumer = "per_consumer"
}

/// Per-query budgets of a dataset; a grant may lower them, never raise them.
public struct DatasetLimits: Sendable, Hashable {
    /// Rows one query may return; more are cut and the result says `truncated: true`.
    public var maxRows: Int
    /// Wall-clock budget of one query.
    public var timeoutMilliseconds: Int
    /// SQLite virtual-machine instructions one query may execute.
    public var maxVMSteps: Int64
    /// Bytes of result values one query may return.
    public var maxResultBytes: Int

    public static let defaults = DatasetLimits(
        maxRows: 1000, timeoutMilliseconds: 2000, maxVMSteps: 200_000_000, maxResultBytes: 8 * 1024 * 1024
    )

    /// The allowed range of each limit; values outside are policy errors.
    public static let maxRowsRange = 1...10_000_000
    public static let timeoutRange = 1...600_000
    public static let vmStepsRange: ClosedRange<Int64> = 1_000...1_000_000_000_000
    public static let resultBytesRange = 1024...(1 << 30)

    public init(maxRows: Int, timeoutMilliseconds: Int, maxVMSteps: Int64, maxResultBytes: Int) {
        self.maxRows = maxRows
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxVMSteps = maxVMSteps
        self.maxResultBytes = maxResultBytes
    }

    /// These limits lowered by a grant's (a grant can only lower).
    public func lowered(by grant: Grant) -> DatasetLimits {
        lowered(maxRows: grant.maxRows, timeout: grant.timeoutMilliseconds, steps: grant.maxVMSteps, bytes: grant.maxResultBytes)
    }

    /// These limits lowered by a purpose's limits inside a grant (they can only lower too).
    public func lowered(by purpose: PurposeLimits) -> DatasetLimits {
        lowered(maxRows: purpose.maxRows, timeout: purpose.timeoutMilliseconds, steps: purpose.maxVMSteps, bytes: purpose.maxResultBytes)
    }

    private func lowered(maxRows: Int?, timeout: Int?, steps: Int64?, bytes: Int?) -> DatasetLimits {
        var result = self
        if let maxRows { result.maxRows = min(result.maxRows, maxRows) }
        if let timeout { result.timeoutMilliseconds = min(result.timeoutMilliseconds, timeout) }
        if let steps { result.maxVMSteps = min(result.maxVMSteps, steps) }
        if let bytes { result.maxResultBytes = min(result.maxResultBytes, bytes) }
        return result
    }
}

/// Prices in integer micro-units of `currency` (1 CNY = 1,000,000).
public struct Pricing: Sendable, Hashable {
    public let currency: String
    public let perQuery: Int64
    public let perRow: Int64
    public let perMillionVMSteps: Int64
    /// Per MiB of result bytes (`bytes` meter), charged pro rata and rounded up to a whole
    /// micro-unit: a few wide rows cost what they carry.
    public let perMiB: Int64
    /// The holder's share of every charge in parts per million (`holder_share: 0.80` → 800,000);
    /// the rest is the platform's fee. Fixed-point so settlement never sees a binary fraction.
    public let holderSharePPM: Int64

    /// 1,000,000 parts per million: the whole.
    public static let wholePPM: Int64 = 1_000_000

    public static let free = Pricing(currency: "CNY", perQuery: 0, perRow: 0, perMillionVMSteps: 0)

    public init(currency: String, perQuery: Int64, perRow: Int64, perMillionVMSteps: Int64, perMiB: Int64 = 0,
                holderSharePPM: Int64 = Pricing.wholePPM) {
        self.holderSharePPM = holderSharePPM
        self.currency = currency
        self.perQuery = perQuery
        self.perRow = perRow
        self.perMillionVMSteps = perMillionVMSteps
        self.perMiB = perMiB
    }

    /// The price of a query that returned `rows` rows and `bytes` bytes after `vmSteps`
    /// instructions, saturating instead of overflowing. Steps are charged per started million,
    /// bytes pro rata (rounded up).
    public func cost(rows: Int, vmSteps: Int64, bytes: Int = 0) -> Int64 {
        let millions = vmSteps / 1_000_000 + (vmSteps % 1_000_000 == 0 ? 0 : 1)
        let byteProduct = perMiB.multipliedReportingOverflow(by: Int64(max(0, bytes)))
        guard !byteProduct.overflow else { return .max }
        let bytePart = byteProduct.partialValue / (1 << 20) + (byteProduct.partialValue % (1 << 20) == 0 ? 0 : 1)
        var total: Int64 = perQuery
        for part in [perRow.multipliedReportingOverflow(by: Int64(rows)), perMillionVMSteps.multipliedReportingOverflow(by: millions), (partialValue: bytePart, overflow: false)] {
            guard !part.overflow else { return .max }
            let sum = total.addingReportingOverflow(part.partialValue)
            guard !sum.overflow else { return .max }
            total = sum.partialValue
        }
        return total
    }
}

/// How consumers may read a table.
public enum TableAccess: String, Sendable {
    /// Row-level results, masked.
    case rows
    /// Only aggregates over groups of at least `min_group_size` distinct units.
    case aggregate
}

/// What happens to groups below the threshold on an aggregate table.
public enum SmallGroups: String, Sendable {
    case drop
    case remainder
}

/// One visible table of a dataset.
public struct TablePolicy: Sendable {
    public let name: String
    public let access: TableAccess
    /// A trusted SQL expression over the source table's columns; rows where it is not true are invisible.
    public let rowFilter: String?
    public let rowFilterLocation: SourceLocation?
    /// Listed columns in file order, including `hidden` ones (which the consumer never sees).
    public let columns: [ColumnPolicy]
    public let privacyUnit: String?
    public let minGroupSize: Int?
    public let smallGroups: SmallGroups
    public let location: SourceLocation
    /// The `privacy:` block: when set, every release from this table is differentially private.
    public let privacy: PrivacyPolicy?

    public init(
        name: String, access: TableAccess, rowFilter: String?, rowFilterLocation: SourceLocation?,
        columns: [ColumnPolicy], privacyUnit: String?, minGroupSize: Int?, smallGroups: SmallGroups,
        location: SourceLocation, privacy: PrivacyPolicy? = nil
    ) {
        self.privacy = privacy
        self.name = name
        self.access = access
        self.rowFilter = rowFilter
        self.rowFilterLocation = rowFilterLocation
        self.columns = columns
        self.privacyUnit = privacyUnit
        self.minGroupSize = minGroupSize
        self.smallGroups = smallGroups
        self.location = location
    }

    /// Columns the consumer can see (every role but `hidden`).
    public var visibleColumns: [ColumnPolicy] { columns.filter { $0.role != .hidden } }

    public func column(named name: String) -> ColumnPolicy? {
        columns.first { $0.name.lowercased() == name.lowercased() }
    }
}

/// The role of a column (DESIGN.md §3).
public enum ColumnRole: String, Sendable {
    case visible
    case dimension
    case measure
    case joinKey = "join_key"
    case hidden
}

/// One listed column of a table.
public struct ColumnPolicy: Sendable {
    public let name: String
    public let role: ColumnRole
    /// The mask applied wherever the column is read; nil for unmasked columns and join keys.
    public let mask: Mask?
    /// For measures of aggregate tables: the aggregates allowed on it.
    public let aggregates: [String]
    public let location: SourceLocation
    /// `bounds: [lo, hi]` of a measure (required for sum/avg/total on private tables).
    public let bounds: MeasureBounds?

    public init(name: String, role: ColumnRole, mask: Mask?, aggregates: [String], location: SourceLocation, bounds: MeasureBounds? = nil) {
        self.bounds = bounds
        self.name = name
        self.role = role
        self.mask = mask
        self.aggregates = aggregates
        self.location = location
    }
}

/// The operator's list of consumers, from `Policies/consumers.yaml`.
public struct ConsumerDirectory: Sendable {
    public let consumers: [String: Consumer]
    public let version: String

    public init(consumers: [String: Consumer], version: String) {
        self.consumers = consumers
        self.version = version
    }

    public static let empty = ConsumerDirectory(consumers: [:], version: "")
}

/// A consumer: the hash of its key, its grants by dataset name and its role.
public struct Consumer: Sendable {
    /// The name as declared in `consumers.yaml` (a valid `Name`): after authentication every
    /// component uses this, never the bytes a client sent.
    public let name: String
    /// Lower-case hex SHA-256 of the API key; the key itself is never stored.
    public let keySHA256: String
    /// The SCRAM-SHA-256 verifier of the same key, for PostgreSQL-protocol logins (optional:
    /// without it the consumer can use the JSON-lines protocol only).
    public let scram: SCRAMVerifier?
    public let grants: [String: Grant]
    public let role: ConsumerRole

    public init(name: String, keySHA256: String, scram: SCRAMVerifier? = nil, grants: [String: Grant], role: ConsumerRole = .consumer) {
        self.name = name
        self.keySHA256 = keySHA256
        self.scram = scram
        self.grants = grants
        self.role = role
    }
}

/// What a consumer may see of the server beyond its own queries.
public enum ConsumerRole: String, Sendable {
    /// Its own figures only (the default).
    case consumer
    /// Also server-wide figures (the `stats` op).
    case `operator`
}

/// What one consumer may do with one dataset.
public struct Grant: Sendable, Hashable {
    public let maxRows: Int?
    public let timeoutMilliseconds: Int?
    public let maxVMSteps: Int64?
    public let maxResultBytes: Int?
    /// Queries per UTC day; nil means unlimited.
    public let dailyQueries: Int?
    /// Rows returned per UTC day; nil means unlimited.
    public let dailyRows: Int?
    /// Cost (µ-units of the dataset's currency) per UTC calendar month; nil means unlimited.
    public let monthlyCostMicros: Int64?
    /// The purposes this consumer may use the dataset for, each with limits that may lower the
    /// grant's; nil when the grant lists none (see `PurposeRule`).
    public let purposes: [String: PurposeLimits]?
    /// `epsilon_budget`: lowers the private tables' `budget.epsilon` for this consumer (micro-ε).
    public let epsilonBudgetMicros: Int64?

    public init(
        maxRows: Int? = nil, timeoutMilliseconds: Int? = nil, maxVMSteps: Int64? = nil,
        maxResultBytes: Int? = nil, dailyQueries: Int? = nil, dailyRows: Int? = nil, monthlyCostMicros: Int64? = nil,
        purposes: [String: PurposeLimits]? = nil, epsilonBudgetMicros: Int64? = nil
    ) {
        self.purposes = purposes
        self.epsilonBudgetMicros = epsilonBudgetMicros
        self.monthlyCostMicros = monthlyCostMicros
        self.maxRows = maxRows
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxVMSteps = maxVMSteps
        self.maxResultBytes = maxResultBytes
        self.dailyQueries = dailyQueries
        self.dailyRows = dailyRows
    }
}


/// Per-query limits of one purpose inside a grant (`purposes: { credit_risk: { max_rows: 50 } }`):
/// they lower the grant's and the dataset's, never raise them.
public struct PurposeLimits: Sendable, Hashable {
    public let maxRows: Int?
    public let timeoutMilliseconds: Int?
    public let maxVMSteps: Int64?
    public let maxResultBytes: Int?

    public static let none = PurposeLimits()

    public init(maxRows: Int? = nil, timeoutMilliseconds: Int? = nil, maxVMSteps: Int64? = nil, maxResultBytes: Int? = nil) {
        self.maxRows = maxRows
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxVMSteps = maxVMSteps
        self.maxResultBytes = maxResultBytes
    }
}
