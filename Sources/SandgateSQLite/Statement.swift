import CSQLite

/// A prepared statement; finalized in `deinit`. Used by one thread at a time, like its connection.
public final class Statement {
    @usableFromInline let handle: OpaquePointer
    /// Keeps the connection open as long as the statement lives; nil for the connection's own
    /// cached statements (`Connection.cached`), which it finalizes before it closes.
    private let connection: Connection?

    init(handle: OpaquePointer, connection: Connection?) {
        self.handle = handle
        self.connection = connection
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// Number of result columns.
    public var columnCount: Int { Int(sqlite3_column_count(handle)) }

    /// Name of result column `index` as SQLite reports it.
    public func columnName(at index: Int) -> String {
        guard let name = sqlite3_column_name(handle, Int32(index)) else { return "" }
        return String(cString: name)
    }

    /// The declared type of result column `index` when it is a plain column of a table (through
    /// views and subqueries), nil for expressions (`sqlite3_column_decltype`).
    public func declaredType(at index: Int) -> String? {
        sqlite3_column_decltype(handle, Int32(index)).map { String(cString: $0) }
    }

    /// True when the statement cannot write to the database (`sqlite3_stmt_readonly`).
    public var isReadOnly: Bool { sqlite3_stmt_readonly(handle) != 0 }

    /// True for EXPLAIN and EXPLAIN QUERY PLAN statements.
    public var isExplain: Bool { sqlite3_stmt_isexplain(handle) != 0 }

    /// Virtual-machine instructions executed so far (`SQLITE_STMTSTATUS_VM_STEP`).
    public var virtualMachineSteps: Int64 {
        Int64(sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_VM_STEP, 0))
    }

    /// Sets the VM step counter back to zero (before reusing a cached statement).
    public func resetVirtualMachineSteps() {
        sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_VM_STEP, 1)
    }

    /// Number of parameters (`?`, `?NNN`, `:name`, …); the highest index.
    public var parameterCount: Int { Int(sqlite3_bind_parameter_count(handle)) }

    /// The name of parameter `index` (1-based) including its prefix, nil for `?`.
    public func parameterName(at index: Int) -> String? {
        sqlite3_bind_parameter_name(handle, Int32(index)).map { String(cString: $0) }
    }

    // MARK: Binding

    /// Binds `values` to parameters 1…n.
    public func bind(_ values: [SQLValue]) throws(SQLiteError) {
        for (offset, value) in values.enumerated() {
            try bind(value, at: offset + 1)
        }
    }

    /// Binds one value to parameter `index` (1-based). Bound values never become SQL text.
    public func bind(_ value: SQLValue, at index: Int) throws(SQLiteError) {
        let position = Int32(clamping: index)
        let rc: Int32
        switch value {
        case .null:
            rc = sqlite3_bind_null(handle, position)
        case .integer(let number):
            rc = sqlite3_bind_int64(handle, position, number)
        case .real(let number):
            rc = sqlite3_bind_double(handle, position, number)
        case .text(let text):
            // A trailing NUL keeps the pointer non-nil for "" (a nil pointer would bind NULL).
            var bytes = Array(text.utf8)
            let length = bytes.count
            bytes.append(0)
            rc = bytes.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) {
                    sqlite3_bind_text64(handle, position, $0.baseAddress, sqlite3_uint64(length), sandgate_transient(), UInt8(SQLITE_UTF8))
                }
            }
        case .blob(let bytes):
            rc = bytes.withUnsafeBytes { buffer in
                sqlite3_bind_blob64(handle, position, buffer.baseAddress, sqlite3_uint64(buffer.count), sandgate_transient())
            }
        }
        guard rc == SQLITE_OK else {
            throw SQLiteError(connection: sqlite3_db_handle(handle), code: rc, operation: "bind parameter \(index)")
        }
    }

    /// Clears bindings and rewinds the statement for another run.
    public func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    // MARK: Stepping

    /// Advances to the next row. Returns false when the statement is done.
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw SQLiteError(connection: sqlite3_db_handle(handle), code: rc, operation: "step")
        }
    }

    /// Steps to the end, every row as values.
    func allRows() throws(SQLiteError) -> [[SQLValue]] {
        var result: [[SQLValue]] = []
        while try step() {
            result.append((0..<columnCount).map { value(at: $0) })
        }
        return result
    }

    // MARK: Columns of the current row

    /// Storage class of column `index` in the current row.
    @inlinable public func type(at index: Int) -> SQLValueType {
        SQLValueType(rawValue: sqlite3_column_type(handle, Int32(index))) ?? .null
    }

    @inlinable public func integer(at index: Int) -> Int64 { sqlite3_column_int64(handle, Int32(index)) }

    @inlinable public func real(at index: Int) -> Double { sqlite3_column_double(handle, Int32(index)) }

    /// Calls `body` with the bytes of a text or blob column; valid only inside `body`.
    @inlinable public func withBytes<R>(at index: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let column = Int32(index)
        // sqlite3_column_blob returns text bytes unconverted; the length must be read afterwards.
        let pointer = sqlite3_column_blob(handle, column)
        let length = Int(sqlite3_column_bytes(handle, column))
        return body(UnsafeRawBufferPointer(start: pointer, count: pointer == nil ? 0 : length))
    }

    /// Column `index` of the current row as a value (allocates; for trusted, small results).
    public func value(at index: Int) -> SQLValue {
        switch type(at: index) {
        case .null: return .null
        case .integer: return .integer(integer(at: index))
        case .real: return .real(real(at: index))
        case .text: return .text(withBytes(at: index) { String(decoding: $0, as: UTF8.self) })
        case .blob: return .blob(withBytes(at: index) { Array($0) })
        }
    }
}
