/// A value that crosses the SQLite boundary: bound parameters, single results, fixture rows.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// The storage class of a result column or function argument (`sqlite3_column_type`).
public enum SQLValueType: Int32, Sendable {
    case integer = 1
    case real = 2
    case text = 3
    case blob = 4
    case null = 5
}
