import ArgumentParser
import Foundation
import SandgateCore
import SandgatePolicy

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "Run one SQL query as a consumer.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, csv }

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset to query.")
    var dataset: String

    @Option(name: .customLong("as"), help: "The consumer whose grant applies.")
    var consumer: String

    @Option(help: "Output format: table, json or csv.")
    var format: Format = .table

    @Argument(help: "The SQL text (one SELECT statement).")
    var sql: String

    func run() throws {
        let gateway = try common.gateway()
        let response = gateway.run(QueryRequest(consumer: consumer, dataset: dataset, sql: sql))
        switch format {
        case .json:
            writeOut(ResponseFormat.json(response) + "\n")
            if let error = response.error { throw Failure("\(error.code.rawValue): \(error.message)") }
        case .csv, .table:
            guard let result = response.result else {
                let error = response.error ?? GatewayError(.internal, "no result")
                throw Failure("\(error.code.rawValue): \(error.message)\(error.hint.isEmpty ? "" : " (hint: \(error.hint))")")
            }
            if format == .csv {
                writeOut(ResponseFormat.csv(result))
                FileHandle.standardError.write(Data((ResponseFormat.usageLine(response) + "\n").utf8))
            } else {
                writeOut(ResponseFormat.table(result) + ResponseFormat.usageLine(response) + "\n")
            }
        }
    }
}

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show the SQL that would run, the rules that apply and a price quote; runs nothing, charges nothing.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset to query.")
    var dataset: String

    @Option(name: .customLong("as"), help: "The consumer whose grant applies.")
    var consumer: String

    @Option(help: "Output format: text or json.")
    var format: Format = .text

    @Argument(help: "The SQL text (one SELECT statement).")
    var sql: String

    func run() throws {
        let gateway = try common.gateway()
        let outcome = gateway.explain(QueryRequest(consumer: consumer, dataset: dataset, sql: sql))
        if format == .json { writeOut(ResponseFormat.json(outcome) + "\n") }
        switch outcome {
        case .success(let explanation):
            if format == .text { writeOut(ResponseFormat.text(explanation)) }
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

    func run() throws {
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
                output += "  pricing (micro-\(pricing.currency)): per_query \(pricing.perQuery), per_row \(pricing.perRow), per_million_vm_steps \(pricing.perMillionVMSteps)\n"
                for table in description.tables {
                    output += "  table \(table.name) (access: \(table.access)"
                    if let size = table.minGroupSize { output += ", min_group_size \(size)" }
                    if table.rowFilter { output += ", rows filtered by policy" }
                    output += ")\n"
                    for column in table.columns {
                        output += "    \(column.name)  \(column.role)"
                        if let mask = column.mask { output += "  masked: \(mask)" }
                        if !column.aggregates.isEmpty { output += "  aggregates: \(column.aggregates.joined(separator: ", "))" }
                        output += "\n"
                    }
                }
            }
        }
        if names.isEmpty { output = "no datasets available\n" }
        writeOut(output)
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Start the gateway's socket servers (not available yet: see the README).")

    @OptionGroup var common: CommonOptions

    @Option(help: "JSON-lines listen address.")
    var listen = "127.0.0.1:7878"

    func run() throws {
        throw Failure("unavailable: the socket server is not built yet; use `sandgate query` (see README)")
    }
}
