import Foundation
import Logging
import SandgateLedger
import SandgatePolicy
import SandgateSQLite
import SandgateSupport
import Synchronization

/// One query on its way through `Gateway.execute`: admit → reserve → prepare → run → meter.
/// Every step writes its figures into the one usage record; the response's `usage` is read from
/// that record (`usage`), so a meter is set once and the response can never show a figure the
/// record does not hold.
struct QueryProgress {
    var record: UsageRecord
    /// The quota hold the record's append charges (or `release` drops).
    var hold: QuotaHold?
    /// A private query's released groups, remembered once their record is committed.
    var answer: PrivateAnswer?
    /// True once a purpose list decided the purpose. A purpose no list checked is kept only on
    /// records the consumer pays for: free refusals must not mint invoice lines.
    var purposeChecked = false
    /// VM steps as billed when they are not the executed ones: an aggregate plan's exact steps
    /// depend on rows of withheld groups, so it is metered on the snapshot's table sizes (§3).
    var meteredVMSteps: Int64?
    /// An aggregate plan does not disclose how many groups it withheld (the record keeps it).
    var withholdsGroupCount = false
    /// The 95% half-width of each noisy output column.
    var noise: [NoiseInterval] = []

    /// The usage the consumer sees: the record's figures, as far as they may be disclosed.
    var usage: UsageSummary {
        var usage = UsageSummary(
            queryID: record.queryID, rows: Int(record.rows), cells: Int(record.cells), bytes: Int(record.bytes),
            maskedCells: Int(record.maskedCells), suppressedGroups: withholdsGroupCount ? nil : 0,
            vmSteps: meteredVMSteps ?? record.vmSteps, elapsedMicroseconds: record.elapsedMicroseconds,
            costMicros: record.costMicros, currency: record.currency, seq: 0)
        usage.epsilonMicros = record.epsilonMicros
        usage.noise = noise
        return usage
    }

    /// Marks the record refused (nothing run, nothing charged) and returns the error.
    mutating func refuse<Success>(_ error: GatewayError) -> Result<Success, GatewayError> {
        record.status = .refused
        record.errorCode = error.code.rawValue
        if !purposeChecked { record.purpose = "" }
        return .failure(error)
    }
}

/// What admission decided: who asks, on which dataset, under which grant and limits.
struct AdmittedQuery {
    let consumer: Consumer
    let runtime: DatasetRuntime
    let grant: Grant
    let limits: DatasetLimits
}

/// The checked query and, for a private plan, its ε and any remembered answer.
struct CheckedPreparation {
    let prepared: Result<PreparedQuery, GatewayError>
    let privacy: PrivatePlan?
    /// An identical earlier private query's answer: returned again without spending ε.
    let cachedAnswer: PrivateAnswer?
    /// ε this query spends (0 when nothing is noised or the answer is remembered).
    let epsilon: Int64
}

/// How many rows the query may return, and which limit says so when it is reached.
struct RowAllowance {
    var rows: Int
    var truncatedBy = "max_rows"
}

/// A released result and the limit that cut it, if any.
struct ReleasedResult {
    let result: QueryResult
    let truncatedBy: String?
}

extension Gateway {
    /// Grant, check, reserve, execute and meter `request`; the record is not written yet.
    func execute(_ request: QueryRequest) -> PendingResponse {
        let started = configuration.now()
        let clock = DispatchTime.now().uptimeNanoseconds
        let (runtime, consumer) = resolve(request)
        var progress = QueryProgress(record: Self.refusedRecord(request, queryID: Self.newQueryID(), started: started,
                                                                 runtime: runtime, consumer: consumer))
        let outcome = run(request, runtime: runtime, consumer: consumer, progress: &progress)
        progress.record.finishedAt = configuration.now()
        progress.record.elapsedMicroseconds = Int64((DispatchTime.now().uptimeNanoseconds - clock) / 1000)
        let response = switch outcome {
        case .success(let released):
            QueryResponse(outcome: .success(released.result), truncated: released.truncatedBy != nil,
                          truncatedBy: released.truncatedBy, usage: progress.usage)
        case .failure(let error):
            QueryResponse(outcome: .failure(error), truncated: false, truncatedBy: nil, usage: progress.usage)
        }
        return PendingResponse(response: response, record: progress.record, hold: progress.hold, privateAnswer: progress.answer)
    }

    private func run(_ request: QueryRequest, runtime: DatasetRuntime?, consumer: Consumer?,
                     progress: inout QueryProgress) -> Result<ReleasedResult, GatewayError> {
        let admitted: AdmittedQuery
        switch admit(request, runtime: runtime, consumer: consumer, progress: &progress) {
        case .success(let query): admitted = query
        case .failure(let error): return progress.refuse(error)
        }
        // Checked first, refused after the quotas (a quota refusal keeps its precedence): a
        // private plan's ε must be known to be reserved with them.
        let preparation = prepare(request, admitted)
        let allowance: RowAllowance
        switch reserve(request, admitted, preparation, progress: &progress) {
        case .success(let rows): allowance = rows
        case .failure(let error): return progress.refuse(error)
        }
        let prepared: PreparedQuery
        switch preparation.prepared {
        case .success(let query): prepared = query
        case .failure(let error): return progress.refuse(error)
        }
        return execute(request, admitted, prepared, preparation, allowance, progress: &progress)
    }

    /// The consumer, the dataset, the grant, the SQL's size and the purpose.
    private func admit(_ request: QueryRequest, runtime: DatasetRuntime?, consumer: Consumer?,
                       progress: inout QueryProgress) -> Result<AdmittedQuery, GatewayError> {
        guard let consumer else {
            return .failure(GatewayError(.authFailed, "unknown consumer '\(request.consumer)'"))
        }
        guard let runtime else {
            return .failure(GatewayError(.unknownDataset, "no dataset named '\(request.dataset)'", hint: "`sandgate describe` lists the datasets"))
        }
        guard let grant = consumer.grants[request.dataset] else {
            return .failure(GatewayError(.notGranted, "consumer '\(consumer.name)' has no grant for dataset '\(request.dataset)'"))
        }
        guard request.sql.utf8.count <= Self.maxSQLBytes else {
            return .failure(GatewayError(.requestTooLarge, "the query is longer than \(Self.maxSQLBytes) bytes"))
        }
        return Self.decidePurpose(request.purpose, runtime: runtime, grant: grant).map { purpose in
            progress.record.purpose = purpose.purpose
            progress.purposeChecked = PurposeRule.allowed(dataset: runtime.policy, grant: grant).required
            let limits = runtime.policy.limits.lowered(by: grant).lowered(by: purpose.limits)
            return AdmittedQuery(consumer: consumer, runtime: runtime, grant: grant, limits: limits)
        }
    }

    private func prepare(_ request: QueryRequest, _ admitted: AdmittedQuery) -> CheckedPreparation {
        let prepared = admitted.runtime.prepare(request.sql)
        let privacy = try? prepared.get().plan.privacy
        let cachedAnswer = privacy.flatMap {
            admitted.runtime.rememberedAnswer(consumer: admitted.consumer.name, plan: $0, parameters: request.parameters)
        }
        let epsilon = privacy != nil && cachedAnswer == nil ? privacy?.epsilonMicros ?? 0 : 0
        return CheckedPreparation(prepared: prepared, privacy: privacy, cachedAnswer: cachedAnswer, epsilon: epsilon)
    }

    /// Decides the grant's quotas and ε budget, holding what the query may use until its record
    /// is appended; a grant without quotas reserves nothing.
    private func reserve(_ request: QueryRequest, _ admitted: AdmittedQuery, _ preparation: CheckedPreparation,
                         progress: inout QueryProgress) -> Result<RowAllowance, GatewayError> {
        let grant = admitted.grant, limits = admitted.limits
        var allowance = RowAllowance(rows: limits.maxRows)
        var quotaLimits = QuotaLimits(dailyQueries: grant.dailyQueries.map(Int64.init), dailyRows: grant.dailyRows.map(Int64.init),
                                      monthlyCostMicros: grant.monthlyCostMicros)
        let budget = preparation.privacy.map { PrivacyBudget(plan: $0, grant: grant) }
        if preparation.epsilon > 0, let budget {
            quotaLimits.epsilonMicros = budget.micros
            quotaLimits.epsilonPeriod = PrivacyBudget.totalsPeriod(budget.period)
        }
        guard !quotaLimits.isEmpty else { return .success(allowance) }
        let startedAt = progress.record.startedAt
        let quota = QuotaRequest(
            consumer: admitted.consumer.name, dataset: request.dataset, day: Timestamp.startOfDay(containing: startedAt),
            month: Timestamp.startOfMonth(containing: startedAt), rowLimit: Int64(allowance.rows), limits: quotaLimits,
            epsilonMicros: preparation.epsilon,
            costMicros: admitted.runtime.policy.pricing.cost(rows: allowance.rows, vmSteps: limits.maxVMSteps, bytes: limits.maxResultBytes))
        let decision: QuotaDecision
        do {
            decision = try ledger.reserve(quota)
        } catch {
            logger.error("cannot decide a quota", metadata: ["error": "\(error.message)"])
            return .failure(GatewayError(.unavailable, "the ledger is unavailable; retry later"))
        }
        switch decision {
        case .exceeded(let name, let limit):
            let reset = name == "monthly_cost_micros" ? "on the 1st of the month, 00:00 UTC" : "at 00:00 UTC"
            return .failure(GatewayError(.quotaExceeded, "\(name) quota of \(limit) reached", hint: "the quota resets \(reset)"))
        case .budgetExhausted(let remaining, let total):
            return .failure(PrivacyBudget.exhausted(remainingMicros: remaining, budgetMicros: total, needed: preparation.epsilon,
                                                    period: budget?.period ?? .total, now: startedAt))
        case .granted(let granted, let limit):
            progress.hold = granted
            if limit < Int64(allowance.rows) {
                allowance = RowAllowance(rows: Int(limit), truncatedBy: "daily_rows")
            }
            return .success(allowance)
        }
    }

    /// Runs the rendered query in the consumer's sandbox and meters what it did.
    private func execute(_ request: QueryRequest, _ admitted: AdmittedQuery, _ prepared: PreparedQuery,
                         _ preparation: CheckedPreparation, _ allowance: RowAllowance,
                         progress: inout QueryProgress) -> Result<ReleasedResult, GatewayError> {
        // SQLite runs only what sandgate rendered from its own checked tree (invariant 2).
        let plan = prepared.plan, limits = admitted.limits
        progress.record.rewrittenSQL = UTF8Text.prefix(prepared.rendered, maxBytes: UsageRecord.sqlLimit)
        let rowsRead = plan.tables.reduce(Int64(0)) { $0 &+ (admitted.runtime.facts.rowCounts[$1.lowercased()] ?? 0) }
        // A private plan's meters and refusals disclose the tables' size class, never their
        // exact row count (issue 21 item 1).
        let meteredBase = !plan.isAggregatePlan ? 0 : plan.privacy == nil ? rowsRead : StageOneWork.sizeClass(rowsRead)
        if plan.isAggregatePlan, meteredBase > limits.maxVMSteps {
            return progress.refuse(GatewayError(
                .budgetExceeded, "the query reads \(plan.privacy == nil ? "" : "up to ")\(meteredBase) rows, more than its budget of \(limits.maxVMSteps) metered steps",
                hint: "join fewer tables"))
        }
        if let privacy = plan.privacy, preparation.cachedAnswer == nil {
            let bound = privacy.work.bound(rows: rowsRead, parameterBytes: request.parameters.longestBytes)
            if bound > limits.maxVMSteps {
                return progress.refuse(GatewayError(
                    .budgetExceeded,
                    "stage 1 of this private query may take up to \(bound) steps on up to \(meteredBase) rows, more than max_vm_steps (\(limits.maxVMSteps)); refused before reading any row",
                    hint: "use fewer conditions and functions (each row is bounded at its worst case; a LIKE or GLOB counts \(StageOneWork.patternSteps) steps)"))
            }
        }
        let outcome: Result<Execution, ExecutionFailure>
        do {
            outcome = try admitted.runtime.pool(for: admitted.consumer.name).withConnection { sandbox in
                sandbox.execute(sql: prepared.rendered, parameters: request.parameters, limits: limits, rowLimit: allowance.rows,
                                plan: plan, cancellation: request.cancellation, released: preparation.cachedAnswer?.groups)
            }
        } catch {
            return progress.refuse(error)
        }
        let meter = Meter(request: request, admitted: admitted, plan: plan, preparation: preparation, meteredBase: meteredBase)
        switch outcome {
        case .success(let execution):
            meter.record(execution, into: &progress)
            return .success(ReleasedResult(result: execution.result, truncatedBy: execution.truncated ? allowance.truncatedBy : nil))
        case .failure(let failure):
            if !failure.detail.isEmpty {
                logger.debug("query failed in SQLite", metadata: ["query_id": "\(progress.record.queryID)", "sqlite": "\(failure.detail)"])
            }
            return meter.record(failure, into: &progress)
        }
    }
}

/// Meters one executed query into its record: rows, cells, bytes, steps, cost and ε, once.
private struct Meter {
    let request: QueryRequest
    let admitted: AdmittedQuery
    let plan: ExecutionPlan
    let preparation: CheckedPreparation
    /// An aggregate plan's metered steps before its released rows (from the snapshot's table sizes).
    let meteredBase: Int64

    func record(_ execution: Execution, into progress: inout QueryProgress) {
        let result = execution.result
        // Rows packed into values by concatenating aggregates are rows released.
        let rows = result.rowCount + execution.packedRows
        progress.withholdsGroupCount = plan.isAggregatePlan
        if plan.isAggregatePlan { progress.meteredVMSteps = meteredBase + Int64(result.rowCount) }
        let billedSteps = progress.meteredVMSteps ?? execution.vmSteps
        progress.record.status = .ok
        progress.record.rows = Int64(rows)
        progress.record.cells = Int64(result.cellCount)
        progress.record.bytes = Int64(result.valueBytes)
        progress.record.maskedCells = Int64(execution.maskedCells)
        progress.record.suppressedGroups = Int64(execution.suppressedGroups)
        progress.record.truncated = execution.truncated
        progress.record.vmSteps = execution.vmSteps
        progress.record.costMicros = admitted.runtime.policy.pricing.cost(rows: rows, vmSteps: billedSteps, bytes: result.valueBytes)
        if let privacy = plan.privacy, let released = execution.released {
            progress.record.epsilonMicros = preparation.epsilon
            progress.noise = privacy.noise(columns: result.columns, released: released)
            if preparation.cachedAnswer == nil { progress.answer = answer(privacy, released) }
        }
    }

    func record(_ failure: ExecutionFailure, into progress: inout QueryProgress) -> Result<ReleasedResult, GatewayError> {
        progress.withholdsGroupCount = plan.isAggregatePlan
        // A private query that read rows spends its ε whatever the outcome (issue 21 item 1): a
        // stage 1 stopped by the clock is an outcome too. When noise was drawn before stage 2
        // failed, its groups are also remembered, or a failure that depends on a noisy value
        // (HAVING, a value too wide) would read a fresh noisy answer on every try. Only a query
        // refused before it read a row spends nothing.
        let spent = plan.privacy != nil && (failure.executed || failure.released != nil)
        if spent, let privacy = plan.privacy, preparation.cachedAnswer == nil {
            progress.record.epsilonMicros = preparation.epsilon
            if let released = failure.released { progress.answer = answer(privacy, released) }
        }
        if !failure.executed, !spent { return progress.refuse(failure.error) }
        // Work was done: charged per query and per step, no rows.
        if plan.isAggregatePlan { progress.meteredVMSteps = meteredBase }
        progress.record.status = .failed
        progress.record.errorCode = failure.error.code.rawValue
        progress.record.vmSteps = failure.vmSteps
        progress.record.costMicros = admitted.runtime.policy.pricing.cost(rows: 0, vmSteps: progress.meteredVMSteps ?? failure.vmSteps)
        return .failure(failure.error)
    }

    private func answer(_ privacy: PrivatePlan, _ released: ReleasedGroups) -> PrivateAnswer {
        PrivateAnswer(runtime: admitted.runtime, consumer: admitted.consumer.name, plan: privacy,
                      parameters: request.parameters, groups: released)
    }
}
