import CSQLite

/// One SQLite database connection.
///
/// A connection is used by one thread at a time: sandgate's pools hand a connection to exactly
/// one worker and take it back afterwards, and the ledger guards its connections with locks.
/// That exclusivity is what makes the class `@unchecked Sendable`. The handle is opened with
/// `SQLITE_OPEN_NOMUTEX` because of it: with the default serialized mode every
/// `sqlite3_column_*` call takes the connection mutex, which cost ~8% of a masked full scan.
/// (`interrupt()` is safe from any thread in either mode.) The handle is closed in `deinit`.
public final class Connection: @unchecked Sendable {
    let handle: OpaquePointer
    private var authorizerBox: AuthorizerBox?
    private var progressBox: ProgressBox?
    /// Trusted statements prepared once and run again and again (`cached(_:)`), by text.
    private var statementCache: [String: Statement] = [:]

    /// How to open a database file.
    public struct OpenMode: Sendable {
        let flags: Int32
        let useURI: Bool

        /// Read-write, created when missing (ledger, fixtures, snapshot staging).
        public static let readWriteCreate = OpenMode(flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, useURI: false)
        /// Read-write, the file must exist.
        public static let readWrite = OpenMode(flags: SQLITE_OPEN_READWRITE, useURI: false)
        /// Read-only (the data holder's source when snapshotting).
        public static let readOnly = OpenMode(flags: SQLITE_OPEN_READONLY, useURI: false)
        /// Read-only and immutable: SQLite takes no locks and never writes (`?immutable=1`).
        public static let readOnlyImmutable = OpenMode(flags: SQLITE_OPEN_READONLY, useURI: true)
    }

    /// Opens `path` in `mode`. A failed open closes the handle before throwing.
    public init(path: String, mode: OpenMode) throws(SQLiteError) {
        var db: OpaquePointer?
        let target = mode.useURI ? Connection.immutableURI(for: path) : path
        var flags = mode.flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        if mode.useURI { flags |= SQLITE_OPEN_URI }
        let rc = sqlite3_open_v2(target, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let error = SQLiteError(connection: db, code: rc, operation: "open \(path)")
            sqlite3_close_v2(db)
            throw error
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
    }

    /// Opens a private in-memory database.
    public convenience init() throws(SQLiteError) {
        try self.init(path: ":memory:", mode: .readWriteCreate)
    }

    deinit {
        statementCache.removeAll()
        sqlite3_close_v2(handle)
    }

    /// `file:` URI with every byte that has a meaning in URIs percent-encoded.
    static func immutableURI(for path: String) -> String {
        var encoded = "file:"
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "."),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                encoded.unicodeScalars.append("%")
                encoded.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                encoded.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return encoded + "?immutable=1"
    }

    // MARK: Running SQL

    /// Runs one or more trusted statements (set-up SQL written by sandgate, never a consumer's).
    public func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(message)
            throw SQLiteError(code: sqlite3_extended_errcode(handle), message: text, operation: "execute")
        }
    }

    /// Prepares the first statement of `sql`. Returns nil when `sql` holds only whitespace or comments.
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement? {
        try prepareStatement(sql, owner: self)
    }

    private func prepareStatement(_ sql: String, owner: Connection?) throws(SQLiteError) -> Statement? {
        var statement: OpaquePointer?
        let bytes = Array(sql.utf8)
        let rc = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_prepare_v3(handle, chars.baseAddress, Int32(clamping: chars.count), 0, &statement, nil)
            }
        }
        guard rc == SQLITE_OK else {
            sqlite3_finalize(statement)
            throw SQLiteError(connection: handle, code: rc, operation: "prepare")
        }
        guard let statement else { return nil }
        return Statement(handle: statement, connection: owner)
    }

    /// Runs `body` with the statement of trusted `sql`, prepared on first use and kept: the
    /// ledger runs the same few statements for every batch and every quota decision, and
    /// preparing them each time was a tenth of a lookup's cost at one connection. The statement
    /// is rewound and its bindings cleared before `body` and after it (even when `body` throws),
    /// so a kept statement never holds a read snapshot open between uses. Only for the fixed set
    /// of statements written in the code: the cache is never evicted, so text built from input
    /// (a consumer's SQL, a value spliced in) would grow it without bound; bind values instead.
    public func cached<R>(_ sql: String, _ body: (Statement) throws(SQLiteError) -> R) throws(SQLiteError) -> R {
        let statement: Statement
        if let kept = statementCache[sql] {
            statement = kept
        } else {
            guard let prepared = try prepareStatement(sql, owner: nil) else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "no statement to keep in: \(sql.prefix(40))", operation: "prepare")
            }
            statementCache[sql] = prepared
            statement = prepared
        }
        statement.reset()
        defer { statement.reset() }
        return try body(statement)
    }

    /// `rows(_:_:)` on a kept statement (`cached(_:_:)`).
    public func cachedRows(_ sql: String, _ parameters: [SQLValue] = []) throws(SQLiteError) -> [[SQLValue]] {
        try cached(sql) { (statement) throws(SQLiteError) -> [[SQLValue]] in
            try statement.bind(parameters)
            return try statement.allRows()
        }
    }

    /// Prepares `sql`, which must hold exactly one statement: returns nil for an empty text and
    /// reports `hasMore` when anything but whitespace, comments or `;` follows the first statement.
    public func prepareSingle(_ sql: String) throws(SQLiteError) -> (statement: Statement?, hasMore: Bool) {
        let bytes = Array(sql.utf8) + [0]
        var first: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let count = bytes.count - 1
        return try bytes.withUnsafeBufferPointer { (buffer) throws(SQLiteError) -> (Statement?, Bool) in
            try buffer.withMemoryRebound(to: CChar.self) { (chars) throws(SQLiteError) -> (Statement?, Bool) in
                guard let base = chars.baseAddress else { return (nil, false) }
                let rc = sqlite3_prepare_v3(handle, base, Int32(clamping: count), 0, &first, &tail)
                guard rc == SQLITE_OK else {
                    sqlite3_finalize(first)
                    throw SQLiteError(connection: handle, code: rc, operation: "prepare")
                }
                let statement = first.map { Statement(handle: $0, connection: self) }
                // Prepare what follows (without running it): any further statement means "more".
                var rest = tail
                while let position = rest, position < base + count {
                    var next: OpaquePointer?
                    var nextTail: UnsafePointer<CChar>?
                    let remaining = Int32(clamping: base + count - position)
                    let rc = sqlite3_prepare_v3(handle, position, remaining, 0, &next, &nextTail)
                    if rc != SQLITE_OK || next != nil {
                        sqlite3_finalize(next)
                        return (statement, true)
                    }
                    if nextTail == position { break }
                    rest = nextTail
                }
                return (statement, false)
            }
        }
    }

    /// Runs a trusted query and returns its first column of its first row.
    public func scalar(_ sql: String, _ parameters: [SQLValue] = []) throws(SQLiteError) -> SQLValue {
        guard let statement = try prepare(sql) else { return .null }
        try statement.bind(parameters)
        guard try statement.step() else { return .null }
        return statement.value(at: 0)
    }

    /// Runs a trusted query and returns every row as values.
    public func rows(_ sql: String, _ parameters: [SQLValue] = []) throws(SQLiteError) -> [[SQLValue]] {
        guard let statement = try prepare(sql) else { return [] }
        try statement.bind(parameters)
        return try statement.allRows()
    }

    /// Rows changed by the last INSERT/UPDATE/DELETE.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    // MARK: Configuration

    /// Sets a `sqlite3_db_config` switch and returns the value now in force.
    @discardableResult
    public func set(_ setting: SQLiteSetting, _ enabled: Bool) -> Bool {
        sandgate_db_config_int(handle, setting.rawValue, enabled ? 1 : 0) == 1
    }

    /// Sets a `sqlite3_limit` and returns the previous value.
    @discardableResult
    public func setLimit(_ limit: SQLiteLimit, _ value: Int32) -> Int32 {
        sqlite3_limit(handle, limit.rawValue, value)
    }

    /// The current value of a `sqlite3_limit`.
    public func limit(_ limit: SQLiteLimit) -> Int32 {
        sqlite3_limit(handle, limit.rawValue, -1)
    }

    /// Sets how long a writer waits for a lock held by another connection.
    public func setBusyTimeout(milliseconds: Int32) {
        sqlite3_busy_timeout(handle, milliseconds)
    }

    /// Asks the running statement to stop at the next opportunity (thread-safe).
    public func interrupt() {
        sqlite3_interrupt(handle)
    }

    // MARK: Authorizer and progress

    /// Installs `decide` as the authorizer: SQLite asks it about every action while preparing.
    ///
    /// The closure runs on the preparing thread only; it must not touch the connection.
    public func setAuthorizer(_ decide: @escaping (AuthorizerRequest) -> AuthorizerDecision) {
        let box = AuthorizerBox(decide)
        authorizerBox = box
        sqlite3_set_authorizer(handle, authorizerTrampoline, Unmanaged.passUnretained(box).toOpaque())
    }

    /// Removes the authorizer.
    public func removeAuthorizer() {
        sqlite3_set_authorizer(handle, nil, nil)
        authorizerBox = nil
    }

    /// Calls `shouldInterrupt` every `instructions` virtual-machine instructions; returning true stops
    /// the statement with SQLITE_INTERRUPT.
    public func setProgressHandler(every instructions: Int32, _ shouldInterrupt: @escaping () -> Bool) {
        let box = ProgressBox(shouldInterrupt)
        progressBox = box
        sqlite3_progress_handler(handle, instructions, progressTrampoline, Unmanaged.passUnretained(box).toOpaque())
    }

    // MARK: Functions

    /// Registers a deterministic one-argument scalar function implemented in Swift.
    ///
    /// `body` receives the argument and a result slot; it runs on the stepping thread.
    public func createFunction(
        name: String,
        argumentCount: Int32,
        deterministic: Bool,
        _ body: @escaping (FunctionArguments, FunctionResult) -> Void
    ) throws(SQLiteError) {
        let box = Unmanaged.passRetained(FunctionBox(body)).toOpaque()
        var flags = SQLITE_UTF8 | SQLITE_DIRECTONLY
        if deterministic { flags |= SQLITE_DETERMINISTIC }
        let rc = sqlite3_create_function_v2(
            handle, name, argumentCount, flags, box,
            functionTrampoline, nil, nil, functionDestroy
        )
        guard rc == SQLITE_OK else {
            throw SQLiteError(connection: handle, code: rc, operation: "create function \(name)")
        }
    }

    // MARK: Backup

    /// Copies the whole `main` database of `source` into this connection's `main` (online backup API).
    public func restore(from source: Connection) throws(SQLiteError) {
        guard let backup = sqlite3_backup_init(handle, "main", source.handle, "main") else {
            throw SQLiteError(connection: handle, code: sqlite3_errcode(handle), operation: "backup init")
        }
        var rc: Int32 = SQLITE_OK
        repeat {
            rc = sqlite3_backup_step(backup, 4096)
        } while rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED
        let finish = sqlite3_backup_finish(backup)
        if rc != SQLITE_DONE {
            throw SQLiteError(connection: handle, code: rc, operation: "backup step")
        }
        if finish != SQLITE_OK {
            throw SQLiteError(connection: handle, code: finish, operation: "backup finish")
        }
    }
}

// MARK: - C trampolines

private final class AuthorizerBox {
    let decide: (AuthorizerRequest) -> AuthorizerDecision
    init(_ decide: @escaping (AuthorizerRequest) -> AuthorizerDecision) { self.decide = decide }
}

private final class ProgressBox {
    let shouldInterrupt: () -> Bool
    init(_ shouldInterrupt: @escaping () -> Bool) { self.shouldInterrupt = shouldInterrupt }
}

final class FunctionBox {
    let body: (FunctionArguments, FunctionResult) -> Void
    init(_ body: @escaping (FunctionArguments, FunctionResult) -> Void) { self.body = body }
}

private func authorizerTrampoline(
    _ context: UnsafeMutableRawPointer?, _ action: Int32,
    _ a: UnsafePointer<CChar>?, _ b: UnsafePointer<CChar>?,
    _ database: UnsafePointer<CChar>?, _ trigger: UnsafePointer<CChar>?
) -> Int32 {
    guard let context else { return SQLITE_DENY }
    let box = Unmanaged<AuthorizerBox>.fromOpaque(context).takeUnretainedValue()
    let request = AuthorizerRequest(
        actionCode: action,
        first: a.map { String(cString: $0) },
        second: b.map { String(cString: $0) },
        database: database.map { String(cString: $0) },
        innermostView: trigger.map { String(cString: $0) }
    )
    switch box.decide(request) {
    case .allow: return SQLITE_OK
    case .deny: return SQLITE_DENY
    case .ignore: return SQLITE_IGNORE
    }
}

private func progressTrampoline(_ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let context else { return 1 }
    return Unmanaged<ProgressBox>.fromOpaque(context).takeUnretainedValue().shouldInterrupt() ? 1 : 0
}

private func functionTrampoline(
    _ context: OpaquePointer?, _ count: Int32, _ values: UnsafeMutablePointer<OpaquePointer?>?
) {
    guard let context, let data = sqlite3_user_data(context) else { return }
    // The box lives as long as the function registration; no retain is needed for the call.
    Unmanaged<FunctionBox>.fromOpaque(data)._withUnsafeGuaranteedRef {
        $0.body(FunctionArguments(count: Int(count), values: values), FunctionResult(context: context))
    }
}

private func functionDestroy(_ data: UnsafeMutableRawPointer?) {
    guard let data else { return }
    Unmanaged<FunctionBox>.fromOpaque(data).release()
}
