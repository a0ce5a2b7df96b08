import SandgateSupport

/// Formats usage records for `sandgate usage export`.
public enum UsageExport {
    public enum Format: String, Sendable, CaseIterable {
        case csv
        case jsonl
    }

    /// The CSV header line (RFC 4180, CRLF line ends).
    public static var csvHeader: String { UsageRecord.exportColumns.joined(separator: ",") + "\r\n" }

    /// One CSV line, spreadsheet-safe (`CSV.field`): ledger text comes from clients (a failed
    /// login's name, SQL), so a field that a spreadsheet would run as a formula gets a leading `'`.
    public static func csvLine(_ record: UsageRecord) -> String {
        CSV.line(record.exportFields, spreadsheetSafe: true)
    }

    /// One JSON line with the export columns plus `sql` and `rewritten_sql`; numbers stay numbers.
    public static func jsonLine(_ record: UsageRecord) -> String {
        JSONWriter.object { write(record, to: &$0) } + "\n"
    }

    /// The export object's members (a receipt's record adds its own after them).
    static func write(_ record: UsageRecord, to json: inout JSONWriter) {
        let names = UsageRecord.exportColumns + ["sql", "rewritten_sql"]
        let values = record.exportFields + [record.sql, record.rewrittenSQL]
        for (name, value) in zip(names, values) {
            if UsageRecord.numericExportColumns.contains(name) {
                json.field(name, raw: value)
            } else if name == "truncated" {
                json.field(name, record.truncated)
            } else {
                json.field(name, value)
            }
        }
    }
}
