/// Formats usage records for `sandgate usage export`.
public enum UsageExport {
    public enum Format: String, Sendable, CaseIterable {
        case csv
        case jsonl
    }

    /// The CSV header line (RFC 4180, CRLF line ends).
    public static var csvHeader: String { UsageRecord.exportColumns.joined(separator: ",") + "\r\n" }

    /// One CSV line: fields with a comma, quote, CR or LF are quoted, quotes doubled.
    public static func csvLine(_ record: UsageRecord) -> String {
        record.exportFields.map(csvField).joined(separator: ",") + "\r\n"
    }

    public static func csvField(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) else { return field }
        return "\"" + field.replacing("\"", with: "\"\"") + "\""
    }

    /// One JSON line with the export columns plus `sql` and `rewritten_sql`; numbers stay numbers.
    public static func jsonLine(_ record: UsageRecord) -> String {
        let numeric: Set<String> = ["seq", "rows", "cells", "bytes", "masked_cells", "suppressed_groups", "vm_steps", "elapsed_us", "cost_micros"]
        var output = "{"
        let names = UsageRecord.exportColumns + ["sql", "rewritten_sql"]
        let values = record.exportFields + [record.sql, record.rewrittenSQL]
        for (index, (name, value)) in zip(names, values).enumerated() {
            if index > 0 { output += "," }
            JSONText.appendString(name, to: &output)
            output += ":"
            if numeric.contains(name) {
                output += value
            } else if name == "truncated" {
                output += record.truncated ? "true" : "false"
            } else {
                JSONText.appendString(value, to: &output)
            }
        }
        return output + "}\n"
    }
}
