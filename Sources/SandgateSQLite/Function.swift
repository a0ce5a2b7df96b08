import CSQLite

/// The arguments of one call of a Swift scalar function; valid only during that call.
public struct FunctionArguments {
    @usableFromInline let count: Int
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

    /// Reports an error; SQLite stops the statement with `message`.
    public func setError(_ message: String) {
        sqlite3_result_error(context, message, -1)
    }
}
