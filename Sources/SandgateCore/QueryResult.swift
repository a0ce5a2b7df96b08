import SandgateSQLite

/// The rows of one result. Cells and value bytes live in fixed-size chunks, so collecting a row
/// never copies earlier rows and allocates only when a chunk fills.
///
/// A result is built by one thread (`ResultBuilder`) and never changes afterwards.
public struct QueryResult: Sendable {
    public let columns: [String]
    public let rowCount: Int
    /// Bytes of values: text and blob lengths, 8 per number, 0 per NULL (the `bytes` meter).
    public let valueBytes: Int
    let storage: ResultStorage

    public var cellCount: Int { storage.cellCount }

    /// A cell whose bytes stay valid as long as the result exists.
    enum Cell {
        case null
        case integer(Int64)
        case real(Double)
        case text(UnsafeRawBufferPointer)
        case blob(UnsafeRawBufferPointer)
    }

    func cell(_ index: Int) -> Cell { storage.cell(index) }

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
    private(set) var rowCount = 0
    private(set) var valueBytes = 0
    private let storage = ResultStorage()

    init(columns: [String]) { self.columns = columns }

    mutating func appendNull() { storage.append(kind: ResultStorage.null, payload: 0) }

    mutating func appendInteger(_ value: Int64) {
        storage.append(kind: ResultStorage.integer, payload: UInt64(bitPattern: value))
        valueBytes += 8
    }

    mutating func appendReal(_ value: Double) {
        storage.append(kind: ResultStorage.real, payload: value.bitPattern)
        valueBytes += 8
    }

    /// Copies text or blob bytes; values are at most `ResultStorage.maximumValueLength` long
    /// (sandbox connections set `SQLITE_LIMIT_LENGTH` below it).
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer, isText: Bool) {
        storage.appendBytes(bytes, kind: isText ? ResultStorage.text : ResultStorage.blob)
        valueBytes += bytes.count
    }

    mutating func endRow() { rowCount += 1 }

    func finish() -> QueryResult {
        QueryResult(columns: columns, rowCount: rowCount, valueBytes: valueBytes, storage: storage)
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
