import Foundation
import SandgateLedger
import SandgateSQLite

/// Renders responses as the JSON object of DESIGN.md §5, as CSV and as a readable table.
public enum ResponseFormat {
    /// The §5 response object on one line (no trailing newline). `id` is the request's id as JSON
    /// text (a string literal or a number), echoed when given.
    public static func json(_ response: QueryResponse, id: String? = nil) -> String {
        var output = "{"
        if let id { output += "\"id\":\(id)," }
        switch response.outcome {
        case .success(let result):
            output += "\"ok\":true,\"columns\":["
            for (index, column) in result.columns.enumerated() {
                if index > 0 { output += "," }
                JSONText.appendString(column, to: &output)
            }
            output += "],\"rows\":["
            appendRows(result, to: &output)
            output += "],\"truncated\":\(response.truncated)"
            if let by = response.truncatedBy {
                output += ",\"truncated_by\":"
                JSONText.appendString(by, to: &output)
            }
        case .failure(let error):
            output += "\"ok\":false,\"error\":{\"code\":"
            JSONText.appendString(error.code.rawValue, to: &output)
            output += ",\"message\":"
            JSONText.appendString(error.message, to: &output)
            output += ",\"hint\":"
            JSONText.appendString(error.hint, to: &output)
            output += "}"
        }
        output += ",\"usage\":" + usageJSON(response.usage) + "}"
        return output
    }

    static func usageJSON(_ usage: UsageSummary) -> String {
        var output = "{\"query_id\":"
        JSONText.appendString(usage.queryID, to: &output)
        output += ",\"rows\":\(usage.rows),\"cells\":\(usage.cells),\"bytes\":\(usage.bytes),\"masked_cells\":\(usage.maskedCells)"
        output += ",\"suppressed_groups\":" + (usage.suppressedGroups.map(String.init) ?? "null") + ",\"vm_steps\":\(usage.vmSteps)"
        output += ",\"elapsed_ms\":\(Double(usage.elapsedMicroseconds) / 1000),\"cost_micros\":\(usage.costMicros),\"currency\":"
        JSONText.appendString(usage.currency, to: &output)
        output += ",\"seq\":\(usage.seq),\"node_id\":"
        JSONText.appendString(usage.nodeID, to: &output)
        output += ",\"record_hash\":"
        JSONText.appendString(usage.recordHash, to: &output)
        return output + "}"
    }

    /// Appends `[v,…],[v,…]` straight from the result's byte chunks.
    static func appendRows(_ result: QueryResult, to output: inout String) {
        let width = result.columns.count
        var index = 0
        for row in 0..<result.rowCount {
            output += row == 0 ? "[" : ",["
            for column in 0..<width {
                if column > 0 { output += "," }
                switch result.cell(index) {
                case .null: output += "null"
                case .integer(let value): output += String(value)
                case .real(let value): output += jsonNumber(value)
                case .text(let bytes): JSONText.appendString(bytes: bytes, to: &output)
                case .blob(let bytes):
                    output += "{\"base64\":\""
                    output += base64(bytes)
                    output += "\"}"
                }
                index += 1
            }
            output += "]"
        }
    }

    /// Finite reals as JSON numbers; SQLite's ±Inf (e.g. `1e999`) as the strings "Infinity"/"-Infinity".
    static func jsonNumber(_ value: Double) -> String {
        if value.isFinite { return "\(value)" }
        if value.isNaN { return "null" }
        return value > 0 ? "\"Infinity\"" : "\"-Infinity\""
    }

    static func base64(_ bytes: UnsafeRawBufferPointer) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = UInt32(bytes[index])
            let b1 = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
            let b2 = index + 2 < bytes.count ? UInt32(bytes[index + 2]) : 0
            let triple = b0 << 16 | b1 << 8 | b2
            output.append(alphabet[Int(triple >> 18 & 63)])
            output.append(alphabet[Int(triple >> 12 & 63)])
            output.append(index + 1 < bytes.count ? alphabet[Int(triple >> 6 & 63)] : UInt8(ascii: "="))
            output.append(index + 2 < bytes.count ? alphabet[Int(triple & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Text of one cell for CSV and tables (NULL as empty for CSV, `NULL` for tables).
    static func text(_ value: SQLValue, nullAs: String) -> String {
        switch value {
        case .null: return nullAs
        case .integer(let number): return String(number)
        case .real(let number): return "\(number)"
        case .text(let text): return text
        case .blob(let bytes): return "x'" + bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined() + "'"
        }
    }

    /// RFC 4180 CSV with a header row.
    public static func csv(_ result: QueryResult) -> String {
        csv(columns: result.columns, rows: result.rows)
    }

    public static func csv(columns: [String], rows: [[SQLValue]]) -> String {
        // Released values as they are (a query's data is not rewritten); see CSV.field.
        var output = CSV.line(columns)
        for row in rows {
            output += CSV.line(row.map { text($0, nullAs: "") })
        }
        return output
    }

    /// A boxed, aligned table for terminals (widths count characters; CJK counts double).
    public static func table(_ result: QueryResult) -> String {
        table(columns: result.columns, rows: result.rows)
    }

    public static func table(columns: [String], rows: [[SQLValue]]) -> String {
        let cells = rows.map { row in row.map { text($0, nullAs: "NULL") } }
        var widths = columns.map(displayWidth)
        for row in cells {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], displayWidth(cell)) }
        }
        func line(_ values: [String]) -> String {
            "| " + zip(values, widths).map { $0 + String(repeating: " ", count: $1 - displayWidth($0)) }.joined(separator: " | ") + " |\n"
        }
        let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+\n"
        var output = rule + line(columns) + rule
        for row in cells { output += line(row) }
        return output + rule
    }

    static func displayWidth(_ text: String) -> Int {
        text.unicodeScalars.reduce(0) { width, scalar in
            let value = scalar.value
            let wide = (0x1100...0x115F).contains(value) || (0x2E80...0xA4CF).contains(value)
                || (0xAC00...0xD7A3).contains(value) || (0xF900...0xFAFF).contains(value) || (0xFF00...0xFF60).contains(value)
            return width + (wide ? 2 : 1)
        }
    }

    /// One line summarising usage, for the table format.
    public static func usageLine(_ response: QueryResponse) -> String {
        let usage = response.usage
        var line = "\(usage.rows) row(s), \(usage.maskedCells) masked cell(s), \(usage.vmSteps) VM steps, \(String(format: "%.2f", Double(usage.elapsedMicroseconds) / 1000)) ms, cost \(usage.costMicros) micro-\(usage.currency), query \(usage.queryID)"
        if usage.suppressedGroups == nil { line += ", groups below the threshold are withheld" }
        if response.truncated { line += " — truncated by \(response.truncatedBy ?? "max_rows")" }
        return line
    }
}
