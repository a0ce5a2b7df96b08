import NIOCore
import SandgateCore
import SandgateSQLite

/// What a portal's command produced: gateway rows (with the response that carries their usage),
/// a failed gateway query (its response carries the usage of the refusal), or catalog rows.
enum PGRows: Sendable {
    case data(QueryResult, QueryResponse)
    case failed(QueryResponse)
    case catalog(PGCatalog.Answer)

    /// The RowDescription columns, nil for a failed query.
    var columns: [PGColumn]? {
        switch self {
        case .data(let result, _): zip(result.columns, result.columnTypes).map { PGColumn(name: $0, type: PGType($1.kind)) }
        case .catalog(let answer): answer.columns
        case .failed: nil
        }
    }

    var rowCount: Int {
        switch self {
        case .data(let result, _): result.rowCount
        case .catalog(let answer): answer.rows.count
        case .failed: 0
        }
    }

    /// Bytes a kept result holds, counted as the consumer's unsent bytes (catalog answers are small
    /// and bounded by the catalog's own limits, so they are not counted, as before).
    var heldBytes: Int {
        if case .data(let result, _) = self { return result.valueBytes + result.cellCount * 9 }
        return 0
    }
}

/// A range of a portal's rows to send as DataRows, with the columns' types and formats.
struct PGRowBatch: Sendable {
    let rows: PGRows
    let columns: [PGColumn]
    let binary: [Bool]
    let range: Range<Int>

    func write(into buffer: inout ByteBuffer) {
        switch rows {
        case .data(let result, _):
            for row in range {
                buffer.writePGMessage(UInt8(ascii: "D")) { buffer in
                    buffer.writeInteger(Int16(clamping: columns.count))
                    for column in 0..<columns.count {
                        PGValueEncoder.write(result.cell(row: row, column: column), type: columns[column].type, binary: binary[column], into: &buffer)
                    }
                }
            }
        case .catalog(let answer):
            for row in answer.rows[range] {
                buffer.writePGMessage(UInt8(ascii: "D")) { buffer in
                    buffer.writeInteger(Int16(clamping: columns.count))
                    for (column, value) in row.enumerated() where column < columns.count {
                        Self.write(value, type: columns[column].type, binary: binary[column], into: &buffer)
                    }
                }
            }
        case .failed:
            break
        }
    }

    /// A catalog value: the catalog's integers stand for int2/int4/oid/char columns and its text
    /// for bool, so binary formats and `t`/`f` are produced here.
    static func write(_ value: SQLValue, type: PGType, binary: Bool, into buffer: inout ByteBuffer) {
        switch value {
        case .null: PGValueEncoder.write(.null, type: type, binary: binary, into: &buffer)
        case .integer(let number):
            if binary {
                switch type {
                case .int2: return PGValueEncoder.field(&buffer) { $0.writeInteger(Int16(truncatingIfNeeded: number)) }
                case .int4, .oid: return PGValueEncoder.field(&buffer) { $0.writeInteger(Int32(truncatingIfNeeded: number)) }
                case .char: return PGValueEncoder.field(&buffer) { $0.writeInteger(UInt8(truncatingIfNeeded: number)) }
                default: break
                }
            }
            PGValueEncoder.write(.integer(number), type: type, binary: binary, into: &buffer)
        case .real(let number):
            if binary, type == .float4 { return PGValueEncoder.field(&buffer) { $0.writeInteger(Float(number).bitPattern) } }
            PGValueEncoder.write(.real(number), type: type, binary: binary, into: &buffer)
        case .text(var text):
            if type == .bool, !binary { text = (text == "1" || text == "t") ? "t" : "f" }
            text.withUTF8 { PGValueEncoder.write(.text(UnsafeRawBufferPointer($0)), type: type, binary: binary, into: &buffer) }
        case .blob(let bytes):
            bytes.withUnsafeBytes { PGValueEncoder.write(.blob($0), type: type, binary: binary, into: &buffer) }
        }
    }
}

/// The usage summary of a gateway query, the text of its NoticeResponse (CONTRACT.md §6): the
/// same facts as the JSON `usage`, never the withheld-group count of an aggregate plan.
enum PGUsageNotice {
    /// nil when there is nothing to report: no query id, or a result withheld because its record
    /// could not be written (no usage).
    static func text(_ response: QueryResponse) -> String? {
        guard !response.usage.queryID.isEmpty else { return nil }
        if response.error?.code == .unavailable, response.usage.seq == 0 { return nil }
        let usage = response.usage
        var text = "sandgate: query \(usage.queryID), \(usage.rows) row(s), \(usage.maskedCells) masked cell(s), cost \(usage.costMicros) micro-\(usage.currency)"
        if let suppressed = usage.suppressedGroups {
            if suppressed > 0 { text += ", \(suppressed) group(s) below the threshold withheld" }
        } else {
            text += ", groups below the threshold are withheld"
        }
        if response.truncated { text += ", truncated by \(response.truncatedBy ?? "max_rows")" }
        // Differential privacy: what was spent, and how far each noisy column may be from the truth.
        if !usage.noise.isEmpty || usage.epsilonMicros > 0 {
            text += "; differential privacy: epsilon \(ResponseFormat.epsilonText(usage.epsilonMicros)) spent"
            if !usage.noise.isEmpty {
                text += ", 95% interval half-widths " + usage.noise.map { "\($0.column) ±\(ResponseFormat.halfWidthText($0.halfWidth))" }.joined(separator: ", ")
            }
        }
        // The receipt (`sandgate usage check-receipt`), as the JSON `usage` carries it.
        if usage.seq > 0 { text += "; receipt: node \(usage.nodeID), seq \(usage.seq), record_hash \(usage.recordHash)" }
        return text
    }
}
