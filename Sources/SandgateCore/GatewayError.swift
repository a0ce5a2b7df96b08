/// The stable error codes of DESIGN.md §5.
public enum ErrorCode: String, Sendable, CaseIterable {
    case authFailed = "auth_failed"
    case notGranted = "not_granted"
    case unknownDataset = "unknown_dataset"
    case syntaxError = "syntax_error"
    case notASelect = "not_a_select"
    case noSuchTable = "no_such_table"
    case noSuchColumn = "no_such_column"
    case columnNotAllowed = "column_not_allowed"
    case functionNotAllowed = "function_not_allowed"
    case aggregateRequired = "aggregate_required"
    case shapeNotAllowed = "shape_not_allowed"
    case budgetExceeded = "budget_exceeded"
    case timeout
    case resultTooLarge = "result_too_large"
    case quotaExceeded = "quota_exceeded"
    /// The consumer's ε budget on the dataset cannot pay for this private query (issue 10).
    case privacyBudgetExhausted = "privacy_budget_exhausted"
    /// A function SQLite does not have (a misspelling, or `median`); the hint suggests one.
    case noSuchFunction = "no_such_function"
    /// Concatenating aggregates would carry more rows' values than the row limit.
    case rowsLimitExceeded = "rows_limit_exceeded"
    case requestTooLarge = "request_too_large"
    /// The query's purpose is missing, unknown, not granted, or not allowed by the dataset.
    case purposeNotAllowed = "purpose_not_allowed"
    /// The client cancelled the running query (PostgreSQL's CancelRequest).
    case cancelled
    /// The front end refused the request to protect the gateway (too many in flight, responses
    /// not read); recorded as a refusal priced 0.
    case overloaded
    case badRequest = "bad_request"
    case unavailable
    case `internal`

    /// True for codes that mean "refused before anything ran" (priced 0 in the ledger).
    public var isRefusal: Bool {
        switch self {
        case .budgetExceeded, .timeout, .cancelled, .resultTooLarge, .rowsLimitExceeded, .internal: false
        default: true
        }
    }
}

/// What a consumer sees when a request is refused or fails: a stable code, a message and a hint.
/// Never contains keys or row values.
public struct GatewayError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String
    public let hint: String

    public init(_ code: ErrorCode, _ message: String, hint: String = "") {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String {
        hint.isEmpty ? "\(code.rawValue): \(message)" : "\(code.rawValue): \(message) (hint: \(hint))"
    }
}
