import Foundation
import SandgateCore
import SandgateLedger
import SandgateSQLite

/// One authenticated request, executed on a worker thread; returns the response line.
struct Operation: Sendable {
    let services: ServerServices
    /// The request's id as JSON text, echoed in the response.
    let id: String?
    let fields: [String: JSONValue]

    static let known: Set<String> = ["auth", "query", "explain", "describe", "datasets", "quota", "ping", "stats"]

    func ok(_ body: String) -> String {
        "{" + (id.map { "\"id\":\($0)," } ?? "") + "\"ok\":true" + (body.isEmpty ? "" : "," + body) + "}"
    }

    func error(_ error: GatewayError) -> String { ResponseFormat.error(error, id: id) }

    /// The stable code in a response line, for the outcome counters (`ok` on success).
    static func outcome(of line: String) -> String {
        guard line.contains("\"ok\":false"), let range = line.range(of: "\"code\":\"") else { return "ok" }
        return String(line[range.upperBound...].prefix { $0 != "\"" })
    }

    func run(_ op: String, consumer: String) -> String {
        let gateway = services.gateway
        switch op {
        case "query", "explain":
            guard let dataset = fields["dataset"]?.string else { return error(GatewayError(.badRequest, "\(op) needs \"dataset\" (a string)")) }
            guard let sql = fields["sql"]?.string else { return error(GatewayError(.badRequest, "\(op) needs \"sql\" (a string)")) }
            let parameters: QueryParameters
            switch fields["params"] {
            case nil, .null?: parameters = .none
            case .array(let values)?:
                let bound = values.compactMap(\.sqlValue)
                guard bound.count == values.count else { return error(GatewayError(.badRequest, "params must be numbers, strings, null, booleans or {\"base64\":…}")) }
                parameters = .positional(bound)
            case .object(let values)?:
                var bound: [String: SQLValue] = [:]
                for (name, value) in values {
                    guard let sqlValue = value.sqlValue else { return error(GatewayError(.badRequest, "parameter \(name) has an unsupported value")) }
                    bound[name] = sqlValue
                }
                parameters = .named(bound)
            default:
                return error(GatewayError(.badRequest, "params must be an array or an object"))
            }
            let request = QueryRequest(consumer: consumer, dataset: dataset, sql: sql, parameters: parameters)
            if op == "explain" { return ResponseFormat.json(gateway.explain(request), id: id) }
            return ResponseFormat.json(gateway.run(request), id: id)
        case "describe":
            let names: [String]
            if let dataset = fields["dataset"]?.string { names = [dataset] } else { names = gateway.grantedDatasets(consumer: consumer) }
            var described: [String] = []
            for name in names {
                switch gateway.describe(dataset: name, consumer: consumer) {
                case .success(let description): described.append(ResponseFormat.json(description))
                case .failure(let failure): return error(failure)
                }
            }
            return ok("\"datasets\":[" + described.joined(separator: ",") + "]")
        case "datasets":
            return ok("\"datasets\":[" + gateway.grantedDatasets(consumer: consumer).map(JSONTextShim.quoted).joined(separator: ",") + "]")
        case "quota":
            let names: [String]
            if let dataset = fields["dataset"]?.string { names = [dataset] } else { names = gateway.grantedDatasets(consumer: consumer) }
            var items: [String] = []
            for name in names {
                switch gateway.quota(consumer: consumer, dataset: name) {
                case .success(let quota):
                    items.append("{\"dataset\":\(JSONTextShim.quoted(name)),\"queries_today\":\(quota.queriesToday),\"rows_today\":\(quota.rowsToday),\"daily_queries\":\(quota.dailyQueries.map(String.init) ?? "null"),\"daily_rows\":\(quota.dailyRows.map(String.init) ?? "null")}")
                case .failure(let failure): return error(failure)
                }
            }
            return ok("\"quotas\":[" + items.joined(separator: ",") + "]")
        case "stats":
            return ok(services.state.statsJSON(ledgerPending: gateway.ledger.pendingCount))
        default:
            return error(GatewayError(.badRequest, "unknown op \"\(op)\""))
        }
    }
}
