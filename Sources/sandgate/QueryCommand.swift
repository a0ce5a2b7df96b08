import ArgumentParser
import Foundation
import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateServer
import SandgateSQLite
import SandgateSupport

/// `--dataset`, `--as` and the SQL text, shared by `query` and `explain`.
struct QueryTarget: ParsableArguments {
    @Option(help: "The dataset to query.")
    var dataset: String

    @Option(name: .customLong("as"), help: "The consumer whose grant applies.")
    var consumer: String

    @Option(help: "What the query is for (one of the purposes `describe` lists; required where the dataset lists purposes).")
    var purpose: String?

    @Argument(help: "The SQL text (one SELECT statement).")
    var sql: String

    var request: QueryRequest { QueryRequest(consumer: consumer, dataset: dataset, sql: sql, purpose: purpose) }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "Run one SQL query as a consumer.")

    @OptionGroup var common: CommonOptions

    @OptionGroup var target: QueryTarget

    @Option(help: "Output format: table, csv, jsonl (one object per row) or json (the response object).")
    var format: OutputFormat = .table

    @Option(help: "Query a running gateway at HOST:PORT instead (the key is read from SANDGATE_KEY).")
    var connect: String?

    var dataset: String { target.dataset }
    var consumer: String { target.consumer }
    var sql: String { target.sql }

    func validate() throws {
        try format.require(in: [.table, .csv, .jsonl, .json])
        if let connect {
            guard Address(connect) != nil else { throw ValidationError("--connect must be HOST:PORT") }
            guard ProcessInfo.processInfo.environment["SANDGATE_KEY"]?.isEmpty == false else {
                throw ValidationError("--connect needs the consumer's key in SANDGATE_KEY")
            }
        }
    }

    func run() throws {
        if let connect, let address = Address(connect) {
            try runRemote(address)
            return
        }
        let gateway = try common.gateway()
        let response = gateway.run(target.request)
        // Waits for the checkpoint after this record, so the process never exits with its tail unanchored.
        gateway.ledger.close()
        switch format {
        case .json:
            try writeOut(ResponseFormat.json(response) + "\n")
            if let error = response.error { throw Failure("\(error.code.rawValue): \(error.message)\(error.hint.isEmpty ? "" : " (hint: \(error.hint))")") }
        case .csv, .jsonl, .table:
            guard let result = response.result else {
                let error = response.error ?? GatewayError(.internal, "no result")
                throw Failure("\(error.code.rawValue): \(error.message)\(error.hint.isEmpty ? "" : " (hint: \(error.hint))")")
            }
            try Self.write(columns: result.columns, rows: result.rows, format: format, summary: ResponseFormat.usageLine(response))
        }
    }
}

extension QueryCommand {
    /// The same query through a running gateway's JSON-lines protocol, with the same output.
    func runRemote(_ address: Address) throws {
        let key = ProcessInfo.processInfo.environment["SANDGATE_KEY"] ?? ""
        let line: String
        do {
            let client = try LineClient(host: address.host, port: address.port)
            let auth = try client.request(JSONWriter.object { json in
                json.field("op", "auth")
                json.field("consumer", consumer)
                json.field("key", key)
            })
            guard auth.contains("\"ok\":true") else {
                throw Failure("auth_failed: the gateway refused consumer \(consumer)")
            }
            line = try client.request(JSONWriter.object { json in
                json.field("id", 1)
                json.field("op", "query")
                json.field("dataset", dataset)
                json.field("sql", sql)
                if let purpose = target.purpose { json.field("purpose", purpose) }
            })
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("unavailable: \(error)")
        }
        // sandgate's own JSON reader: Foundation's rounds some doubles on Linux (the last digits
        // of an avg differed from the local command's).
        guard case .object(let object)? = JSONValue.parse(text: line) else {
            throw Failure("internal: the gateway sent an unreadable response")
        }
        if format == .json {
            try writeOut(line + "\n")
        }
        guard object["ok"] == .bool(true) else {
            // The same text as the local command: code, message and hint.
            let error = object["error"]?.fields ?? [:]
            let hint = error["hint"]?.string ?? ""
            throw Failure("\(error["code"]?.string ?? "internal"): \(error["message"]?.string ?? "")\(hint.isEmpty ? "" : " (hint: \(hint))")")
        }
        guard format != .json else { return }
        let columns = object["columns"]?.items.compactMap(\.string) ?? []
        let types = object["types"]?.items.compactMap(\.string) ?? []
        let rows = (object["rows"]?.items ?? []).map { row in
            row.items.enumerated().map { Self.value($0.element, type: $0.offset < types.count ? types[$0.offset] : nil) }
        }
        let usage = object["usage"]?.fields ?? [:]
        func number(_ key: String) -> Int64 {
            switch usage[key] {
            case .integer(let value)?: value
            case .real(let value)?: Int64(value)
            default: 0
            }
        }
        var elapsed = 0.0
        if case .real(let value)? = usage["elapsed_ms"] { elapsed = value } else { elapsed = Double(number("elapsed_ms")) }
        var figures = UsageSummary(
            queryID: usage["query_id"]?.string ?? "", rows: Int(number("rows")), cells: Int(number("cells")), bytes: Int(number("bytes")),
            maskedCells: Int(number("masked_cells")), suppressedGroups: usage["suppressed_groups"] == .null ? nil : Int(number("suppressed_groups")),
            vmSteps: number("vm_steps"), elapsedMicroseconds: Int64(elapsed * 1000),
            costMicros: number("cost_micros"), currency: usage["currency"]?.string ?? "", seq: number("seq"))
        // A private answer's ε and 95% half-widths (issue 10), in the order of the columns.
        func decimal(_ value: JSONValue?) -> Double? {
            switch value {
            case .integer(let number)?: Double(number)
            case .real(let number)?: number
            default: nil
            }
        }
        if let epsilon = decimal(usage["epsilon"]) { figures.epsilonMicros = Int64((epsilon * 1_000_000).rounded()) }
        let noise = usage["noise"]?.fields ?? [:]
        figures.noise = columns.compactMap { column in decimal(noise[column]).map { NoiseInterval(column: column, halfWidth: $0) } }
        let truncatedBy = object["truncated"] == .bool(true) ? object["truncated_by"]?.string ?? "max_rows" : nil
        let summary = ResponseFormat.usageLine(figures, truncatedBy: truncatedBy)
        try Self.write(columns: columns, rows: rows, format: format, summary: summary)
    }

    /// The rows as a table (usage line after it), or as CSV or JSON lines (usage line on stderr,
    /// so that standard output is only data).
    static func write(columns: [String], rows: [[SQLValue]], format: OutputFormat, summary: String) throws {
        switch format {
        case .table:
            try writeOut(ResponseFormat.table(columns: columns, rows: rows) + summary + "\n")
            return
        case .csv:
            try writeOut(ResponseFormat.csv(columns: columns, rows: rows))
        default:
            try writeOut(jsonLines(columns: columns, rows: rows))
        }
        writeError(summary + "\n")
    }

    /// One JSON object per row, keyed by column name (a repeated name gets `_2`, `_3`, …).
    static func jsonLines(columns: [String], rows: [[SQLValue]]) -> String {
        var keys: [String] = []
        for column in columns {
            var key = column, suffix = 2
            while keys.contains(key) { key = "\(column)_\(suffix)"; suffix += 1 }
            keys.append(key)
        }
        var output = ""
        for row in rows {
            output += "{" + zip(keys, row).map { key, value in
                let json: String = switch value {
                case .null: "null"
                case .integer(let number): String(number)
                case .real(let number): number.isFinite ? "\(number)" : JSONText.quoted(number > 0 ? "Infinity" : number < 0 ? "-Infinity" : "NaN")
                case .text(let text): JSONText.quoted(text)
                case .blob(let bytes): "{\"base64\":\(JSONText.quoted(Data(bytes).base64EncodedString()))}"
                }
                return JSONText.quoted(key) + ":" + json
            }.joined(separator: ",") + "}\n"
        }
        return output
    }

    /// A JSON value as the SQL value the local command would print (`types` tells a real 2.0
    /// from the integer 2).
    static func value(_ json: JSONValue, type: String?) -> SQLValue {
        switch json {
        case .integer(let value): return type == "real" ? .real(Double(value)) : .integer(value)
        case .real(let value): return .real(value)
        case .string(let value) where type == "real" && (value == "Infinity" || value == "-Infinity"): return .real(value == "Infinity" ? .infinity : -.infinity)
        case .string(let value): return .text(value)
        case .bool(let value): return .integer(value ? 1 : 0)
        case .object(let fields):
            if case .string(let encoded)? = fields["base64"], let data = Data(base64Encoded: encoded) { return .blob(Array(data)) }
            return .null
        default: return .null
        }
    }
}

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show the SQL that would run, the rules that apply and a price quote; runs nothing, charges nothing.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @OptionGroup var common: CommonOptions

    @OptionGroup var target: QueryTarget

    @Option(help: "Output format: text or json.")
    var format: Format = .text

    func run() throws {
        let gateway = try common.gateway()
        let outcome = gateway.explain(target.request)
        if format == .json { try writeOut(ResponseFormat.json(outcome) + "\n") }
        switch outcome {
        case .success(let explanation):
            if format == .text { try writeOut(ResponseFormat.text(explanation)) }
        case .failure(let error):
            throw Failure("\(error.code.rawValue): \(error.message)\(error.hint.isEmpty ? "" : " (hint: \(error.hint))")")
        }
    }
}

struct DescribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show tables and columns as a consumer sees them.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Only this dataset.")
    var dataset: String?

    @Option(name: .customLong("as"), help: "Describe as this consumer (its grants and limits).")
    var consumer: String?

    @Flag(help: "List the SQL functions a query may call (the allowlist the gateway enforces).")
    var functions = false

    func run() throws {
        if functions { return try writeOut(FunctionCatalogue.text) }
        let gateway = try common.gateway()
        var names = dataset.map { [$0] } ?? gateway.datasetNames
        if dataset == nil, let consumer {
            let grants = gateway.consumers.consumers[consumer]?.grants ?? [:]
            names = names.filter { grants[$0] != nil }
        }
        var output = ""
        for name in names {
            switch gateway.describe(dataset: name, consumer: consumer) {
            case .failure(let error):
                throw Failure("\(error.code.rawValue): \(error.message)")
            case .success(let description):
                output += "dataset \(description.dataset)"
                if !description.description.isEmpty { output += " — \(description.description)" }
                if !description.owner.isEmpty { output += " (owner: \(description.owner))" }
                output += "\n"
                let limits = description.limits
                output += "  limits: max_rows \(limits.maxRows), timeout_ms \(limits.timeoutMilliseconds), max_vm_steps \(limits.maxVMSteps), max_result_bytes \(limits.maxResultBytes)\n"
                let pricing = description.pricing
                output += "  pricing (micro-\(pricing.currency)): per_query \(pricing.perQuery), per_row \(pricing.perRow), per_million_vm_steps \(pricing.perMillionVMSteps), per_mib \(pricing.perMiB)\n"
                if description.purposes.isEmpty {
                    output += description.purposeRequired ? "  purposes: none granted (every query needs one)\n" : "  purposes: optional (none listed)\n"
                } else {
                    output += "  purposes (\(description.purposeRequired ? "required" : "optional")):\n"
                    for purpose in description.purposes {
                        output += "    \(purpose.name)\(purpose.description.isEmpty ? "" : " — \(purpose.description)")\n"
                    }
                }
                if description.tokens == TokenScope.perConsumer.rawValue { output += "  tokens: per consumer (join keys and hash values are keyed for each consumer)\n" }
                for table in description.tables {
                    output += "  table \(table.name) (access: \(table.access)"
                    if let size = table.minGroupSize { output += ", min_group_size \(size)" }
                    if table.rowFilter { output += ", rows filtered by policy" }
                    if let privacy = table.privacy {
                        output += ", differentially private: epsilon \(PrivacyBudget.epsilonText(privacy.epsilonPerQueryMicros)) per query, budget \(PrivacyBudget.epsilonText(privacy.budgetMicros)) per \(privacy.period == .total ? "consumer" : privacy.period.rawValue), delta \(privacy.delta), at most \(privacy.maxRowsPerUnit) rows in \(privacy.maxGroupsPerUnit) groups per unit"
                    }
                    output += ")\n"
                    for column in table.columns {
                        output += "    \(column.name)  \(column.type.isEmpty ? "(no declared type)" : column.type)  \(column.role)"
                        if let summary = column.maskSummary { output += "  masked: \(summary)" }
                        if !column.aggregates.isEmpty { output += "  aggregates: \(column.aggregates.joined(separator: ", "))" }
                        if let bounds = column.bounds { output += "  bounds: [\(bounds.lower), \(bounds.upper)]" }
                        output += "\n"
                    }
                }
            }
        }
        if names.isEmpty { output = "no datasets available\n" }
        try writeOut(output)
    }
}
