import Foundation
import SandgateCore
import SandgatePolicy
import SandgateSQLite
import SandgateSupport

/// Renders the core's typed responses as the JSON objects of DESIGN.md §5, as CSV and as a
/// readable table: the encoding belongs to the front ends, not to the core.
public enum ResponseFormat {
    /// The §5 response object on one line (no trailing newline). `id` is the request's id as JSON
    /// text (a string literal or a number), echoed when given.
    public static func json(_ response: QueryResponse, id: String? = nil) -> String {
        var json = JSONWriter(reservingCapacity: 256)
        json.object { json in
            if let id { json.field("id", raw: id) }
            switch response.outcome {
            case .success(let result):
                json.field("ok", true)
                json.field("columns", strings: result.columns)
                json.field("types", strings: result.columnTypes.map(\.kind.rawValue))
                json.array("rows") { writeRows(result, to: &$0) }
                json.field("truncated", response.truncated)
                if let by = response.truncatedBy { json.field("truncated_by", by) }
            case .failure(let error):
                json.field("ok", false)
                json.key("error")
                error.write(to: &json)
            }
            json.key("usage")
            write(response.usage, to: &json)
        }
        return json.text
    }

    static func write(_ usage: UsageSummary, to json: inout JSONWriter) {
        json.object { json in
            json.field("query_id", usage.queryID)
            json.field("rows", usage.rows)
            json.field("cells", usage.cells)
            json.field("bytes", usage.bytes)
            json.field("masked_cells", usage.maskedCells)
            json.field("suppressed_groups", usage.suppressedGroups)
            json.field("vm_steps", usage.vmSteps)
            json.field("elapsed_ms", raw: "\(Double(usage.elapsedMicroseconds) / 1000)")
            json.field("cost_micros", usage.costMicros)
            json.field("currency", usage.currency)
            json.field("seq", usage.seq)
            json.field("node_id", usage.nodeID)
            json.field("record_hash", usage.recordHash)
            // Private aggregates (issue 10): ε spent, and the 95% half-width of each noisy column.
            if !usage.noise.isEmpty || usage.epsilonMicros > 0 {
                json.field("epsilon", raw: epsilonText(usage.epsilonMicros))
                json.object("noise") { json in
                    for noise in usage.noise { json.field(noise.column, raw: halfWidthText(noise.halfWidth)) }
                }
            }
        }
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

    /// Writes the rows `[v,…]` straight from the result's byte chunks.
    static func writeRows(_ result: QueryResult, to json: inout JSONWriter) {
        let width = result.columns.count
        for row in 0..<result.rowCount {
            json.array { json in
                for column in 0..<width {
                    switch result.cell(row: row, column: column) {
                    case .null: json.null()
                    case .integer(let value): json.number(value)
                    case .real(let value): json.raw(jsonNumber(value))
                    case .text(let bytes): json.string(bytes: bytes)
                    case .blob(let bytes): json.object { $0.field("base64", Base64.encode(bytes)) }
                    }
                }
            }
        }
    }

    /// Finite reals as JSON numbers; SQLite's ±Inf (e.g. `1e999`) as the strings "Infinity"/"-Infinity".
    static func jsonNumber(_ value: Double) -> String {
        if value.isFinite { return "\(value)" }
        if value.isNaN { return "null" }
        return value > 0 ? "\"Infinity\"" : "\"-Infinity\""
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
        JSONWriter.object { json in
            json.field("dataset", description.dataset)
            json.field("description", description.description)
            json.field("owner", description.owner)
            json.array("tables") { json in
                for table in description.tables { write(table, to: &json) }
            }
            json.key("limits")
            write(description.limits, to: &json)
            let pricing = description.pricing
            json.object("pricing") { write(pricing, to: &$0) }
            json.array("purposes") { json in
                for purpose in description.purposes {
                    json.object { json in
                        json.field("name", purpose.name)
                        json.field("description", purpose.description)
                    }
                }
            }
            json.field("purpose_required", description.purposeRequired)
            json.field("tokens", description.tokens)
        }
    }

    private static func write(_ table: DatasetDescription.Table, to json: inout JSONWriter) {
        json.object { json in
            json.field("name", table.name)
            json.field("access", table.access)
            json.field("row_filter", table.rowFilter)
            if let size = table.minGroupSize { json.field("min_group_size", size) }
            if let privacy = table.privacy {
                json.object("privacy") { json in
                    json.field("epsilon_per_query", raw: epsilonText(privacy.epsilonPerQueryMicros))
                    json.field("delta", raw: jsonNumber(privacy.delta))
                    json.object("budget") { json in
                        json.field("epsilon", raw: epsilonText(privacy.budgetMicros))
                        json.field("period", privacy.period.rawValue)
                    }
                    json.field("max_groups_per_unit", privacy.maxGroupsPerUnit)
                    json.field("max_rows_per_unit", privacy.maxRowsPerUnit)
                }
            }
            json.array("columns") { json in
                for column in table.columns {
                    json.object { json in
                        json.field("name", column.name)
                        json.field("role", column.role)
                        json.field("type", column.type)
                        if let mask = column.mask { json.field("mask", mask) }
                        if let summary = column.maskSummary { json.field("masked", summary) }
                        if !column.aggregates.isEmpty { json.field("aggregates", strings: column.aggregates) }
                        if let bounds = column.bounds {
                            json.array("bounds") { json in
                                json.raw(jsonNumber(bounds.lower))
                                json.raw(jsonNumber(bounds.upper))
                            }
                        }
                    }
                }
            }
        }
    }

    private static func write(_ limits: DatasetLimits, to json: inout JSONWriter) {
        json.object { json in
            json.field("max_rows", limits.maxRows)
            json.field("timeout_ms", limits.timeoutMilliseconds)
            json.field("max_vm_steps", limits.maxVMSteps)
            json.field("max_result_bytes", limits.maxResultBytes)
        }
    }

    /// The price list's members (inside `pricing` or `quote`).
    private static func write(_ pricing: Pricing, to json: inout JSONWriter) {
        json.field("currency", pricing.currency)
        json.field("per_query", pricing.perQuery)
        json.field("per_row", pricing.perRow)
        json.field("per_million_vm_steps", pricing.perMillionVMSteps)
        json.field("per_mib", pricing.perMiB)
    }

    /// An error object `{"id":…,"ok":false,"error":{…}}` without usage (protocol-level errors).
    public static func error(_ error: GatewayError, id: String? = nil) -> String {
        JSONWriter.object { json in
            if let id { json.field("id", raw: id) }
            json.field("ok", false)
            json.key("error")
            error.write(to: &json)
        }
    }
}

extension ResponseFormat {
    /// The explanation as one JSON object (`{"ok":true,"sql":…}`), or an error object.
    public static func json(_ outcome: Result<Explanation, GatewayError>, id: String? = nil) -> String {
        JSONWriter.object { json in
            if let id { json.field("id", raw: id) }
            switch outcome {
            case .failure(let error):
                json.field("ok", false)
                json.key("error")
                error.write(to: &json)
            case .success(let explanation):
                json.field("ok", true)
                json.field("sql", explanation.sql)
                json.field("rules", strings: explanation.rules)
                json.key("limits")
                write(explanation.limits, to: &json)
                json.object("quote") { json in
                    write(explanation.pricing, to: &json)
                    json.field("min_cost_micros", explanation.minimumCostMicros)
                    json.field("max_cost_micros", explanation.maximumCostMicros)
                }
                if let privacy = explanation.privacy { write(privacy, to: &json) }
            }
        }
    }

    private static func write(_ privacy: PrivacyExplanation, to json: inout JSONWriter) {
        json.object("privacy") { json in
            json.field("epsilon", raw: epsilonText(privacy.epsilonMicros))
            json.field("epsilon_per_query", raw: epsilonText(privacy.epsilonPerQueryMicros))
            if let budget = privacy.budget {
                json.field("epsilon_budget", raw: epsilonText(budget.budgetMicros))
                json.field("epsilon_left", raw: epsilonText(budget.remainingMicros))
            }
            json.field("threshold", privacy.threshold)
            json.object("intervals") { json in
                for interval in privacy.intervals { json.field(interval.column, raw: halfWidthText(interval.halfWidth)) }
            }
        }
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
    /// `{"code":…,"message":…,"hint":…}`; `hint` only when there is one (issue 11).
    func write(to json: inout JSONWriter) {
        json.object { json in
            json.field("code", code.rawValue)
            json.field("message", message)
            if !hint.isEmpty { json.field("hint", hint) }
        }
    }
}
