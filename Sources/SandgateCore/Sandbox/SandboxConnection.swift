import Foundation
import SandgatePolicy
import SandgateSQL
import SandgateSQLite
import SandgateSupport

/// What the checker decided about a query, for the sandbox that runs it.
struct ExecutionPlan: Sendable {
    /// For each output column: derived from a masked column (the `masked_cells` meter).
    var maskedOutputs: [Bool] = []
    /// A two-stage aggregate plan built by sandgate (DESIGN.md §3): it may read aggregate tables
    /// and call the plan's internal functions; its step budget is the metered figure, checked
    /// before it runs, so that no exact step count (which depends on withheld groups) decides
    /// an outcome.
    var isAggregatePlan = false
    /// The query packs rows into values (`group_concat`, `json_group_array`, …) through the
    /// internal counting function: each packed input row counts as a row.
    var packsRows = false
    /// Published tables an aggregate plan reads (for its metered steps).
    var tables: [String] = []
    /// A plan on a table with `privacy:`: stage 1, noise and group selection, then stage 2.
    var privacy: PrivatePlan?
}

/// What one execution in the sandbox produced.
struct Execution {
    var result: QueryResult
    var truncated: Bool
    /// Exact VM steps (stage 1 included): for the holder's ledger record.
    var vmSteps: Int64
    var maskedCells: Int
    var suppressedGroups: Int
    /// Input rows packed into values by concatenating aggregates.
    var packedRows: Int
    /// A private plan's released groups (cached by the gateway once the record is committed).
    var released: ReleasedGroups? = nil
}

/// The outcome of stage 1 of a private plan after noise and group selection: everything stage 2
/// may read. Reused as it is for an identical query on the same snapshot by the same consumer.
struct ReleasedGroups: Sendable {
    /// One row per released group: keys, the plan's aggregates (noisy), the noisy unit count.
    let rows: [[SQLValue]]
    /// For each of the plan's aggregates, the largest 95% half-width over the released rows.
    let halfWidths: [Double]
    /// Groups stage 1 saw that selection withheld (for the holder's record only).
    let withheld: Int
}

/// A failed execution, with the work it consumed (for pricing and the ledger).
struct ExecutionFailure: Error {
    var error: GatewayError
    var vmSteps: Int64
    /// False when nothing ran (refused while preparing).
    var executed: Bool
    /// SQLite's own text, for the server log only: it can quote data values.
    var detail: String = ""
    /// A private plan that failed in stage 2: the groups its noise released. The noise was
    /// drawn, so its ε is spent (a failure that depends on noisy values is itself an answer).
    var released: ReleasedGroups? = nil
}

/// Counters the internal plan functions update while one statement runs.
final class PlanCounters {
    /// Groups `__sg_tally` saw below their threshold.
    var suppressedGroups = 0
    /// Values `__sg_packed` passed into concatenating aggregates.
    var packedRows = 0
    var packedLimit = Int.max
    var packedExceeded = false

    func reset(packedLimit: Int) {
        suppressedGroups = 0
        packedRows = 0
        self.packedLimit = packedLimit
        packedExceeded = false
    }


    /// Internal function names (reserved prefix; the checker refuses them in consumer SQL and the
    /// authorizer allows them only in statements whose plan uses them).
    static let tally = "__sg_tally"
    static let packed = "__sg_packed"

    func register(on connection: Connection) throws(SQLiteError) {
        // Not deterministic: SQLite must call them once per group or row, never fold them.
        try connection.createFunction(name: Self.tally, argumentCount: 2, deterministic: false) { [unowned self] arguments, result in
            if arguments.integer(at: 0) < arguments.integer(at: 1) { suppressedGroups += 1 }
            result.setArgument(arguments, at: 0)
        }
        try connection.createFunction(name: Self.packed, argumentCount: 1, deterministic: false) { [unowned self] arguments, result in
            packedRows += 1
            if packedRows > packedLimit {
                packedExceeded = true
                return result.setError("rows limit")
            }
            result.setArgument(arguments, at: 0)
        }
    }
}

/// One isolated SQLite connection for one dataset and policy version.
///
/// Layout: an empty in-memory `main`; the snapshot attached read-only and immutable under a random
/// schema name the consumer cannot know; one TEMP VIEW per visible table, of the same name, that
/// applies masks, join tokens and the row filter; mask functions under random names; defensive
/// settings and limits; and last, the deny-by-default authorizer and the budget progress handler.
final class SandboxConnection {
    let connection: Connection
    private let authorizer: SandboxAuthorizer
    /// Kept alive here: SQLite holds only unretained references through the function boxes.
    private let evaluators: [MaskEvaluator]
    /// Internal, not private: tests set its clock.
    let budget: BudgetState
    private let counters: PlanCounters
    /// Prepared statements by SQL text: preparing rendered SQL over the masking views costs more
    /// than running a point lookup. Bounded; cleared when full.
    private var statements: [String: Statement] = [:]
    static let statementCacheSize = 128

    /// Opens and prepares a sandbox for `policy` on `snapshot`.
    init(policy: DatasetPolicy, snapshot: Snapshot, key: [UInt8]) throws(GatewayError) {
        let token = Self.randomToken()
        let schema = "sg_\(token)"
        let functionPrefix = "sg_\(token)_"
        let budget = BudgetState(), counters = PlanCounters()
        self.budget = budget
        self.counters = counters
        do {
            connection = try Connection()
            let db = connection
            db.set(.defensive, true)
            db.set(.trustedSchema, false)
            db.set(.enableTrigger, false)
            db.set(.enableView, false)  // views stored in the source are refused; TEMP views still work
            db.set(.enableLoadExtension, false)
            db.set(.enableFTS3Tokenizer, false)
            db.set(.doubleQuotedStringsInDML, false)
            db.set(.doubleQuotedStringsInDDL, false)
            try db.execute("PRAGMA temp_store = MEMORY")
            try db.execute("ATTACH DATABASE \(Self.literal(Self.immutableURI(snapshot.path))) AS \(Self.identifier(schema))")
            // The snapshot never changes: map it instead of copying pages through read().
            try db.execute("PRAGMA \(Self.identifier(schema)).mmap_size = \(Self.mmapBytes)")

            var evaluators: [MaskEvaluator] = []
            /// Registers `evaluator` as a one-argument SQL function (NULL stays NULL) under an
            /// internal name the consumer cannot guess.
            func register(_ evaluator: MaskEvaluator) throws(SQLiteError) -> String {
                let functionName = "\(functionPrefix)m\(evaluators.count)"
                evaluators.append(evaluator)
                try db.createFunction(name: functionName, argumentCount: 1, deterministic: true) { arguments, result in
                    guard arguments.type(at: 0) != .null else { return result.setNull() }
                    arguments.withText(at: 0) { input in
                        switch evaluator.apply(input) {
                        case .null: result.setNull()
                        case .text(let output): result.setText(output)
                        }
                    }
                }
                return functionName
            }
            for table in policy.tables {
                var selectList: [String] = []
                for column in table.visibleColumns {
                    let name = Self.identifier(column.name)
                    if let mask = column.mask {
                        let functionName = try register(MaskEvaluator(mask: mask, key: mask.needsKey ? key : nil))
                        selectList.append("\(functionName)(\(name)) AS \(name)")
                    } else {
                        selectList.append("\(name) AS \(name)")
                    }
                }
                if table.access == .aggregate, let unit = table.privacyUnit {
                    // The privacy unit's token, for the threshold the checker writes; the consumer
                    // cannot name this column (it is not in the consumer's view of the table).
                    let functionName = try register(MaskEvaluator(mask: .joinKey, key: key))
                    selectList.append("\(functionName)(\(Self.identifier(unit))) AS \(Self.identifier(Checker.unitColumn))")
                }
                if selectList.isEmpty { selectList.append("NULL AS \"_\"") }
                let filter = table.rowFilter.map { " WHERE (\($0))" } ?? ""
                try db.execute("CREATE TEMP VIEW \(Self.identifier(table.name)) AS SELECT \(selectList.joined(separator: ", ")) FROM \(Self.identifier(schema)).\(Self.identifier(table.name))\(filter)")
            }
            self.evaluators = evaluators
            try BoundedFunctions.register(on: db, budget: budget)
            try counters.register(on: db)

            db.setLimit(.length, Int32(ResultStorage.maximumValueLength))
            db.setLimit(.sqlLength, 1_000_000)
            db.setLimit(.column, 200)
            db.setLimit(.expressionDepth, 200)
            db.setLimit(.compoundSelect, 50)
            db.setLimit(.vdbeOperations, 50_000)
            db.setLimit(.functionArguments, 32)
            db.setLimit(.attached, 0)
            db.setLimit(.likePatternLength, Int32(budget.likePatternLimit))
            db.setLimit(.variableNumber, 999)
            db.setLimit(.triggerDepth, 0)
            db.setLimit(.workerThreads, 0)
        } catch {
            throw GatewayError(.unavailable, "cannot prepare the sandbox for dataset '\(policy.name)': \(error.message)")
        }
        authorizer = SandboxAuthorizer(
            viewNames: Set(policy.tables.map { $0.name.lowercased() }),
            aggregateTables: Set(policy.tables.filter { $0.access == .aggregate }.map { $0.name.lowercased() }),
            snapshotSchema: schema,
            internalFunctionPrefix: functionPrefix)
        let authorizer = self.authorizer
        connection.setAuthorizer { authorizer.decide($0) }
        connection.setProgressHandler(every: BudgetState.interval) { budget.tick() }
    }

    /// How much of a snapshot each sandbox connection maps (SQLite caps it at its compile-time maximum).
    static let mmapBytes = 1 << 31

    /// 128 random bits as hex: names of the attached schema and internal functions.
    static func randomToken() -> String { RandomToken.hex128() }

    static func identifier(_ name: String) -> String { Renderer.identifier(name) }
    static func literal(_ text: String) -> String { Renderer.string(text) }
    static func immutableURI(_ path: String) -> String {
        var encoded = "file:"
        for scalar in path.unicodeScalars {
            if scalar.isASCII, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "/._-~".unicodeScalars.contains(scalar) {
                encoded.unicodeScalars.append(scalar)
            } else {
                for byte in String(scalar).utf8 { encoded += String(format: "%%%02X", byte) }
            }
        }
        return encoded + "?mode=ro&immutable=1"
    }

    /// The result columns `sql` would have, from preparing it without running it: names and
    /// declared types (a front end that must describe a statement before it runs).
    func columns(sql: String, plan: ExecutionPlan) -> Result<[(name: String, declared: String?)], GatewayError> {
        authorizer.reset(allowAggregateTables: plan.isAggregatePlan, allowPlanFunctions: plan.isAggregatePlan || plan.packsRows)
        defer { authorizer.reset(allowAggregateTables: false, allowPlanFunctions: false) }
        do {
            guard let statement = try connection.prepareSingle(sql).statement else {
                return .failure(GatewayError(.syntaxError, "the query is empty"))
            }
            return .success((0..<statement.columnCount).map { (statement.columnName(at: $0), statement.declaredType(at: $0)) })
        } catch {
            return .failure(prepareError(error))
        }
    }

    /// Runs `sql` (rendered by sandgate from a checked query) within `limits`, returning at most
    /// `rowLimit` rows. A private plan runs its stage 1 (or takes `released`, the groups an
    /// identical earlier query released), then stage 2 over the released groups.
    func execute(sql: String, parameters: QueryParameters, limits: DatasetLimits, rowLimit: Int, plan: ExecutionPlan = ExecutionPlan(),
                 cancellation: Cancellation? = nil, released cached: ReleasedGroups? = nil) -> Result<Execution, ExecutionFailure> {
        if let privacy = plan.privacy {
            return executePrivate(privacy, parameters: parameters, limits: limits, rowLimit: rowLimit, plan: plan,
                                  cancellation: cancellation, released: cached)
        }
        return executeStatement(sql: sql, parameters: parameters, limits: limits, rowLimit: rowLimit, plan: plan, cancellation: cancellation)
    }

    private func executeStatement(sql: String, parameters: QueryParameters, limits: DatasetLimits, rowLimit: Int, plan: ExecutionPlan,
                                  cancellation: Cancellation?, partialParameters: Bool = false, cached: Bool = true) -> Result<Execution, ExecutionFailure> {
        authorizer.reset(allowAggregateTables: plan.isAggregatePlan, allowPlanFunctions: plan.isAggregatePlan || plan.packsRows)
        defer { authorizer.reset(allowAggregateTables: false, allowPlanFunctions: false) }
        // Aggregate plans are budgeted by their metered steps before they run (Gateway); only the
        // clock stops them here.
        budget.arm(maxSteps: plan.isAggregatePlan ? .max : limits.maxVMSteps, timeoutMilliseconds: limits.timeoutMilliseconds,
                   cancellation: cancellation)
        defer { budget.disarm() }
        counters.reset(packedLimit: rowLimit)
        // An aggregate plan's stage 1 holds rows of every group, withheld ones too: a value-size
        // error there would say that such a row exists (red team: ten 1 MB keys), so its limit is
        // SQLite's own maximum, its parameters are small (below), and what the consumer gets is
        // still bounded by `max_result_bytes` as rows are collected.
        let lengthLimit = plan.isAggregatePlan ? Self.aggregatePlanLengthLimit : min(limits.maxResultBytes, ResultStorage.maximumValueLength)
        budget.lengthLimit = lengthLimit
        connection.setLimit(.length, Int32(clamping: lengthLimit))
        if plan.isAggregatePlan, let error = Self.oversizedParameter(parameters) {
            return failure(error, executed: false)
        }

        func failure(_ error: GatewayError, executed: Bool, steps: Int64 = 0, detail: String = "") -> Result<Execution, ExecutionFailure> {
            .failure(ExecutionFailure(error: error, vmSteps: steps, executed: executed, detail: detail))
        }

        let statement: Statement
        switch prepareStatement(sql, cached: cached) {
        case .success(let prepared): statement = prepared
        case .failure(let error): return failure(error, executed: false)
        }
        // Leave the statement reset: a cached statement must not hold a read transaction open.
        defer { statement.reset() }
        if let error = bind(parameters, to: statement, partial: partialParameters) {
            return failure(error, executed: false)
        }

        var result = ResultBuilder(columns: (0..<statement.columnCount).map { statement.columnName(at: $0) },
                                   declaredTypes: (0..<statement.columnCount).map { statement.declaredType(at: $0) })
        let columnCount = statement.columnCount
        let masked = (0..<columnCount).map { $0 < plan.maskedOutputs.count && plan.maskedOutputs[$0] }
        var maskedCells = 0
        var truncated = false
        do {
            let valueLimit = min(limits.maxResultBytes, ResultStorage.maximumValueLength)
            var oversized = false
            while try statement.step() {
                if result.rowCount >= rowLimit {
                    truncated = true
                    break
                }
                for column in 0..<columnCount {
                    let type = statement.type(at: column)
                    if masked[column], type != .null { maskedCells += 1 }
                    switch type {
                    case .null: result.appendNull()
                    case .integer: result.appendInteger(statement.integer(at: column))
                    case .real: result.appendReal(statement.real(at: column))
                    case .text, .blob:
                        // Under an aggregate plan's raised length limit a released value may be
                        // longer than a result can hold: refused, never cut.
                        let fits = statement.withBytes(at: column) { bytes -> Bool in
                            guard bytes.count <= valueLimit else { return false }
                            result.appendBytes(bytes, isText: type == .text)
                            return true
                        }
                        if !fits { result.appendNull(); oversized = true }
                    }
                }
                result.endRow()
                if oversized || result.valueBytes > limits.maxResultBytes {
                    return failure(GatewayError(
                        .resultTooLarge, "the result exceeds \(limits.maxResultBytes) bytes",
                        hint: "select fewer columns or rows, or aggregate"), executed: true, steps: statement.virtualMachineSteps)
                }
            }
        } catch {
            return failure(stepError(error, limits: limits, rowLimit: rowLimit), executed: true,
                           steps: statement.virtualMachineSteps, detail: error.message)
        }
        let steps = statement.virtualMachineSteps
        // Packed values count as rows: together with the rows returned they may not pass the limit.
        if counters.packedRows > 0, counters.packedRows + result.rowCount > rowLimit {
            return failure(packedRowsError(rowLimit), executed: true, steps: steps)
        }
        return .success(Execution(
            result: result.finish(), truncated: truncated, vmSteps: steps, maskedCells: maskedCells,
            suppressedGroups: counters.suppressedGroups, packedRows: counters.packedRows))
    }

    /// A prepared statement for `sql`, from the cache when `cached` (stage 2 of a private plan
    /// carries its noisy groups in its text, so it is never cached).
    private func prepareStatement(_ sql: String, cached: Bool = true) -> Result<Statement, GatewayError> {
        if cached, let existing = statements[sql] {
            existing.reset()
            existing.resetVirtualMachineSteps()
            return .success(existing)
        }
        let statement: Statement
        do {
            let (prepared, hasMore) = try connection.prepareSingle(sql)
            guard let prepared else { return .failure(GatewayError(.syntaxError, "the query is empty")) }
            guard !hasMore else { return .failure(GatewayError(.notASelect, "only one statement per request is allowed")) }
            statement = prepared
        } catch {
            return .failure(prepareError(error))
        }
        if statement.isExplain {
            return .failure(GatewayError(.notASelect, "EXPLAIN is not available", hint: "use `sandgate explain`"))
        }
        guard statement.isReadOnly else {
            return .failure(GatewayError(.notASelect, "only read-only SELECT statements are allowed"))
        }
        if cached {
            if statements.count >= Self.statementCacheSize { statements.removeAll() }
            statements[sql] = statement
        }
        return .success(statement)
    }

    // MARK: Private plans

    /// Stage 1 (unless `cached`), exact noise and group selection, then stage 2 over the released
    /// groups. Everything the consumer sees comes from released groups; the exact steps of stage 1
    /// go to the holder's record only, like every aggregate plan's.
    private func executePrivate(_ privacy: PrivatePlan, parameters: QueryParameters, limits: DatasetLimits, rowLimit: Int, plan: ExecutionPlan,
                                cancellation: Cancellation?, released cached: ReleasedGroups?) -> Result<Execution, ExecutionFailure> {
        var stageOneSteps: Int64 = 0
        let started = DispatchTime.now().uptimeNanoseconds
        let released: ReleasedGroups
        if let cached {
            released = cached
        } else {
            switch releaseGroups(privacy, parameters: parameters, limits: limits, cancellation: cancellation) {
            case .success(let groups):
                released = groups.groups
                stageOneSteps = groups.steps
            case .failure(let failure):
                return .failure(failure)
            }
        }
        let width = privacy.keyCount + privacy.aggregates.count + 1
        let names = (0..<privacy.keyCount).map { "__sg_k\($0)" } + privacy.aggregates.indices.map { "__sg_a\($0)" } + [AggregatePlanner.unitCount]
        var stageTwo = privacy.stageTwo
        stageTwo.with = With(recursive: false, tables: [CommonTable(
            name: AggregatePlanner.grouped, columns: names, materialized: nil,
            select: AggregatePlanner.releasedGroups(released.rows.map { $0.map(Self.literalExpression) }, width: width))])
        var stageTwoPlan = plan
        stageTwoPlan.privacy = nil
        // The noisy groups are in the statement's text: its length and size are bounded by the
        // released groups, not by the consumer, so the text limits are raised for it alone.
        connection.setLimit(.sqlLength, Int32(Self.aggregatePlanLengthLimit))
        connection.setLimit(.vdbeOperations, Int32.max)
        defer {
            connection.setLimit(.sqlLength, 1_000_000)
            connection.setLimit(.vdbeOperations, 50_000)
        }
        // One clock for both stages: stage 2 gets what stage 1 left of the timeout.
        var remaining = limits
        let spentMilliseconds = Int((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)
        remaining.timeoutMilliseconds = max(1, limits.timeoutMilliseconds - spentMilliseconds)
        let outcome = executeStatement(sql: Renderer.render(stageTwo), parameters: parameters, limits: remaining, rowLimit: rowLimit,
                                       plan: stageTwoPlan, cancellation: cancellation, partialParameters: true, cached: false)
        switch outcome {
        case .success(var execution):
            execution.vmSteps &+= stageOneSteps
            execution.suppressedGroups = released.withheld
            execution.released = released
            return .success(execution)
        case .failure(var failure):
            failure.vmSteps &+= stageOneSteps
            failure.released = released
            if failure.error.code == .timeout {
                // The query's own timeout, not what stage 1 left of it.
                failure.error = GatewayError(.timeout, "the query ran longer than \(limits.timeoutMilliseconds) ms", hint: failure.error.hint)
            }
            return .failure(failure)
        }
    }

    /// Runs stage 1 and releases its groups: noise from the system CSPRNG, selection against the
    /// plan's threshold. Stage 1 rows never leave this function.
    private func releaseGroups(_ privacy: PrivatePlan, parameters: QueryParameters, limits: DatasetLimits,
                               cancellation: Cancellation?) -> Result<(groups: ReleasedGroups, steps: Int64), ExecutionFailure> {
        var generator = SystemRandomNumberGenerator()
        var rows: [[SQLValue]] = []
        var widths = [Double](repeating: 0, count: privacy.aggregates.count)
        var withheld = 0
        let outcome = runStageOne(privacy, parameters: parameters, limits: limits, cancellation: cancellation) { keys, raw in
            guard let noisy = privacy.release(raw: raw, using: &generator) else {
                withheld += 1
                return
            }
            rows.append(keys + noisy.values + [.integer(noisy.noisy[0])])
            for (index, width) in privacy.halfWidths(values: noisy.values, noisy: noisy.noisy).enumerated() {
                widths[index] = max(widths[index], width)
            }
        }
        return outcome.map { steps in
            if rows.isEmpty {
                // Nothing released: the half-widths are still the calibrated ones (never data).
                widths = privacy.halfWidths(values: privacy.aggregates.map { _ in .real(0) }, noisy: privacy.measurements.map { _ in 1 })
            }
            return (ReleasedGroups(rows: rows, halfWidths: widths, withheld: withheld), steps)
        }
    }

    /// Runs stage 1 of a private plan and hands each group's keys and exact (bounded, clamped)
    /// measurements to `visit`; returns the statement's VM steps. Only `releaseGroups` (and the
    /// tests of contribution bounding) see these values.
    func runStageOne(_ privacy: PrivatePlan, parameters: QueryParameters, limits: DatasetLimits, cancellation: Cancellation?,
                     visit: (_ keys: [SQLValue], _ raw: [SQLValue]) -> Void) -> Result<Int64, ExecutionFailure> {
        authorizer.reset(allowAggregateTables: true, allowPlanFunctions: true)
        defer { authorizer.reset(allowAggregateTables: false, allowPlanFunctions: false) }
        budget.arm(maxSteps: .max, timeoutMilliseconds: limits.timeoutMilliseconds, cancellation: cancellation)
        budget.patternStepCap = StageOneWork.patternStepCap
        defer {
            budget.disarm()
            budget.patternStepCap = .max
        }
        budget.lengthLimit = Self.aggregatePlanLengthLimit
        connection.setLimit(.length, Int32(clamping: Self.aggregatePlanLengthLimit))
        func failure(_ error: GatewayError, executed: Bool, steps: Int64 = 0, detail: String = "") -> Result<Int64, ExecutionFailure> {
            .failure(ExecutionFailure(error: error, vmSteps: steps, executed: executed, detail: detail))
        }
        if let error = Self.oversizedParameter(parameters) { return failure(error, executed: false) }
        let statement: Statement
        switch prepareStatement(privacy.stageOneSQL) {
        case .success(let prepared): statement = prepared
        case .failure(let error): return failure(error, executed: false)
        }
        defer { statement.reset() }
        if let error = bind(parameters, to: statement, partial: true) { return failure(error, executed: false) }
        var bounder = ContributionBounder(keyCount: privacy.keyCount, measureCount: privacy.measureColumns.count,
                                          maxRows: privacy.maxRowsPerUnit, maxGroups: privacy.maxGroupsPerUnit)
        let unitColumn = privacy.keyCount, firstMeasure = privacy.keyCount + 1
        var measures = [Double](repeating: 0, count: privacy.measureColumns.count)
        do {
            while try statement.step() {
                let keys = (0..<privacy.keyCount).map { statement.value(at: $0) }
                let unit = statement.withBytes(at: unitColumn) { UnitToken($0) }
                for index in measures.indices {
                    let column = firstMeasure + index
                    measures[index] = statement.type(at: column) == .null ? .nan : statement.real(at: column)
                }
                bounder.add(keys: keys, unit: unit, measures: measures)
            }
        } catch {
            return failure(stepError(error, limits: limits, rowLimit: 0), executed: true, steps: statement.virtualMachineSteps, detail: error.message)
        }
        for group in bounder.finish() {
            visit(group.keys, privacy.measured(units: group.units, rows: group.rows, counts: group.counts, sums: group.sums))
        }
        return .success(statement.virtualMachineSteps)
    }

    /// A value of a released group as a literal of stage 2's VALUES list (same storage class).
    static func literalExpression(_ value: SQLValue) -> Expr {
        switch value {
        case .null: return .literal(.null)
        case .integer(let number): return .literal(.number(String(number)))
        case .real(let number):
            if number.isNaN { return .literal(.null) }
            if number.isInfinite { return .literal(.number(number > 0 ? "9e999" : "-9e999")) }
            let text = "\(number)"
            return .literal(.number(text.contains(".") || text.contains("e") ? text : text + ".0"))
        case .text(let text): return .literal(.string(text))
        case .blob(let bytes): return .literal(.blob(bytes.map { String(format: "%02X", $0) }.joined()))
        }
    }

    private func packedRowsError(_ rowLimit: Int) -> GatewayError {
        GatewayError(.rowsLimitExceeded, "the query packs more than \(rowLimit) rows' values into its result",
                     hint: "group_concat, string_agg, json_group_array and json_group_object count every input row against the row limit; filter or aggregate further")
    }

    /// Binds `parameters`. `partial`: the statement is one stage of a private plan and may use
    /// only some of the query's parameters (each stage binds what it uses).
    private func bind(_ parameters: QueryParameters, to statement: Statement, partial: Bool = false) -> GatewayError? {
        let count = statement.parameterCount
        do {
            switch parameters {
            case .none:
                if count > 0 { return GatewayError(.badRequest, "the query has \(count) parameter(s) but none were given", hint: "send \"params\"") }
            case .positional(let values):
                for index in 1...max(count, 1) where index <= count {
                    if let name = statement.parameterName(at: index), !name.hasPrefix("?") {
                        return GatewayError(.badRequest, "parameter \(name) is named; send params as an object")
                    }
                }
                if partial, values.count >= count {
                    for index in 1...max(count, 1) where index <= count { try statement.bind(values[index - 1], at: index) }
                    return nil
                }
                guard values.count == count else {
                    return GatewayError(.badRequest, "the query has \(count) parameter(s) but \(values.count) were given")
                }
                try statement.bind(values)
            case .named(let values):
                var used = Set<String>()
                for index in 1...max(count, 1) where index <= count {
                    guard let name = statement.parameterName(at: index), !name.hasPrefix("?") else {
                        return GatewayError(.badRequest, "parameter \(index) is positional; send params as an array")
                    }
                    let key = String(name.dropFirst())
                    guard let value = values[key] else {
                        return GatewayError(.badRequest, "no value for parameter \(name)")
                    }
                    used.insert(key)
                    try statement.bind(value, at: index)
                }
                if !partial, let extra = values.keys.first(where: { !used.contains($0) }) {
                    return GatewayError(.badRequest, "the query has no parameter named '\(extra)'")
                }
            }
        } catch {
            return GatewayError(.badRequest, "cannot bind parameters: \(error.message)")
        }
        return nil
    }

    /// `SQLITE_LIMIT_LENGTH` while an aggregate plan runs (SQLite's compile-time maximum is 1e9).
    static let aggregatePlanLengthLimit = 1_000_000_000
    /// Longest text or blob parameter of a query on an aggregate table.
    static let aggregateParameterBytes = 1024

    static func oversizedParameter(_ parameters: QueryParameters) -> GatewayError? {
        guard parameters.longestBytes > aggregateParameterBytes else { return nil }
        return GatewayError(.badRequest, "a parameter of a query on an aggregate table is longer than \(aggregateParameterBytes) bytes",
                            hint: "parameters there are for filter values: dates, channels, cities")
    }

    /// Maps a prepare failure to the consumer's error, preferring what the authorizer recorded.
    private func prepareError(_ error: SQLiteError) -> GatewayError {
        if let denial = authorizer.firstDenial {
            switch denial {
            case .noSuchTable(let name):
                return GatewayError(.noSuchTable, "no such table: \(name)", hint: "`sandgate describe` lists the tables you can query")
            case .aggregateRequired(let name):
                return GatewayError(.aggregateRequired, "table \(name) is available only as aggregates",
                                    hint: "use GROUP BY with count, sum, avg … over its measures")
            case .functionNotAllowed(let name):
                return GatewayError(.functionNotAllowed, "function \(name)() is not allowed: \(FunctionCatalogue.reason(forRefused: name))",
                                    hint: "`sandgate describe --functions` lists the functions you can call")
            case .notASelect(let what):
                return GatewayError(.notASelect, "\(what) is not allowed; only SELECT queries run here", hint: "send one SELECT (or WITH … SELECT)")
            }
        }
        // By result code first. A plain SQLITE_ERROR at prepare has no finer code: SQLite says
        // only in its message which name it could not resolve, so that one case reads the
        // message's fixed prefixes (the checker has refused such queries before SQLite sees them;
        // this is the sandbox's own answer when it is reached directly).
        if error.isTooBig { return GatewayError(.requestTooLarge, "the query text is too long") }
        if error.isOutOfMemory {
            return GatewayError(.requestTooLarge, "the query is too complex to prepare", hint: "split it into smaller queries")
        }
        if error.isAuthorizationDenied {
            return GatewayError(.notASelect, "the query asks for something the sandbox does not allow", hint: "send one SELECT (or WITH … SELECT)")
        }
        let message = error.message
        if message.hasPrefix("no such table") || message.hasPrefix("access to view") {
            return GatewayError(.noSuchTable, message.hasPrefix("access to view") ? "no such table" : message,
                                hint: "`sandgate describe` lists the tables you can query")
        }
        if message.hasPrefix("no such column") { return GatewayError(.noSuchColumn, message, hint: "`sandgate describe` lists the columns you can query") }
        if message.hasPrefix("no such function") {
            let name = message.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return GatewayError(.functionNotAllowed, "function \(name)() is not allowed: \(FunctionCatalogue.reason(forRefused: name))",
                                hint: "`sandgate describe --functions` lists the functions you can call")
        }
        return GatewayError(.syntaxError, message)
    }

    /// Runtime failures get a fixed message per class: SQLite's own text can quote values (a JSON
    /// path error quotes its argument), so it goes only to the server log.
    private func stepError(_ error: SQLiteError, limits: DatasetLimits, rowLimit: Int) -> GatewayError {
        if counters.packedExceeded { return packedRowsError(rowLimit) }
        if error.isInterrupt || budget.stopReason != .none {
            switch budget.stopReason {
            case .cancelled:
                return GatewayError(.cancelled, "the query was cancelled by the client")
            case .time:
                return GatewayError(.timeout, "the query ran longer than \(limits.timeoutMilliseconds) ms", hint: "add filters or aggregate")
            default:
                return GatewayError(.budgetExceeded, "the query exceeded its budget of \(limits.maxVMSteps) VM steps", hint: "add filters or aggregate")
            }
        }
        if error.isTooBig { return GatewayError(.resultTooLarge, "a value exceeded the size limit", hint: "the limit is \(min(limits.maxResultBytes, ResultStorage.maximumValueLength)) bytes per value") }
        if error.isOutOfMemory { return GatewayError(.budgetExceeded, "the query exceeded its memory budget") }
        return GatewayError(.badRequest, "the query failed while running",
                            hint: "a function or operator was given a value it cannot handle (SQLite's message is withheld: it can quote data)")
    }
}

/// Step and time budget, checked by SQLite's progress handler every `interval` instructions.
final class BudgetState {
    enum StopReason { case none, steps, time, cancelled }
    /// Small enough that a statement whose rows each cost milliseconds (an 8 MB value built per row)
    /// still looks at the clock every few rows.
    static let interval: Int32 = 100

    private var steps: Int64 = 0
    private var maxSteps: Int64 = .max
    private var deadline: UInt64 = .max
    private var cancellation: Cancellation?
    private(set) var stopReason = StopReason.none
    /// Nanoseconds of a monotonic clock; tests replace it to decide when the deadline passes.
    var now: () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }
    /// `SQLITE_LIMIT_LENGTH` of the running statement, for functions that build values.
    var lengthLimit = ResultStorage.maximumValueLength
    /// Longest LIKE/GLOB pattern, in bytes (`SQLITE_LIMIT_LIKE_PATTERN_LENGTH`).
    let likePatternLimit = 1000
    /// Matcher steps after which one LIKE/GLOB call answers NULL: set while stage 1 of a private
    /// plan runs (`StageOneWork.patternStepCap`), so that every row's work has a bound.
    var patternStepCap = Int.max

    /// For functions that watch the clock themselves: true (and the stop reason set) once the
    /// deadline has passed.
    func deadlinePassed() -> Bool {
        if cancellation?.isCancelled == true {
            stopReason = .cancelled
            return true
        }
        guard now() > deadline else { return false }
        stopReason = .time
        return true
    }

    func arm(maxSteps: Int64, timeoutMilliseconds: Int, cancellation: Cancellation? = nil) {
        self.cancellation = cancellation
        steps = 0
        self.maxSteps = maxSteps
        deadline = now() + UInt64(timeoutMilliseconds) * 1_000_000
        stopReason = .none
    }

    func disarm() {
        cancellation = nil
        maxSteps = .max
        deadline = .max
    }

    /// Returns true to interrupt the statement.
    func tick() -> Bool {
        steps += Int64(Self.interval)
        if steps > maxSteps {
            stopReason = .steps
            return true
        }
        return deadlinePassed()
    }
}
