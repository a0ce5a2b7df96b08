import CSQLite

/// The run-time limits of `sqlite3_limit` that sandgate sets on every sandbox connection.
public enum SQLiteLimit: Sendable {
    case length
    case sqlLength
    case column
    case expressionDepth
    case compoundSelect
    case vdbeOperations
    case functionArguments
    case attached
    case likePatternLength
    case variableNumber
    case triggerDepth
    case workerThreads

    var rawValue: Int32 {
        switch self {
        case .length: SQLITE_LIMIT_LENGTH
        case .sqlLength: SQLITE_LIMIT_SQL_LENGTH
        case .column: SQLITE_LIMIT_COLUMN
        case .expressionDepth: SQLITE_LIMIT_EXPR_DEPTH
        case .compoundSelect: SQLITE_LIMIT_COMPOUND_SELECT
        case .vdbeOperations: SQLITE_LIMIT_VDBE_OP
        case .functionArguments: SQLITE_LIMIT_FUNCTION_ARG
        case .attached: SQLITE_LIMIT_ATTACHED
        case .likePatternLength: SQLITE_LIMIT_LIKE_PATTERN_LENGTH
        case .variableNumber: SQLITE_LIMIT_VARIABLE_NUMBER
        case .triggerDepth: SQLITE_LIMIT_TRIGGER_DEPTH
        case .workerThreads: SQLITE_LIMIT_WORKER_THREADS
        }
    }
}

/// Boolean connection settings of `sqlite3_db_config`.
public enum SQLiteSetting: Sendable {
    case defensive
    case trustedSchema
    case enableTrigger
    case enableView
    case enableLoadExtension
    case enableFTS3Tokenizer
    case doubleQuotedStringsInDML
    case doubleQuotedStringsInDDL
    case writableSchema

    var rawValue: Int32 {
        switch self {
        case .defensive: SQLITE_DBCONFIG_DEFENSIVE
        case .trustedSchema: SQLITE_DBCONFIG_TRUSTED_SCHEMA
        case .enableTrigger: SQLITE_DBCONFIG_ENABLE_TRIGGER
        case .enableView: SQLITE_DBCONFIG_ENABLE_VIEW
        case .enableLoadExtension: SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION
        case .enableFTS3Tokenizer: SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER
        case .doubleQuotedStringsInDML: SQLITE_DBCONFIG_DQS_DML
        case .doubleQuotedStringsInDDL: SQLITE_DBCONFIG_DQS_DDL
        case .writableSchema: SQLITE_DBCONFIG_WRITABLE_SCHEMA
        }
    }
}

/// Process-wide SQLite settings.
public enum SQLiteLibrary {
    /// The SQLite version string (`sqlite3_libversion`).
    public static var version: String { String(cString: sqlite3_libversion()) }

    /// Sets the process-wide hard heap limit; allocations beyond it fail with SQLITE_NOMEM.
    @discardableResult
    public static func setHardHeapLimit(bytes: Int64) -> Int64 {
        sqlite3_hard_heap_limit64(bytes)
    }
}
