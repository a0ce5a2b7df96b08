import CSQLite

/// The arguments of one call of a Swift scalar function; valid only during that call.
public struct FunctionArguments {
    /// How many arguments the call has.
    public let count: Int
    @usableFromInline let values: UnsafeMutablePointer<OpaquePointer?>?

    @usableFromInline init(count: Int, values: UnsafeMutablePointer<OpaquePointer?>?) {
        self.count = count
        self.values = values
    }

    /// The storage class of argument `index`.
    @inlinable public func type(at index: Int) -> SQLValueType {
        guard index < count, let value = values?[index] else { return .null }
        return SQLValueType(rawValue: sqlite3_value_type(value)) ?? .null
    }

    /// The integer value of argument `index` (SQLite's conversion for other types).
    @inlinable public func integer(at index: Int) -> Int64 {
        guard index < count, let value = values?[index] else { return 0 }
        return sqlite3_value_int64(value)
    }

    /// Calls `body` with the UTF-8 text of argument `index` (numbers as SQLite renders them,
    /// blobs as their raw bytes). The bytes are valid only inside `body`.
    @inlinable public func withText<R>(at index: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        guard index < count, let value = values?[index], let text = sqlite3_value_text(value) else {
            return body(UnsafeBufferPointer(start: nil, count: 0))
        }
        let length = Int(sqlite3_value_bytes(value))
        return body(UnsafeBufferPointer(start: text, count: length))
    }
}

/// Where a Swift scalar function writes its result; valid only during the call.
public struct FunctionResult {
    @usableFromInline let context: OpaquePointer

    @usableFromInline init(context: OpaquePointer) { self.context = context }

    @inlinable public func setNull() { sqlite3_result_null(context) }

    /// Copies `bytes` (UTF-8) as the text result.
    @inlinable public func setText(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress else {
            sqlite3_result_text(context, "", 0, sandgate_transient())
            return
        }
        base.withMemoryRebound(to: CChar.self, capacity: bytes.count) { chars in
            sqlite3_result_text(context, chars, Int32(clamping: bytes.count), sandgate_transient())
        }
    }

    public func setInteger(_ value: Int64) { sqlite3_result_int64(context, value) }

    public func setReal(_ value: Double) { sqlite3_result_double(context, value) }

    /// Returns argument `index` of `arguments` unchanged (type and value).
    public func setArgument(_ arguments: FunctionArguments, at index: Int) {
        guard index < arguments.count, let value = arguments.values?[index] else { return setNull() }
        sqlite3_result_value(context, value)
    }

    /// Reports an error; SQLite stops the statement with `message`.
    public func setError(_ message: String) {
        sqlite3_result_error(context, message, -1)
    }

    /// Stops the statement as if the progress handler had interrupted it (`SQLITE_INTERRUPT`):
    /// for functions that watch the query's deadline themselves.
    public func setInterrupted() {
        sqlite3_result_error_code(context, SQLITE_INTERRUPT)
    }

    /// Reports "string or blob too big" (`SQLITE_TOOBIG`), as SQLite's own functions do.
    public func setTooBig() {
        sqlite3_result_error_toobig(context)
    }
}

/// Byte search for functions over SQLite values.
public enum ByteSearch {
    /// The offset of the first `needle` in `haystack` at or after `from`, in time linear in both
    /// lengths (glibc's two-way `memmem`).
    public static func firstOffset(of needle: UnsafeBufferPointer<UInt8>, in haystack: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        guard let base = haystack.baseAddress, let pattern = needle.baseAddress, from >= 0, from < haystack.count,
              needle.count <= haystack.count - from else { return nil }
        guard let found = sandgate_memmem(base + from, haystack.count - from, pattern, needle.count) else { return nil }
        return UnsafeRawPointer(base).distance(to: found)
    }

    /// The offset of the first `byte` in `haystack` (`memchr`).
    public static func firstOffset(of byte: UInt8, in haystack: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = haystack.baseAddress, let found = memchr(base, Int32(byte), haystack.count) else { return nil }
        return UnsafeRawPointer(base).distance(to: found)
    }
}
