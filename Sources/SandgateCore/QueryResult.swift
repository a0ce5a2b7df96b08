import SandgateSQLite

/// The rows of one result, stored column-major-free as one flat cell array plus one byte arena, so
/// collecting a row allocates nothing beyond amortised array growth.
public struct QueryResult: Sendable {
    /// A stored cell; text and blobs point into `storage`.
    enum Cell: Sendable {
        case null
        case integer(Int64)
        case real(Double)
        case text(offset: UInt32, length: UInt32)
        case blob(offset: UInt32, length: UInt32)
    }

    public let columns: [String]
    public private(set) var rowCount = 0
    var cells: [Cell] = []
    var storage: [UInt8] = []
    /// Bytes of values: text and blob lengths, 8 per number, 0 per NULL (the `bytes` meter).
    public private(set) var valueBytes = 0

    public init(columns: [String]) {
        self.columns = columns
    }

    public var cellCount: Int { cells.count }

    mutating func appendNull() { cells.append(.null) }

    mutating func appendInteger(_ value: Int64) {
        cells.append(.integer(value))
        valueBytes += 8
    }

    mutating func appendReal(_ value: Double) {
        cells.append(.real(value))
        valueBytes += 8
    }

    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer, isText: Bool) {
        let offset = UInt32(truncatingIfNeeded: storage.count)
        storage.append(contentsOf: bytes)
        let length = UInt32(truncatingIfNeeded: bytes.count)
        cells.append(isText ? .text(offset: offset, length: length) : .blob(offset: offset, length: length))
        valueBytes += bytes.count
    }

    mutating func endRow() { rowCount += 1 }

    /// The value at `row`, `column` (allocates; for tests, tables and small results).
    public func value(row: Int, column: Int) -> SQLValue {
        switch cells[row * columns.count + column] {
        case .null: return .null
        case .integer(let value): return .integer(value)
        case .real(let value): return .real(value)
        case .text(let offset, let length):
            return .text(String(decoding: storage[Int(offset)..<Int(offset + length)], as: UTF8.self))
        case .blob(let offset, let length):
            return .blob(Array(storage[Int(offset)..<Int(offset + length)]))
        }
    }

    /// Every row as values (allocates; for tests and small results).
    public var rows: [[SQLValue]] {
        (0..<rowCount).map { row in (0..<columns.count).map { value(row: row, column: $0) } }
    }
}
