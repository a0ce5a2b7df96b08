import SandgateSQLite
import Synchronization

/// Values bound to a query's parameters: positional for `?`/`?NNN`, named for `:name`, `@name`, `$name`.
public enum QueryParameters: Sendable, Equatable {
    case none
    case positional([SQLValue])
    /// Keys without their prefix character.
    case named([String: SQLValue])

    var values: [SQLValue] {
        switch self {
        case .none: []
        case .positional(let list): list
        case .named(let map): Array(map.values)
        }
    }

    /// Bytes of the longest text or blob parameter.
    var longestBytes: Int {
        values.reduce(0) { longest, value in
            switch value {
            case .text(let text): max(longest, text.utf8.count)
            case .blob(let bytes): max(longest, bytes.count)
            default: longest
            }
        }
    }
}

/// One request to the gateway, from any front end.
public struct QueryRequest: Sendable {
    public var consumer: String
    public var dataset: String
    public var sql: String
    public var parameters: QueryParameters
    /// Set by the front end to stop the query while it runs (PostgreSQL's CancelRequest).
    public var cancellation: Cancellation?
    /// The client's address as the front end saw it (recorded in `client_address`); empty for
    /// the local CLI.
    public var clientAddress: String
    /// What the consumer declares the query is for (`purpose` on JSON lines, `--purpose`,
    /// `sandgate.purpose` over PostgreSQL); nil when none was declared. Decided by `PurposeRule`.
    public var purpose: String?
    /// What its record is: a query, or a front end's catalog query.
    public var kind: Kind = .query

    public enum Kind: String, Sendable {
        case query, catalog
    }

    public init(consumer: String, dataset: String, sql: String, parameters: QueryParameters = .none,
                cancellation: Cancellation? = nil, clientAddress: String = "", purpose: String? = nil) {
        self.purpose = purpose
        self.consumer = consumer
        self.dataset = dataset
        self.sql = sql
        self.parameters = parameters
        self.cancellation = cancellation
        self.clientAddress = clientAddress
    }
}

/// A flag a front end raises to stop a running query; the sandbox looks at it with the clock.
///
/// An `Atomic`, the one primitive besides `Mutex` and `ThreadHandoff` (docs/ARCHITECTURE.md): the
/// SQLite progress handler reads it every few thousand VM steps of every query, where a relaxed
/// load costs nothing and a lock would be taken millions of times; a single flag needs no more.
public final class Cancellation: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func cancel() { flag.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
    /// Lowers the flag before the next query of the same session.
    public func reset() { flag.store(false, ordering: .relaxed) }
}

/// The metered facts about one request, as the response's `usage` object shows them.
public struct UsageSummary: Sendable, Equatable {
    public var queryID: String
    public var rows: Int
    public var cells: Int
    public var bytes: Int
    public var maskedCells: Int
    /// Groups a threshold withheld — for queries on rows tables always 0, for aggregate plans
    /// nil: not disclosed to the consumer, because the count says whether rows exist for a
    /// combination of dimension values (the usage record keeps it for the holder).
    public var suppressedGroups: Int?
    public var vmSteps: Int64
    public var elapsedMicroseconds: Int64
    public var costMicros: Int64
    public var currency: String
    /// The receipt: the record written for this request — its position in its node's chain, the
    /// node and its `record_hash` (0 and empty when the request was not recorded one by one).
    public var seq: Int64
    public var nodeID: String = ""
    public var recordHash: String = ""
    /// Privacy budget this request spent, micro-ε (0 when nothing was noised, or when an identical
    /// earlier query's answer was returned).
    public var epsilonMicros: Int64 = 0
    /// For a private aggregate: the 95% interval half-width of each output column that shows a
    /// noisy aggregate as it is (`sum(amount)` → 812.4), in output order.
    public var noise: [NoiseInterval] = []

    public init(queryID: String, rows: Int, cells: Int, bytes: Int, maskedCells: Int, suppressedGroups: Int?, vmSteps: Int64,
                elapsedMicroseconds: Int64, costMicros: Int64, currency: String, seq: Int64, nodeID: String = "", recordHash: String = "") {
        self.queryID = queryID
        self.rows = rows
        self.cells = cells
        self.bytes = bytes
        self.maskedCells = maskedCells
        self.suppressedGroups = suppressedGroups
        self.vmSteps = vmSteps
        self.elapsedMicroseconds = elapsedMicroseconds
        self.costMicros = costMicros
        self.currency = currency
        self.seq = seq
        self.nodeID = nodeID
        self.recordHash = recordHash
    }
}

/// The 95% interval of one noisy output column: the released value is within ± `halfWidth` of the
/// exact aggregate (over the bounded, clamped contributions) with probability 95%.
public struct NoiseInterval: Sendable, Equatable {
    public var column: String
    public var halfWidth: Double

    public init(column: String, halfWidth: Double) {
        self.column = column
        self.halfWidth = halfWidth
    }
}

/// The gateway's answer: a result with its usage, or an error with its usage.
/// Only the gateway constructs or changes one, and hands it out only once the ledger answered
/// for its record (`Gateway.complete`): a front end holding a response may release it.
public struct QueryResponse: Sendable {
    public internal(set) var outcome: Result<QueryResult, GatewayError>
    public internal(set) var truncated: Bool
    /// Why the result was cut: `max_rows` or the daily row quota.
    public internal(set) var truncatedBy: String?
    public internal(set) var usage: UsageSummary

    public var isOK: Bool {
        if case .success = outcome { return true }
        return false
    }

    public var error: GatewayError? {
        if case .failure(let error) = outcome { return error }
        return nil
    }

    public var result: QueryResult? {
        if case .success(let result) = outcome { return result }
        return nil
    }
}
