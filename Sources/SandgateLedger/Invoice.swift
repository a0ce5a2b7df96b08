import SandgateSupport

/// One invoice line: what one consumer used of one dataset for one purpose in a period.
public struct InvoiceLine: Sendable, Equatable {
    public let consumer: String
    public let dataset: String
    /// The purpose the queries declared ("" for queries without one, where the dataset allows that).
    public var purpose: String = ""
    public let currency: String
    public var queries: Int64 = 0
    public var refused: Int64 = 0
    public var failed: Int64 = 0
    public var rows: Int64 = 0
    public var vmSteps: Int64 = 0
    public var costMicros: Int64 = 0
    /// Privacy budget spent (micro-ε, issue 10), beside the money.
    public var epsilonMicros: Int64 = 0

    public static let columns = ["consumer", "dataset", "purpose", "currency", "queries", "refused", "failed", "rows", "vm_steps", "cost_micros",
                                 "epsilon_micros"]

    var fields: [String] {
        [consumer, dataset, purpose, currency, String(queries), String(refused), String(failed), String(rows), String(vmSteps), String(costMicros),
         String(epsilonMicros)]
    }
}

/// Sums usage records into invoice lines, one per consumer × dataset × purpose × currency, in name order.
public enum Invoice {
    /// Lines for `records`; with `datasets`, only for those datasets (the ones the policies
    /// publish): a record of anything else is audit evidence, never an invoice line.
    public static func lines(from records: [UsageRecord], datasets: Set<String>? = nil) -> [InvoiceLine] {
        var lines: [String: InvoiceLine] = [:]
        for record in records where !record.dataset.isEmpty && datasets?.contains(record.dataset) != false {
            let key = "\(record.consumer)\u{0}\(record.dataset)\u{0}\(record.purpose)\u{0}\(record.currency)"
            var line = lines[key] ?? InvoiceLine(consumer: record.consumer, dataset: record.dataset, purpose: record.purpose, currency: record.currency)
            switch record.status {
            case .ok: line.queries += 1
            case .refused: line.refused += 1
            case .failed: line.failed += 1
            }
            line.rows += record.rows
            line.vmSteps += record.vmSteps
            line.costMicros = line.costMicros.saturatingAdding(record.costMicros)
            line.epsilonMicros = line.epsilonMicros.saturatingAdding(record.epsilonMicros)
            lines[key] = line
        }
        return lines.values.sorted { ($0.consumer, $0.dataset, $0.purpose, $0.currency) < ($1.consumer, $1.dataset, $1.purpose, $1.currency) }
    }

    public static func csv(_ lines: [InvoiceLine]) -> String {
        InvoiceLine.columns.joined(separator: ",") + "\r\n"
            + lines.map { CSV.line($0.fields, spreadsheetSafe: true) }.joined()
    }

    /// `{"from":…,"to":…,"lines":[{…}]}`.
    public static func json(_ lines: [InvoiceLine], from: String, to: String) -> String {
        JSONWriter.object { json in
            json.field("from", from)
            json.field("to", to)
            json.array("lines") { json in lines.forEach { write($0, to: &json) } }
        } + "\n"
    }

    /// One JSON object per line (the items of `json`'s `lines`).
    public static func jsonLines(_ lines: [InvoiceLine]) -> String {
        lines.map { line in
            var json = JSONWriter()
            write(line, to: &json)
            return json.text + "\n"
        }.joined()
    }

    static func write(_ line: InvoiceLine, to json: inout JSONWriter) {
        json.object { json in
            json.field("consumer", line.consumer)
            json.field("dataset", line.dataset)
            json.field("purpose", line.purpose)
            json.field("currency", line.currency)
            json.field("queries", line.queries)
            json.field("refused", line.refused)
            json.field("failed", line.failed)
            json.field("rows", line.rows)
            json.field("vm_steps", line.vmSteps)
            json.field("cost_micros", line.costMicros)
            json.field("epsilon_micros", line.epsilonMicros)
        }
    }
}
