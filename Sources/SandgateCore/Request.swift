import SandgateSQLite

/// Values bound to a query's parameters: positional for `?`/`?NNN`, named for `:name`, `@name`, `$name`.
public enum QueryParameters: Sendable, Equatable {
    case none
    case positional([SQLValue])
    /// Keys without their prefix character.
    case named([String: SQLValue])
}

/// One request to the gateway, from any front end.
public struct QueryRequest: Sendable {
    public var consumer: String
    public var dataset: String
    public var sql: String
    public var parameters: QueryParameters

    public init(consumer: String, dataset: String, sql: String, parameters: QueryParameters = .none) {
        self.consumer = consumer
        self.dataset = dataset
        self.sql = sql
        self.parameters = parameters
    }
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
}

/// The gateway's answer: a result with its usage, or an error with its usage.
public struct QueryResponse: Sendable {
    public var outcome: Result<QueryResult, GatewayError>
    public var truncated: Bool
    /// Why the result was cut: `max_rows` or the daily row quota.
    public var truncatedBy: String?
    public var usage: UsageSummary

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
