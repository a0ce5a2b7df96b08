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
    /// For a query on a table with `privacy:`: its ε and expected intervals (issue 10).
    public var privacy: PrivacyExplanation? = nil
}

/// What a private query would spend and how precise its answer would be, known before it runs:
/// the noise is calibrated from the policy alone.
public struct PrivacyExplanation: Sendable, Equatable {
    /// ε the query would spend now (0 when an identical query's answer would be returned).
    public let epsilonMicros: Int64
    /// ε per query as the policy sets it.
    public let epsilonPerQueryMicros: Int64
    /// What is left of the consumer's budget, when the ledger could be read.
    public let budget: PrivacyBudgetStatus?
    /// The noisy unit count a group needs to be released.
    public let threshold: Int64
    /// The 95% half-width of each aggregate (`count(*)`, `sum(amount)`, …); for `avg` the
    /// half-width at a group of `threshold` units with values at the middle of the bounds.
    public let intervals: [NoiseInterval]
}

extension Gateway {
    /// The columns `request` would return, with the types their declarations give (expressions:
    /// `ColumnType` with nothing seen, which is text). Same grant and checks as `run`; nothing is
    /// executed or charged.
    public func columns(_ request: QueryRequest) -> Result<[(name: String, type: ColumnType)], GatewayError> {
        guard let consumer = Name.isValid(request.consumer) ? consumers.consumers[request.consumer] : nil else {
            return .failure(GatewayError(.authFailed, "unknown consumer '\(request.consumer)'"))
        }
        guard let runtime = Name.isValid(request.dataset) ? runtime(request.dataset) : nil else {
            return .failure(GatewayError(.unknownDataset, "no dataset named '\(request.dataset)'"))
        }
        guard let grant = consumer.grants[request.dataset] else {
            return .failure(GatewayError(.notGranted, "consumer '\(consumer.name)' has no grant for dataset '\(request.dataset)'"))
        }
        guard request.sql.utf8.count <= Self.maxSQLBytes else {
            return .failure(GatewayError(.requestTooLarge, "the query is longer than \(Self.maxSQLBytes) bytes"))
        }
        if case .failure(let error) = Self.decidePurpose(request.purpose, runtime: runtime, grant: grant) { return .failure(error) }
        let prepared: PreparedQuery
        switch runtime.prepare(request.sql) {
        case .success(let query): prepared = query
        case .failure(let error): return .failure(error)
        }
        do {
            return try runtime.pool(for: consumer.name).withConnection { sandbox in
                sandbox.columns(sql: prepared.rendered, plan: prepared.plan).map { columns in
                    columns.map { ($0.name, ColumnType(declared: $0.declared, seen: [], temporalValues: true)) }
                }
            }
        } catch {
            return .failure(error)
        }
    }

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
        let purpose: PurposeRule.Decision
        switch Self.decidePurpose(request.purpose, runtime: runtime, grant: grant) {
        case .success(let decision): purpose = decision
        case .failure(let error): return .failure(error)
        }
        let checked: CheckedQuery
        switch Self.check(request.sql, policy: runtime.policy, facts: runtime.facts) {
        case .success(let query): checked = query
        case .failure(let error): return .failure(error)
        }
        let limits = runtime.policy.limits.lowered(by: grant).lowered(by: purpose.limits)
        var rules = checked.rules
        if !purpose.purpose.isEmpty { rules.append("purpose: \(purpose.purpose) (recorded with the query)") }
        if runtime.policy.tokens == .perConsumer { rules.append("join keys and hash values are tokens keyed for this consumer (traceable to it)") }
        rules.append("at most \(limits.maxRows) rows (more are cut and marked truncated)")
        rules.append("budget: \(limits.maxVMSteps) VM steps, \(limits.timeoutMilliseconds) ms, \(limits.maxResultBytes) result bytes")
        if let daily = grant.dailyQueries { rules.append("quota: \(daily) queries per UTC day") }
        if let daily = grant.dailyRows { rules.append("quota: \(daily) rows per UTC day") }
        if let monthly = grant.monthlyCostMicros { rules.append("quota: cost \(monthly) micro-\(runtime.policy.pricing.currency) per UTC month") }
        let pricing = runtime.policy.pricing
        var sql = Renderer.render(checked.select)
        var privacy: PrivacyExplanation?
        if let plan = checked.plan.privacy {
            sql = plan.stageOneSQL + "\n-- then, in sandgate: exact discrete noise and group selection; released groups replace __sg_g in:\n" + sql
            let cached = runtime.rememberedAnswer(consumer: consumer.name, plan: plan, parameters: request.parameters) != nil
            let budget = try? PrivacyBudgetStatus.read(policy: runtime.policy, grant: grant, consumer: consumer.name, ledger: ledger, now: configuration.now())
            privacy = PrivacyExplanation(
                epsilonMicros: cached ? 0 : plan.epsilonMicros, epsilonPerQueryMicros: plan.epsilonMicros, budget: budget ?? nil,
                threshold: plan.threshold, intervals: plan.expectedIntervals())
            rules.append(cached ? "this exact query was answered before: the same answer is returned and no ε is spent"
                         : "ε spent: \(PrivacyBudget.epsilonText(plan.epsilonMicros))" + (budget.flatMap { $0 }.map { " of \(PrivacyBudget.epsilonText($0.remainingMicros)) left" } ?? ""))
            for interval in plan.expectedIntervals() {
                rules.append("expected 95% interval of \(interval.column): ± \(interval.halfWidth)")
            }
        }
        var explanation = Explanation(
            sql: sql, rules: rules, limits: limits, pricing: pricing,
            minimumCostMicros: pricing.cost(rows: 0, vmSteps: 0),
            maximumCostMicros: pricing.cost(rows: limits.maxRows, vmSteps: limits.maxVMSteps, bytes: limits.maxResultBytes))
        explanation.privacy = privacy
        return .success(explanation)
    }
}
