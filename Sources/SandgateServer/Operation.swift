import Foundation
import SandgateCore
import SandgatePolicy
import SandgateLedger
import SandgateSupport
import SandgateSQLite

/// One authenticated request, executed on a worker thread; returns the response line.
struct Operation: Sendable {
    let services: ServerServices
    /// The authenticated consumer.
    let consumerName: String
    /// The request's id as JSON text, echoed in the response.
    let id: String?
    let fields: [String: JSONValue]
    /// The client's address (recorded with each query).
    let clientAddress: String
    /// The purpose given on `auth`, the default of every `query`/`explain` without its own.
    var sessionPurpose: String? = nil

    static let known: Set<String> = ["auth", "query", "explain", "describe", "datasets", "quota", "ping", "stats"]

    /// `{"id":…,"ok":true,…}` with the members `body` writes.
    func ok(_ body: (inout JSONWriter) -> Void = { _ in }) -> String {
        JSONWriter.object { json in
            if let id { json.field("id", raw: id) }
            json.field("ok", true)
            body(&json)
        }
    }

    func error(_ error: GatewayError) -> String { ResponseFormat.error(error, id: id) }


    /// The query request of a `query`/`explain` line, or the error line.
    func request(_ op: String) -> Result<QueryRequest, LineError> {
        guard let dataset = fields["dataset"]?.string else { return .failure(LineError(error(GatewayError(.badRequest, "\(op) needs \"dataset\" (a string)")))) }
        guard let sql = fields["sql"]?.string else { return .failure(LineError(error(GatewayError(.badRequest, "\(op) needs \"sql\" (a string)")))) }
        let parameters: QueryParameters
        switch fields["params"] {
        case nil, .null?: parameters = .none
        case .array(let values)?:
            let bound = values.compactMap(\.sqlValue)
            guard bound.count == values.count else { return .failure(LineError(error(GatewayError(.badRequest, "params must be numbers, strings, null, booleans or {\"base64\":…}")))) }
            parameters = .positional(bound)
        case .object(let values)?:
            var bound: [String: SQLValue] = [:]
            for (name, value) in values {
                guard let sqlValue = value.sqlValue else { return .failure(LineError(error(GatewayError(.badRequest, "parameter \(name) has an unsupported value")))) }
                bound[name] = sqlValue
            }
            parameters = .named(bound)
        default:
            return .failure(LineError(error(GatewayError(.badRequest, "params must be an array or an object"))))
        }
        let purpose: String?
        switch fields["purpose"] {
        case nil, .null?: purpose = sessionPurpose
        case .string(let text)?: purpose = text
        default: return .failure(LineError(error(GatewayError(.badRequest, "purpose must be a string"))))
        }
        return .success(QueryRequest(consumer: consumerName, dataset: dataset, sql: sql, parameters: parameters, clientAddress: clientAddress, purpose: purpose))
    }

    /// The `dataset` field, or every dataset the consumer holds a grant for.
    func requestedDatasets(consumer: String) -> [String] {
        if let dataset = fields["dataset"]?.string { return [dataset] }
        return services.gateway.grantedDatasets(consumer: consumer)
    }

    func run(_ op: String, consumer: String) -> String {
        let gateway = services.gateway
        switch op {
        case "query", "explain":
            // Queries and explains go through QueryAdmission (RequestHandler), never here.
            return error(GatewayError(.internal, "\(op) is admitted by the server, not run directly"))
        case "describe":
            var described: [String] = []
            for name in requestedDatasets(consumer: consumer) {
                switch gateway.describe(dataset: name, consumer: consumer) {
                case .success(let description): described.append(ResponseFormat.json(description))
                case .failure(let failure): return error(failure)
                }
            }
            return ok { json in json.array("datasets") { json in described.forEach { json.raw($0) } } }
        case "datasets":
            return ok { $0.field("datasets", strings: gateway.grantedDatasets(consumer: consumer)) }
        case "quota":
            var quotas: [(String, Gateway.QuotaStatus)] = []
            for name in requestedDatasets(consumer: consumer) {
                switch gateway.quota(consumer: consumer, dataset: name) {
                case .success(let quota): quotas.append((name, quota))
                case .failure(let failure): return error(failure)
                }
            }
            return ok { json in json.array("quotas") { json in for (name, quota) in quotas { Self.write(quota, of: name, to: &json) } } }
        case "stats":
            let isOperator = gateway.role(of: consumer) == .operator
            return ok { services.state.writeStats(consumer: consumer, isOperator: isOperator, ledgerPending: gateway.ledger.pendingCount, to: &$0) }
        default:
            return error(GatewayError(.badRequest, "unknown op \"\(op)\"", hint: "ops: " + Self.known.sorted().joined(separator: ", ")))
        }
    }
}

extension Operation {
    static func write(_ quota: Gateway.QuotaStatus, of dataset: String, to json: inout JSONWriter) {
        json.object { json in
            json.field("dataset", dataset)
            json.field("queries_today", quota.queriesToday)
            json.field("rows_today", quota.rowsToday)
            json.field("daily_queries", quota.dailyQueries)
            json.field("daily_rows", quota.dailyRows)
            if let privacy = quota.privacy {
                json.field("epsilon_budget", raw: ResponseFormat.epsilonText(privacy.budgetMicros))
                json.field("epsilon_spent", raw: ResponseFormat.epsilonText(privacy.spentMicros))
                json.field("epsilon_left", raw: ResponseFormat.epsilonText(privacy.remainingMicros))
                json.field("epsilon_period", privacy.period.rawValue)
                json.field("epsilon_refresh", privacy.refresh)
            }
        }
    }
}

/// A ready error line (an `Error` so it can travel in a `Result`).
struct LineError: Error {
    let text: String
    init(_ text: String) { self.text = text }
}
