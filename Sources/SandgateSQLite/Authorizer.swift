import CSQLite

/// One question SQLite's authorizer asks while compiling a statement.
public struct AuthorizerRequest: Sendable {
    /// The raw action code (`SQLITE_READ`, `SQLITE_FUNCTION`, …).
    public let actionCode: Int32
    /// First argument: the table for reads, unused for functions, the pragma name for pragmas.
    public let first: String?
    /// Second argument: the column for reads, the function name for functions.
    public let second: String?
    /// The schema ("main", "temp", …) where applicable.
    public let database: String?
    /// The innermost trigger or view responsible for the access, nil for top-level SQL.
    public let innermostView: String?

    public init(actionCode: Int32, first: String?, second: String?, database: String?, innermostView: String?) {
        self.actionCode = actionCode
        self.first = first
        self.second = second
        self.database = database
        self.innermostView = innermostView
    }

    /// The action, for the handful that sandgate allows; everything else is `.other`.
    public var action: AuthorizerAction {
        switch actionCode {
        case SQLITE_SELECT: .select
        case SQLITE_READ: .read
        case SQLITE_FUNCTION: .function
        case SQLITE_RECURSIVE: .recursive
        case SQLITE_PRAGMA: .pragma
        case SQLITE_ATTACH, SQLITE_DETACH: .attach
        case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE: .write
        case SQLITE_TRANSACTION, SQLITE_SAVEPOINT: .transaction
        default: .other
        }
    }
}

/// The actions sandgate distinguishes; `.other` covers CREATE/DROP/ALTER/ANALYZE/REINDEX/… .
public enum AuthorizerAction: Sendable, Equatable {
    case select, read, function, recursive, pragma, attach, write, transaction, other
}

/// What the authorizer answers.
public enum AuthorizerDecision: Sendable {
    case allow
    case deny
    /// Reads as NULL (SQLITE_IGNORE); sandgate does not use it for reads, where it would hide a denial.
    case ignore
}
