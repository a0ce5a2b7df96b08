import SandgateLedger
import SandgatePolicy
import SandgateSQL

/// What the gateway would do with a query: the SQL it would run, the rules that apply, the
/// effective limits and a price quote. Producing it runs nothing and charges nothing.
public struct Explanation: Sendable {
    /// The rendered, rewritten SQL that would run in the sandbox.
    public let sql: String
    /// Rules that apply: masks, tokens, row filters, thresholds, row limits.
    public let rules: [String]
    public let limits: DatasetLimits
    public let pricing: Pricing
    /// `per_query`, the least a successful query costs.
    public let minimumCostMicros: Int64
    /// The most it can cost within the limits: every allowed row and every allowed VM step.
    public let maximumCostMicros: Int64
}

extension Gateway {
    /// Explains `request` for its consumer: the same grant and checks as `run`, without executing.
    public func explain(_ request: QueryRequest) -> Result<Explanation, GatewayError> {
        guard let consumer = consumers.consumers[request.consumer] else {
            return .failure(GatewayError(.authFailed, "unknown consumer '\(request.consumer)'"))
        }
        guard let runtime = runtime(request.dataset) else {
            return .failure(GatewayError(.unknownDataset, "no dataset named '\(request.dataset)'"))
        }
        guard let grant = consumer.grants[request.dataset] else {
            return .failure(GatewayError(.notGranted, "consumer '\(consumer.name)' has no grant for dataset '\(request.dataset)'"))
        }
        guard request.sql.utf8.count <= Self.maxSQLBytes else {
            return .failure(GatewayError(.requestTooLarge, "the query is longer than \(Self.maxSQLBytes) bytes"))
        }
        let checked: CheckedQuery
        switch Self.check(request.sql, policy: runtime.policy, facts: runtime.facts) {
        case .success(let query): checked = query
        case .failure(let error): return .failure(error)
        }
        let limits = runtime.policy.limits.lowered(by: grant)
        var rules = checked.rules
        rules.append("at most \(limits.maxRows) rows (more are cut and marked truncated)")
        rules.append("budget: \(limits.maxVMSteps) VM steps, \(limits.timeoutMilliseconds) ms, \(limits.maxResultBytes) result bytes")
        if let daily = grant.dailyQueries { rules.append("quota: \(daily) queries per UTC day") }
        if let daily = grant.dailyRows { rules.append("quota: \(daily) rows per UTC day") }
        if let monthly = grant.monthlyCostMicros { rules.append("quota: cost \(monthly) micro-\(runtime.policy.pricing.currency) per UTC month") }
        let pricing = runtime.policy.pricing
        return .success(Explanation(
            sql: Renderer.render(checked.select), rules: rules, limits: limits, pricing: pricing,
            minimumCostMicros: pricing.cost(rows: 0, vmSteps: 0),
            maximumCostMicros: pricing.cost(rows: limits.maxRows, vmSteps: limits.maxVMSteps, bytes: limits.maxResultBytes)))
    }
}

extension ResponseFormat {
    /// The explanation as one JSON object (`{"ok":true,"sql":…}`), or an error object.
    public static func json(_ outcome: Result<Explanation, GatewayError>, id: String? = nil) -> String {
        var output = "{"
        if let id { output += "\"id\":\(id)," }
        switch outcome {
        case .failure(let error):
            output += "\"ok\":false,\"error\":{\"code\":\(JSONText.quoted(error.code.rawValue)),\"message\":\(JSONText.quoted(error.message)),\"hint\":\(JSONText.quoted(error.hint))}"
        case .success(let explanation):
            output += "\"ok\":true,\"sql\":" + JSONText.quoted(explanation.sql)
            output += ",\"rules\":[" + explanation.rules.map(JSONText.quoted).joined(separator: ",") + "]"
            let limits = explanation.limits
            output += ",\"limits\":{\"max_rows\":\(limits.maxRows),\"timeout_ms\":\(limits.timeoutMilliseconds),\"max_vm_steps\":\(limits.maxVMSteps),\"max_result_bytes\":\(limits.maxResultBytes)}"
            let pricing = explanation.pricing
            output += ",\"quote\":{\"currency\":\(JSONText.quoted(pricing.currency)),\"per_query\":\(pricing.perQuery),\"per_row\":\(pricing.perRow),\"per_million_vm_steps\":\(pricing.perMillionVMSteps),\"per_mib\":\(pricing.perMiB),\"min_cost_micros\":\(explanation.minimumCostMicros),\"max_cost_micros\":\(explanation.maximumCostMicros)}"
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
