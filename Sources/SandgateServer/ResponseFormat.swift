import Foundation
import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateSQLite

/// Renders the core's typed responses as the JSON objects of DESIGN.md §5, as CSV and as a
/// readable table: the encoding belongs to the front ends, not to the core.
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
            output += "],\"types\":["
            for (index, type) in result.columnTypes.enumerated() {
                if index > 0 { output += "," }
                output += "\"" + type.kind.rawValue + "\""
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
            // No empty `hint` field: a hint is there when it says something (issue 11).
            if !error.hint.isEmpty {
                output += ",\"hint\":"
                JSONText.appendString(error.hint, to: &output)
            }
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
        // Private aggregates (issue 10): ε spent, and the 95% half-width of each noisy column.
        if !usage.noise.isEmpty || usage.epsilonMicros > 0 {
            output += ",\"epsilon\":" + epsilonText(usage.epsilonMicros) + ",\"noise\":{"
            output += usage.noise.map { JSONText.quoted($0.column) + ":" + halfWidthText($0.halfWidth) }.joined(separator: ",")
            output += "}"
        }
        return output + "}"
    }

    /// micro-ε as a JSON number (`500000` → `0.5`), exact.
    public static func epsilonText(_ micros: Int64) -> String { PrivacyBudget.epsilonText(micros) }

    /// A half-width as a JSON number with at most 6 decimal places.
    public static func halfWidthText(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        var text = String(format: "%.6f", value)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    /// Appends `[v,…],[v,…]` straight from the result's byte chunks.
    static func appendRows(_ result: QueryResult, to output: inout String) {
        let width = result.columns.count
        for row in 0..<result.rowCount {
            output += row == 0 ? "[" : ",["
            for column in 0..<width {
                if column > 0 { output += "," }
                switch result.cell(row: row, column: column) {
                case .null: output += "null"
                case .integer(let value): output += String(value)
                case .real(let value): output += jsonNumber(value)
                case .text(let bytes): JSONText.appendString(bytes: bytes, to: &output)
                case .blob(let bytes):
                    output += "{\"base64\":\""
                    output += base64(bytes)
                    output += "\"}"
                }
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
        case .blob(let bytes): return "x'" + Hex.encode(bytes) + "'"
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
        usageLine(response.usage, truncatedBy: response.truncated ? response.truncatedBy ?? "max_rows" : nil)
    }

    /// The same line from the figures alone (the remote command rebuilds them from the JSON).
    public static func usageLine(_ usage: UsageSummary, truncatedBy: String?) -> String {
        var line = "\(usage.rows) row(s), \(usage.maskedCells) masked cell(s), \(usage.vmSteps) VM steps, \(String(format: "%.2f", Double(usage.elapsedMicroseconds) / 1000)) ms, cost \(usage.costMicros) micro-\(usage.currency), query \(usage.queryID)"
        if usage.suppressedGroups == nil { line += ", groups below the threshold are withheld" }
        if let truncatedBy { line += " — truncated by \(truncatedBy)" }
        if !usage.noise.isEmpty || usage.epsilonMicros > 0 {
            line += "; epsilon \(epsilonText(usage.epsilonMicros)) spent"
            if !usage.noise.isEmpty { line += ", 95% ± " + usage.noise.map { "\($0.column) \(halfWidthText($0.halfWidth))" }.joined(separator: ", ") }
        }
        return line
    }
}

extension ResponseFormat {
    /// A dataset description as JSON (the `describe` op).
    public static func json(_ description: DatasetDescription) -> String {
        var output = "{\"dataset\":\(JSONText.quoted(description.dataset)),\"description\":\(JSONText.quoted(description.description)),\"owner\":\(JSONText.quoted(description.owner)),\"tables\":["
        output += description.tables.map { table in
            var text = "{\"name\":\(JSONText.quoted(table.name)),\"access\":\(JSONText.quoted(table.access)),\"row_filter\":\(table.rowFilter)"
            if let size = table.minGroupSize { text += ",\"min_group_size\":\(size)" }
            if let privacy = table.privacy {
                text += ",\"privacy\":{\"epsilon_per_query\":\(epsilonText(privacy.epsilonPerQueryMicros)),\"delta\":\(jsonNumber(privacy.delta)),\"budget\":{\"epsilon\":\(epsilonText(privacy.budgetMicros)),\"period\":\(JSONText.quoted(privacy.period.rawValue))},\"max_groups_per_unit\":\(privacy.maxGroupsPerUnit),\"max_rows_per_unit\":\(privacy.maxRowsPerUnit)}"
            }
            text += ",\"columns\":[" + table.columns.map { column in
                var item = "{\"name\":\(JSONText.quoted(column.name)),\"role\":\(JSONText.quoted(column.role)),\"type\":\(JSONText.quoted(column.type))"
                if let mask = column.mask { item += ",\"mask\":\(JSONText.quoted(mask))" }
                if let summary = column.maskSummary { item += ",\"masked\":\(JSONText.quoted(summary))" }
                if !column.aggregates.isEmpty { item += ",\"aggregates\":[" + column.aggregates.map(JSONText.quoted).joined(separator: ",") + "]" }
                if let bounds = column.bounds { item += ",\"bounds\":[\(jsonNumber(bounds.lower)),\(jsonNumber(bounds.upper))]" }
                return item + "}"
            }.joined(separator: ",") + "]}"
            return text
        }.joined(separator: ",")
        let limits = description.limits, pricing = description.pricing
        output += "],\"limits\":{\"max_rows\":\(limits.maxRows),\"timeout_ms\":\(limits.timeoutMilliseconds),\"max_vm_steps\":\(limits.maxVMSteps),\"max_result_bytes\":\(limits.maxResultBytes)}"
        output += ",\"pricing\":{\"currency\":\(JSONText.quoted(pricing.currency)),\"per_query\":\(pricing.perQuery),\"per_row\":\(pricing.perRow),\"per_million_vm_steps\":\(pricing.perMillionVMSteps),\"per_mib\":\(pricing.perMiB)}"
        output += ",\"purposes\":[" + description.purposes.map {
            "{\"name\":\(JSONText.quoted($0.name)),\"description\":\(JSONText.quoted($0.description))}"
        }.joined(separator: ",") + "],\"purpose_required\":\(description.purposeRequired),\"tokens\":\(JSONText.quoted(description.tokens))}"
        return output
    }

    /// An error object `{"id":…,"ok":false,"error":{…}}` without usage (protocol-level errors).
    public static func error(_ error: GatewayError, id: String? = nil) -> String {
        var output = "{"
        if let id { output += "\"id\":\(id)," }
        output += "\"ok\":false,\"error\":" + error.jsonObject + "}"
        return output
    }
}

extension ResponseFormat {
    /// The explanation as one JSON object (`{"ok":true,"sql":…}`), or an error object.
    public static func json(_ outcome: Result<Explanation, GatewayError>, id: String? = nil) -> String {
        var output = "{"
        if let id { output += "\"id\":\(id)," }
        switch outcome {
        case .failure(let error):
            output += "\"ok\":false,\"error\":" + error.jsonObject
        case .success(let explanation):
            output += "\"ok\":true,\"sql\":" + JSONText.quoted(explanation.sql)
            output += ",\"rules\":[" + explanation.rules.map(JSONText.quoted).joined(separator: ",") + "]"
            let limits = explanation.limits
            output += ",\"limits\":{\"max_rows\":\(limits.maxRows),\"timeout_ms\":\(limits.timeoutMilliseconds),\"max_vm_steps\":\(limits.maxVMSteps),\"max_result_bytes\":\(limits.maxResultBytes)}"
            let pricing = explanation.pricing
            output += ",\"quote\":{\"currency\":\(JSONText.quoted(pricing.currency)),\"per_query\":\(pricing.perQuery),\"per_row\":\(pricing.perRow),\"per_million_vm_steps\":\(pricing.perMillionVMSteps),\"per_mib\":\(pricing.perMiB),\"min_cost_micros\":\(explanation.minimumCostMicros),\"max_cost_micros\":\(explanation.maximumCostMicros)}"
            if let privacy = explanation.privacy {
                output += ",\"privacy\":{\"epsilon\":\(epsilonText(privacy.epsilonMicros)),\"epsilon_per_query\":\(epsilonText(privacy.epsilonPerQueryMicros))"
                if let budget = privacy.budget {
                    output += ",\"epsilon_budget\":\(epsilonText(budget.budgetMicros)),\"epsilon_left\":\(epsilonText(budget.remainingMicros))"
                }
                output += ",\"threshold\":\(privacy.threshold),\"intervals\":{"
                output += privacy.intervals.map { JSONText.quoted($0.column) + ":" + halfWidthText($0.halfWidth) }.joined(separator: ",") + "}}"
            }
        }
        return output + "}"
    }

    /// The explanation for people.
    public static func text(_ explanation: Explanation) -> String {
        var output = "SQL that would run:\n  \(explanation.sql)\nRules:\n"
        for rule in explanation.rules { output += "  - \(rule)\n" }
        let pricing = explanation.pricing
        output += "Price (micro-\(pricing.currency)): \(pricing.perQuery) per query + \(pricing.perRow) per row + \(pricing.perMillionVMSteps) per started million VM steps + \(pricing.perMiB) per started MiB of results\n"
        output += "  quote: from \(explanation.minimumCostMicros) to at most \(explanation.maximumCostMicros); nothing was run or charged\n"
        return output
    }
}

extension GatewayError {
    /// `{"code":…,"message":…,"hint":…}`; `hint` only when there is one.
    var jsonObject: String {
        "{\"code\":\(JSONText.quoted(code.rawValue)),\"message\":\(JSONText.quoted(message))" + (hint.isEmpty ? "" : ",\"hint\":\(JSONText.quoted(hint))") + "}"
    }
}
