import SandgateSQLite

/// The rows of one result. Cells and value bytes live in fixed-size chunks, so collecting a row
/// never copies earlier rows and allocates only when a chunk fills.
///
/// A result is built by one thread (`ResultBuilder`) and never changes afterwards.
public struct QueryResult: Sendable {
    public let columns: [String]
    /// One per column: what the source declares and what the values are (for front ends that
    /// type their columns, such as PostgreSQL's RowDescription).
    public let columnTypes: [ColumnType]
    public let rowCount: Int
    /// Bytes of values: text and blob lengths, 8 per number, 0 per NULL (the `bytes` meter).
    public let valueBytes: Int
    let storage: ResultStorage

    public var cellCount: Int { storage.cellCount }

    /// A cell whose bytes stay valid as long as the result exists (no allocation per cell).
    public enum Cell {
        case null
        case integer(Int64)
        case real(Double)
        case text(UnsafeRawBufferPointer)
        case blob(UnsafeRawBufferPointer)
    }

    func cell(_ index: Int) -> Cell { storage.cell(index) }

    /// The cell at `row`, `column`; its bytes are valid while the result lives.
    public func cell(row: Int, column: Int) -> Cell { storage.cell(row * columns.count + column) }

    /// The value at `row`, `column` (allocates; for tests, tables and small results).
    public func value(row: Int, column: Int) -> SQLValue {
        switch cell(row * columns.count + column) {
        case .null: return .null
        case .integer(let value): return .integer(value)
        case .real(let value): return .real(value)
        case .text(let bytes): return .text(String(decoding: bytes, as: UTF8.self))
        case .blob(let bytes): return .blob(Array(bytes))
        }
    }

    /// Every row as values (allocates; for tests and small results).
    public var rows: [[SQLValue]] {
        (0..<rowCount).map { row in (0..<columns.count).map { value(row: row, column: $0) } }
    }
}

/// Collects a result row by row; `finish` hands out the immutable `QueryResult`.
struct ResultBuilder {
    let columns: [String]
    private let declaredTypes: [String?]
    /// Storage classes seen so far, per column.
    private var seen: [StorageClasses]
    /// Per column declared as a date or timestamp: whether every text value so far has that shape.
    private var temporalShape: [Bool]
    private var column = 0
    private(set) var rowCount = 0
    private(set) var valueBytes = 0
    private let storage = ResultStorage()

    init(columns: [String], declaredTypes: [String?]? = nil) {
        self.columns = columns
        let declared = declaredTypes ?? Array(repeating: nil, count: columns.count)
        self.declaredTypes = declared
        seen = Array(repeating: [], count: columns.count)
        temporalShape = declared.map { ColumnType.temporalKind(declared: $0) != nil }
    }

    mutating func appendNull() {
        storage.append(kind: ResultStorage.null, payload: 0)
        see(.null)
    }

    mutating func appendInteger(_ value: Int64) {
        storage.append(kind: ResultStorage.integer, payload: UInt64(bitPattern: value))
        valueBytes += 8
        see(.integer)
    }

    mutating func appendReal(_ value: Double) {
        storage.append(kind: ResultStorage.real, payload: value.bitPattern)
        valueBytes += 8
        see(.real)
    }

    /// Copies text or blob bytes; values are at most `ResultStorage.maximumValueLength` long
    /// (sandbox connections set `SQLITE_LIMIT_LENGTH` below it).
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer, isText: Bool) {
        storage.appendBytes(bytes, kind: isText ? ResultStorage.text : ResultStorage.blob)
        valueBytes += bytes.count
        if isText, column < temporalShape.count, temporalShape[column], !ColumnType.hasTemporalShape(bytes) {
            temporalShape[column] = false
        }
        see(isText ? .text : .blob)
    }

    @inline(__always) private mutating func see(_ storageClass: StorageClasses) {
        if column < seen.count { seen[column].formUnion(storageClass) }
        column += 1
    }

    mutating func endRow() {
        rowCount += 1
        column = 0
    }

    func finish() -> QueryResult {
        let types = (0..<columns.count).map { index in
            ColumnType(declared: declaredTypes[index], seen: seen[index], temporalValues: temporalShape[index])
        }
        return QueryResult(columns: columns, columnTypes: types, rowCount: rowCount, valueBytes: valueBytes, storage: storage)
    }
}

/// The SQLite storage classes that occurred in a column.
public struct StorageClasses: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let null = StorageClasses(rawValue: 1)
    public static let integer = StorageClasses(rawValue: 2)
    public static let real = StorageClasses(rawValue: 4)
    public static let text = StorageClasses(rawValue: 8)
    public static let blob = StorageClasses(rawValue: 16)
}

/// A result column's type: what the source schema declares (nil for expressions and masked
/// columns) and the storage classes of its values. `kind` is the one type every value fits,
/// so a front end that declares column types before the rows never declares one a value breaks.
public struct ColumnType: Sendable, Hashable {
    public let declared: String?
    public let seen: StorageClasses
    /// For a column declared as a date or timestamp: every text value has that shape.
    let temporalValues: Bool

    public init(declared: String?, seen: StorageClasses, temporalValues: Bool = false) {
        self.declared = declared
        self.seen = seen
        self.temporalValues = temporalValues
    }

    public enum Kind: String, Sendable {
        case integer, real, text, blob, date, timestamp
    }

    public var kind: Kind {
        let values = seen.subtracting(.null)
        if let temporal = Self.temporalKind(declared: declared), temporalValues, values.isSubset(of: [.text]) { return temporal }
        if values.isEmpty {
            // Only NULLs: the declaration decides, else text.
            switch declared.map(Self.affinity) {
            case .integer?: return .integer
            case .real?: return .real
            case .blob?: return .blob
            default: return .text
            }
        }
        if values.isSubset(of: [.integer]) { return .integer }
        if values.isSubset(of: [.integer, .real]) { return .real }
        if values == .blob { return .blob }
        return .text
    }

    /// SQLite's affinity rules (§3.1 of its datatype page), for declared types.
    static func affinity(_ declared: String) -> Kind {
        let upper = declared.uppercased()
        if upper.contains("INT") { return .integer }
        if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") { return .text }
        if upper.contains("BLOB") || upper.isEmpty { return .blob }
        if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") { return .real }
        return .text
    }

    /// `date` for DATE, `timestamp` for DATETIME/TIMESTAMP declarations.
    static func temporalKind(declared: String?) -> Kind? {
        guard let upper = declared?.uppercased() else { return nil }
        if upper.hasPrefix("TIMESTAMP") || upper.hasPrefix("DATETIME") { return .timestamp }
        if upper == "DATE" { return .date }
        return nil
    }

    /// `YYYY-MM-DD`, optionally followed by ` HH:MM:SS` and a fraction: the ISO shapes PostgreSQL's
    /// date and timestamp input accepts. Other text in such a column makes it text.
    static func hasTemporalShape(_ bytes: UnsafeRawBufferPointer) -> Bool {
        func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { bytes[$0] >= 0x30 && bytes[$0] <= 0x39 } }
        guard bytes.count >= 10, digits(0..<4), bytes[4] == 0x2D, digits(5..<7), bytes[7] == 0x2D, digits(8..<10) else { return false }
        let month = Int(bytes[5] - 0x30) * 10 + Int(bytes[6] - 0x30), day = Int(bytes[8] - 0x30) * 10 + Int(bytes[9] - 0x30)
        guard (1...12).contains(month), (1...31).contains(day) else { return false }
        if bytes.count == 10 { return true }
        guard bytes.count >= 19, bytes[10] == 0x20 || bytes[10] == 0x54, digits(11..<13), bytes[13] == 0x3A, digits(14..<16),
              bytes[16] == 0x3A, digits(17..<19) else { return false }
        if bytes.count == 19 { return true }
        return bytes[19] == 0x2E && bytes.count > 20 && digits(20..<bytes.count)
    }
}

/// Chunked cell and byte storage behind `QueryResult`.
///
/// Cells are a kind byte and a 64-bit payload (the integer, the double's bits, or a byte location
/// packed as chunk ≪ 56 | offset ≪ 32 | length). Byte chunks are 16 MiB of virtual memory each,
/// touched only as far as they are filled.
///
/// `@unchecked Sendable`: only `ResultBuilder` writes, on one thread, before the storage is
/// wrapped in a `QueryResult`; afterwards it is only read. Chunks are freed in `deinit`.
final class ResultStorage: @unchecked Sendable {
    static let null: UInt8 = 0, integer: UInt8 = 1, real: UInt8 = 2, text: UInt8 = 3, blob: UInt8 = 4
    static let cellsPerChunk = 1 << 16
    static let byteChunkSize = 1 << 24
    /// Longest value that fits a byte chunk; also the sandbox's `SQLITE_LIMIT_LENGTH` ceiling.
    static let maximumValueLength = byteChunkSize - 1
    /// Chunk numbers have 8 bits: 256 × 16 MiB is well above the 1 GiB `max_result_bytes` ceiling.
    static let maximumByteChunks = 256

    /// The mutable state sits behind a pointer so appends pay no dynamic exclusivity checks
    /// (class `var`s cost a `swift_beginAccess` per touch: ~10% of a full-table result).
    private struct State {
        var kindChunks: [UnsafeMutablePointer<UInt8>] = []
        var payloadChunks: [UnsafeMutablePointer<UInt64>] = []
        var cellCount = 0
        var byteChunks: [UnsafeMutableRawPointer] = []
        var byteOffset = ResultStorage.byteChunkSize
    }

    private let state: UnsafeMutablePointer<State>

    init() {
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        state.pointee.kindChunks.forEach { $0.deallocate() }
        state.pointee.payloadChunks.forEach { $0.deallocate() }
        state.pointee.byteChunks.forEach { $0.deallocate() }
        state.deinitialize(count: 1)
        state.deallocate()
    }

    var cellCount: Int { state.pointee.cellCount }

    @inline(__always) func append(kind: UInt8, payload: UInt64) {
        let count = state.pointee.cellCount
        let inChunk = count & (Self.cellsPerChunk - 1)
        if inChunk == 0 {
            state.pointee.kindChunks.append(.allocate(capacity: Self.cellsPerChunk))
            state.pointee.payloadChunks.append(.allocate(capacity: Self.cellsPerChunk))
        }
        let chunk = count >> 16
        state.pointee.kindChunks[chunk][inChunk] = kind
        state.pointee.payloadChunks[chunk][inChunk] = payload
        state.pointee.cellCount = count + 1
    }

    func appendBytes(_ bytes: UnsafeRawBufferPointer, kind: UInt8) {
        // Longer values cannot occur (length limit); they are cut rather than overflow a chunk.
        let length = min(bytes.count, Self.maximumValueLength)
        // An empty value needs no bytes (and there may be no chunk yet).
        guard length > 0 else { return append(kind: kind, payload: 0) }
        if state.pointee.byteOffset + length > Self.byteChunkSize {
            if state.pointee.byteChunks.count == Self.maximumByteChunks {
                append(kind: Self.null, payload: 0)
                return
            }
            state.pointee.byteChunks.append(.allocate(byteCount: Self.byteChunkSize, alignment: 16))
            state.pointee.byteOffset = 0
        }
        let chunk = state.pointee.byteChunks.count - 1
        let offset = state.pointee.byteOffset
        if length > 0, let source = bytes.baseAddress {
            (state.pointee.byteChunks[chunk] + offset).copyMemory(from: source, byteCount: length)
        }
        append(kind: kind, payload: UInt64(chunk) << 56 | UInt64(offset) << 32 | UInt64(length))
        state.pointee.byteOffset = offset + length
    }

    func cell(_ index: Int) -> QueryResult.Cell {
        let chunk = index >> 16, inChunk = index & (Self.cellsPerChunk - 1)
        let payload = state.pointee.payloadChunks[chunk][inChunk]
        switch state.pointee.kindChunks[chunk][inChunk] {
        case Self.integer: return .integer(Int64(bitPattern: payload))
        case Self.real: return .real(Double(bitPattern: payload))
        case Self.text: return .text(bytes(payload))
        case Self.blob: return .blob(bytes(payload))
        default: return .null
        }
    }

    private func bytes(_ payload: UInt64) -> UnsafeRawBufferPointer {
        let chunk = Int(payload >> 56), offset = Int(payload >> 32 & 0xFF_FFFF), length = Int(payload & 0xFFFF_FFFF)
        guard length > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: state.pointee.byteChunks[chunk] + offset, count: length)
    }
}
