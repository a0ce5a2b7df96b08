import CSQLite

/// An error reported by SQLite, with the primary and extended result codes and SQLite's message.
///
/// The message is SQLite's own text about the statement, never bound values or row data.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The extended result code (`sqlite3_extended_errcode`).
    public let extendedCode: Int32
    /// SQLite's message (`sqlite3_errmsg`) or a description of what failed.
    public let message: String
    /// What sandgate was doing when the error happened ("prepare", "open", "backup", …).
    public let operation: String

    /// The primary result code (low byte of the extended code).
    public var code: Int32 { extendedCode & 0xFF }

    public init(code: Int32, message: String, operation: String) {
        self.extendedCode = code
        self.message = message
        self.operation = operation
    }

    init(connection handle: OpaquePointer?, code: Int32, operation: String) {
        let message: String
        if let handle, let text = sqlite3_errmsg(handle) {
            message = String(cString: text)
        } else if let text = sqlite3_errstr(code) {
            message = String(cString: text)
        } else {
            message = "SQLite error \(code)"
        }
        let extended = handle.map { sqlite3_extended_errcode($0) } ?? code
        self.init(code: extended == 0 ? code : extended, message: message, operation: operation)
    }

    public var description: String { "\(operation): \(message) (SQLite code \(extendedCode))" }

    /// True when SQLite stopped because the progress handler or `sqlite3_interrupt` asked it to.
    public var isInterrupt: Bool { code == SQLITE_INTERRUPT }
    /// True when a string or blob exceeded `SQLITE_LIMIT_LENGTH`.
    public var isTooBig: Bool { code == SQLITE_TOOBIG }
    /// True when SQLite ran out of memory (including the hard heap limit).
    public var isOutOfMemory: Bool { code == SQLITE_NOMEM }
    /// True when the authorizer denied an action.
    public var isAuthorizationDenied: Bool { code == SQLITE_AUTH }
}
