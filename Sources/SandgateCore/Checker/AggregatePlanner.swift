import SandgatePolicy
import SandgateSQL

/// The release model of DESIGN.md §3 for every query that touches an aggregate table: the query
/// must fit a fixed shape, and sandgate builds a two-stage plan from it.
///
/// - *Stage 1*, inside the threshold: a join tree of published tables (INNER joins on
///   `column = column`, every joined rows table unique on its join columns, so that no row of the
///   aggregate table is counted twice), WHERE and GROUP BY through `StageOneFunctions` only, the
///   allowed aggregates over bare measures and `count(DISTINCT unit)`. It is materialised once.
/// - *Stage 2*, over released groups only (`count(DISTINCT unit) >= k`): the consumer's HAVING,
///   expressions over the aggregates, ORDER BY, LIMIT/OFFSET.
///
/// ```
/// WITH __sg_g AS MATERIALIZED (
///        SELECT <keys> AS __sg_k0…, <aggregates> AS __sg_a0…, __sg_tally(count(DISTINCT o.__sg_unit), k) AS __sg_n
///        FROM <join tree> WHERE <where> GROUP BY <keys>)
/// SELECT <outputs over __sg_k*, __sg_a*> FROM __sg_g WHERE __sg_n >= k AND (<having>) ORDER BY … LIMIT …
/// ```
/// `__sg_tally` counts the groups below the threshold as stage 1 is materialised, so
/// `suppressed_groups` never depends on the consumer's HAVING. With `small_groups: remainder`,
/// stage 1 first materialises the rows with their keys evaluated once, and the small groups'
/// rows are re-aggregated into one NULL-keyed group that must reach k itself.
struct AggregatePlanner {
    let policy: DatasetPolicy
    let facts: SnapshotFacts
    private(set) var rules: [String] = []

    /// A column of one relation of the join tree.
    struct Bound {
        let relation: Int
        let column: RelationColumn
    }

    /// One aggregate of stage 1.
    struct Aggregate {
        /// The call as written, columns resolved (for deduplication).
        let canonical: String
        let name: String
        let distinct: Bool
        /// nil for `count(*)`.
        let argument: Bound?
        /// `count(DISTINCT unit)`.
        let countsUnits: Bool
    }

    private var relations: [Relation] = []
    private var tables: [TablePolicy] = []
    /// Lower-cased names merged by USING or NATURAL, with the relations that hold them.
    private var merged: [String: Set<Int>] = [:]
    private var equalities: [(Bound, Bound)] = []
    private var aggregateRelation = 0
    private var keys: [(canonical: String, expr: Expr, masked: Bool)] = []
    private var aggregates: [Aggregate] = []
    /// Columns each relation must provide (for the materialised copies of joined rows tables).
    private var used: [Int: [String]] = [:]

    static let grouped = "__sg_g", rowsTable = "__sg_r", sizesTable = "__sg_s"
    static let unitCount = "__sg_n", unitValue = "__sg_u"

    init(policy: DatasetPolicy, facts: SnapshotFacts) {
        self.policy = policy
        self.facts = facts
    }

    /// True when `select` reads an aggregate table anywhere (then the whole query is planned here).
    static func touchesAggregateTable(_ select: Select, policy: DatasetPolicy) -> Bool {
        select.referencedTables.contains { policy.table(named: $0)?.access == .aggregate }
    }

    private mutating func note(_ rule: String) {
        if !rules.contains(rule) { rules.append(rule) }
    }

    // MARK: Planning

    mutating func plan(_ original: Select) throws(GatewayError) -> CheckedQuery {
        let select = Self.numberingParameters(original)
        guard select.with == nil else {
            throw GatewayError(.shapeNotAllowed, "WITH is not allowed in a query on an aggregate table",
                               hint: "write the joins and filters directly in one SELECT")
        }
        guard case .core(let core) = select.body else {
            throw GatewayError(.shapeNotAllowed, "UNION, INTERSECT, EXCEPT and VALUES are not allowed in a query on an aggregate table")
        }
        guard core.windows.isEmpty else {
            throw GatewayError(.shapeNotAllowed, "window functions are not allowed in a query on an aggregate table")
        }
        guard let from = core.from else {
            throw GatewayError(.shapeNotAllowed, "an aggregate table may be used only in the FROM clause of the top-level SELECT",
                               hint: "not inside a subquery, CTE or compound SELECT")
        }
        try readJoinTree(from)
        let aggregateIndices = relations.indices.filter { tables[$0].access == .aggregate }
        guard aggregateIndices.count == 1, let index = aggregateIndices.first else {
            if aggregateIndices.isEmpty {
                throw GatewayError(.shapeNotAllowed, "an aggregate table may be used only in the FROM clause of the top-level SELECT",
                                   hint: "not inside a subquery, CTE or compound SELECT")
            }
            throw GatewayError(.shapeNotAllowed, "a query may read one aggregate table (and join rows tables to it)",
                               hint: "self-joins and joins of two aggregate tables would count rows more than once")
        }
        aggregateRelation = index
        let table = tables[index]
        let minimum = table.minGroupSize ?? Int.max
        try checkEqualities()
        try checkUniqueness()
        if let condition = core.whereClause { try checkStageOne(condition) }

        // Result columns, their names, and GROUP BY keys (ordinals and aliases allowed).
        var outputs: [(expr: Expr, name: String)] = []
        for column in core.columns {
            guard case .expr(let expr, let alias, let span) = column else {
                throw GatewayError(.aggregateRequired, "table \(table.name) is available only as aggregates",
                                   hint: "name the GROUP BY terms and aggregates instead of *")
            }
            if let alias, alias.lowercased().hasPrefix(Checker.internalPrefix) {
                throw GatewayError(.syntaxError, "names starting with \(Checker.internalPrefix) are reserved", hint: "rename the column \(alias)")
            }
            var name = alias ?? span
            if alias == nil, case .column(let reference) = expr { name = reference.column }
            outputs.append((expr, name))
        }
        for term in core.groupBy {
            let key = try groupingTerm(term, outputs: outputs, aliases: core.columns)
            if Checker.containsAggregateCall(key) {
                throw GatewayError(.syntaxError, "aggregate functions are not allowed in the GROUP BY clause")
            }
            if Self.containsCollate(key) {
                throw GatewayError(.shapeNotAllowed, "COLLATE is not allowed in GROUP BY of a query on an aggregate table",
                                   hint: "a group of values that compare equal would show one row's spelling; group by lower(x) instead")
            }
            try checkStageOne(key)
            let canonical = self.canonical(key)
            if !keys.contains(where: { $0.canonical == canonical }) {
                keys.append((canonical, qualified(key), isMasked(key)))
            }
        }
        let containsAggregate = outputs.contains { Checker.containsAggregateCall($0.expr) }
        guard containsAggregate || !core.groupBy.isEmpty else {
            throw GatewayError(.aggregateRequired, "table \(table.name) is available only as aggregates",
                               hint: "use GROUP BY with count, sum, avg … over its measures")
        }

        // Stage 2: everything the consumer computes from keys and aggregates.
        var mappedOutputs: [(expr: Expr, name: String, masked: Bool)] = []
        for output in outputs {
            mappedOutputs.append((try stageTwo(output.expr, aliases: []), output.name, isMasked(output.expr)))
        }
        let aliases = zip(core.columns, mappedOutputs).compactMap { column, mapped -> (String, Expr)? in
            if case .expr(_, let alias?, _) = column { return (alias, mapped.expr) }
            return nil
        }
        let having = try core.having.map { (expr: Expr) throws(GatewayError) -> Expr in try stageTwo(expr, aliases: aliases) }
        var orderBy: [OrderingTerm] = []
        for var term in select.orderBy {
            if case .literal(.number(let text)) = term.expr, let position = Int(text) {
                guard position >= 1, position <= outputs.count else { throw GatewayError(.syntaxError, "ORDER BY term out of range: \(text)") }
            } else if case .column(let reference) = term.expr, reference.table == nil,
                      outputs.contains(where: { equalNames($0.name, reference.column) }) {
                // An output name: the outer SELECT has it as an alias.
            } else {
                term.expr = try stageTwo(term.expr, aliases: aliases)
            }
            orderBy.append(term)
        }
        if let limit = select.limit {
            try checkConstant(limit.count)
            if let offset = limit.offset { try checkConstant(offset) }
        }

        if let privacy = table.privacy {
            return try privatePlan(core: core, select: select, privacy: privacy, minimum: minimum,
                                   outputs: mappedOutputs, having: having, orderBy: orderBy)
        }
        note("threshold: groups of \(table.name) need at least \(minimum) distinct \(table.privacyUnit ?? "units"); smaller groups are \(table.smallGroups == .drop ? "dropped" : "merged into one remainder group")")
        note("two-stage plan: HAVING, ORDER BY and LIMIT apply to released groups only")

        let remainder = table.smallGroups == .remainder && keys.contains { !Self.isLiteral($0.expr) }
        var commonTables = materializedRowsTables()
        commonTables += remainder
            ? remainderStage(whereClause: core.whereClause.map(qualified), minimum: minimum)
            : [dropStage(whereClause: core.whereClause.map(qualified), minimum: minimum)]

        let released = Expr.binary(.greaterEqual, Self.column(Self.unitCount), .literal(.number(String(minimum))))
        let outer = SelectCore(
            distinct: core.distinct,
            columns: mappedOutputs.map { .expr($0.expr, alias: $0.name, span: $0.name) },
            from: .table(name: Self.grouped, schema: nil, alias: nil, indexHint: nil),
            whereClause: having.map { .binary(.and, released, $0) } ?? released)
        let planned = Select(with: With(recursive: false, tables: commonTables), body: .core(outer), orderBy: orderBy, limit: select.limit)
        return CheckedQuery(
            select: planned, maskedOutputs: mappedOutputs.map(\.masked), rules: rules,
            plan: ExecutionPlan(isAggregatePlan: true, tables: tables.map(\.name)))
    }

    // MARK: Differential privacy


    /// The plan of a query on a table with `privacy:` (issue 10): stage 1 reads the rows with
    /// their keys, unit and clamped measures; the sandbox bounds each unit's contribution (at
    /// most `max_rows_per_unit` rows per group, `max_groups_per_unit` groups, chosen at random
    /// per query: `ContributionBounder`), adds exact discrete noise, selects groups and runs
    /// stage 2 over the released groups only (`PrivatePlan`).
    private mutating func privatePlan(
        core: SelectCore, select: Select, privacy: PrivacyPolicy, minimum: Int,
        outputs: [(expr: Expr, name: String, masked: Bool)], having: Expr?, orderBy: [OrderingTerm]
    ) throws(GatewayError) -> CheckedQuery {
        let table = tables[aggregateRelation]
        // Measurements: units first (group selection), then what the aggregates need.
        var measurements = [NoisyMeasurement(kind: .units, bounds: nil)]
        func index(of kind: NoisyMeasurement.Kind, bounds: MeasureBounds?) -> Int {
            if let found = measurements.firstIndex(where: { $0.kind == kind }) { return found }
            measurements.append(NoisyMeasurement(kind: kind, bounds: bounds))
            return measurements.count - 1
        }
        var noisy: [NoisyAggregate] = []
        var names: [String] = []
        for aggregate in aggregates {
            if aggregate.distinct, !aggregate.countsUnits {
                throw GatewayError(.shapeNotAllowed, "\(aggregate.canonical) is not available on \(table.name): DISTINCT over a measure has no bounded sensitivity",
                                   hint: "use count(*), count(\(aggregate.argument?.column.name ?? "m")), sum or avg")
            }
            names.append(aggregate.countsUnits ? "count(DISTINCT \(table.privacyUnit ?? "unit"))" : aggregate.argument.map { "\(aggregate.name)(\($0.column.name))" } ?? "count(*)")
            guard let bound = aggregate.argument, !aggregate.countsUnits else {
                noisy.append(.count(aggregate.countsUnits ? 0 : index(of: .rows, bounds: nil)))
                continue
            }
            let column = bound.column.name
            let bounds = bound.column.policy?.bounds
            switch aggregate.name {
            case "count":
                noisy.append(.count(index(of: .values(column), bounds: nil)))
            case "sum", "total":
                guard let bounds else { throw Self.unbounded(table.name, column) }
                noisy.append(.sum(index(of: .sum(column), bounds: bounds), real: aggregate.name == "total" || bounds.decimals > 0))
            case "avg":
                guard let bounds else { throw Self.unbounded(table.name, column) }
                let sum = index(of: .sum(column), bounds: bounds)
                noisy.append(.average(sum: sum, count: index(of: .values(column), bounds: nil), bounds: bounds))
            default:
                throw GatewayError(.functionNotAllowed, "\(aggregate.name)(\(column)) is not available on \(table.name): it releases one individual's value")
            }
        }
        guard let calibrated = PrivatePlan.calibrate(measurements: measurements, privacy: privacy, minGroupSize: minimum) else {
            throw GatewayError(.unavailable, "the privacy settings of \(table.name) cannot be calibrated", hint: "the data holder should run `sandgate policy check`")
        }
        let epsilon = Double(privacy.epsilonPerQueryMicros) / Double(PrivacyPolicy.microsPerEpsilon)
        note("differential privacy: this query spends ε = \(epsilon) of the table's budget of \(Double(privacy.budgetMicros) / 1e6) per \(privacy.period == .total ? "consumer (never refreshed)" : privacy.period.rawValue) (a grant may lower it: see the budget line); an identical query on the same snapshot returns the same answer and spends nothing")
        note("each \(table.privacyUnit ?? "unit") contributes at most \(privacy.maxRowsPerUnit) rows to each of at most \(privacy.maxGroupsPerUnit) groups (chosen at random per query); measures are clamped to their bounds")
        note("private group selection: a group is released only if its noisy count of distinct \(table.privacyUnit ?? "units") reaches \(calibrated.threshold) (δ = \(privacy.delta), min_group_size \(minimum))")

        let stageOne = privateStageOne(whereClause: core.whereClause.map(qualified), measurements: measurements, privacy: privacy)
        let keyNames = keys.indices.map { "__sg_k\($0)" }
        let aggregateNames = aggregates.indices.map { "__sg_a\($0)" }
        // What `rendered` shows and what a statement description prepares: stage 2 over an
        // empty stand-in for the released groups (the sandbox puts the noisy groups there).
        let standIn = CommonTable(name: Self.grouped, columns: keyNames + aggregateNames + [Self.unitCount], materialized: nil,
                                  select: Self.releasedGroups([], width: keyNames.count + aggregateNames.count + 1))
        let outer = SelectCore(
            distinct: core.distinct,
            columns: outputs.map { .expr($0.expr, alias: $0.name, span: $0.name) },
            from: .table(name: Self.grouped, schema: nil, alias: nil, indexHint: nil),
            whereClause: having)
        let stageTwo = Select(body: .core(outer), orderBy: orderBy, limit: select.limit)
        var shown = stageTwo
        shown.with = With(recursive: false, tables: [standIn])
        let plan = PrivatePlan(
            stageOneSQL: Renderer.render(stageOne), stageTwo: stageTwo, keyCount: keys.count, measurements: measurements,
            calibrations: calibrated.calibrations, aggregates: noisy, threshold: calibrated.threshold,
            epsilonMicros: privacy.epsilonPerQueryMicros, budgetMicros: privacy.budgetMicros, period: privacy.period, aggregateNames: names,
            outputAggregates: outputs.map { output -> Int? in
                if case .column(let reference) = output.expr, reference.column.hasPrefix("__sg_a") { return Int(reference.column.dropFirst(6)) }
                return nil
            },
            measureColumns: Self.measureColumns(measurements), maxGroupsPerUnit: privacy.maxGroupsPerUnit, maxRowsPerUnit: privacy.maxRowsPerUnit,
            work: StageOneWork(select: stageOne))
        return CheckedQuery(
            select: shown, maskedOutputs: outputs.map(\.masked), rules: rules,
            plan: ExecutionPlan(isAggregatePlan: true, tables: tables.map(\.name), privacy: plan))
    }

    private static func unbounded(_ table: String, _ column: String) -> GatewayError {
        GatewayError(.functionNotAllowed, "\(table).\(column) has no bounds, so its sum cannot be released privately", hint: "the data holder sets bounds: [lower, upper] on the measure")
    }

    /// Released groups as a VALUES list (or an empty SELECT of `width` NULLs when there are none).
    static func releasedGroups(_ rows: [[Expr]], width: Int) -> Select {
        if rows.isEmpty {
            return Select(body: .core(SelectCore(columns: (0..<width).map { _ in .expr(.literal(.null), alias: nil, span: "NULL") },
                                                 whereClause: .literal(.number("0")))))
        }
        return Select(body: .values(rows))
    }

    /// The measures a private plan's stage 1 reads, once each, in the order of its columns.
    static func measureColumns(_ measurements: [NoisyMeasurement]) -> [String] {
        var names: [String] = []
        for measurement in measurements {
            switch measurement.kind {
            case .values(let name), .sum(let name):
                if !names.contains(name) { names.append(name) }
            default: break
            }
        }
        return names
    }

    /// Stage 1 of a private plan: one row per row of the join tree that passes WHERE, with the
    /// GROUP BY keys evaluated once, the unit's token and each measure clamped to its bounds
    /// (scalar max/min of NULL are NULL: NULLs stay uncounted). `ContributionBounder` bounds
    /// each unit's contribution over these rows in one pass.
    private func privateStageOne(whereClause: Expr?, measurements: [NoisyMeasurement], privacy: PrivacyPolicy) -> Select {
        func literal(_ value: Double) -> Expr { .literal(.number(Self.numberText(value))) }
        var columns: [ResultColumn] = keys.enumerated().map { .expr($0.element.expr, alias: "__sg_k\($0.offset)", span: "") }
        columns.append(.expr(unitReference(), alias: Self.unitValue, span: ""))
        for (index, name) in Self.measureColumns(measurements).enumerated() {
            var value = Self.column(name, relations[aggregateRelation].name)
            let bounds = measurements.first { if case .sum(name) = $0.kind { true } else { false } }?.bounds
                ?? tables[aggregateRelation].column(named: name)?.bounds
            if let bounds {
                value = Self.call("max", [literal(bounds.lower), Self.call("min", [literal(bounds.upper), value])])
            }
            columns.append(.expr(value, alias: "__sg_v\(index)", span: ""))
        }
        let copies = materializedRowsTables()
        return Select(with: copies.isEmpty ? nil : With(recursive: false, tables: copies), body: .core(SelectCore(
            columns: columns, from: joinTree(), whereClause: whereClause)))
    }

    /// A number as SQL text that SQLite reads back as the same value (integers without a point).
    static func numberText(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 9e15 { return String(Int64(value)) }
        return "\(value)"
    }

    // MARK: Join tree

    private mutating func readJoinTree(_ item: FromItem) throws(GatewayError) {
        switch item {
        case .table(let name, let schema, let alias, let hint):
            if name.lowercased().hasPrefix(Checker.internalPrefix) || (alias?.lowercased().hasPrefix(Checker.internalPrefix) ?? false) {
                throw GatewayError(.noSuchTable, "no such table: \(name)", hint: "names starting with \(Checker.internalPrefix) are reserved; " + Suggestions.tableHint(name, policy: policy))
            }
            if let schema { throw GatewayError(.noSuchTable, "no such table: \(schema).\(name)", hint: "write table names without a schema") }
            if hint != nil { throw GatewayError(.shapeNotAllowed, "INDEXED BY and NOT INDEXED are not available", hint: "indexes are not part of the published dataset") }
            guard let table = policy.table(named: name) else {
                throw GatewayError(.noSuchTable, "no such table: \(name)", hint: Suggestions.tableHint(name, policy: policy))
            }
            let relationName = alias ?? table.name
            if relations.contains(where: { equalNames($0.name, relationName) }) {
                throw GatewayError(.shapeNotAllowed, "table \(relationName) appears twice", hint: "give each table its own alias")
            }
            if table.rowFilter != nil { note("rows of \(table.name) are filtered by the policy") }
            let columns = table.visibleColumns.map { RelationColumn(name: $0.name, masked: $0.mask != nil, table: table, policy: $0) }
            relations.append(Relation(name: relationName, columns: columns, table: table))
            tables.append(table)
        case .tableFunction(let name, _, _, _):
            throw GatewayError(.shapeNotAllowed, "table-valued function \(name)() is not allowed in a query on an aggregate table")
        case .subquery:
            throw GatewayError(.shapeNotAllowed, "subqueries are not allowed in a query on an aggregate table",
                               hint: "join published tables directly")
        case .group(let inner):
            try readJoinTree(inner)
        case .join(let left, let op, let right, let constraint):
            switch op.kind {
            case .inner: break
            case .left, .right, .full:
                throw GatewayError(.shapeNotAllowed, "outer joins are not allowed in a query on an aggregate table",
                                   hint: "use INNER JOIN … ON a = b")
            case .comma, .cross:
                throw GatewayError(.shapeNotAllowed, "a query on an aggregate table joins with INNER JOIN … ON a = b",
                                   hint: "a comma or CROSS JOIN pairs every row with every row")
            }
            try readJoinTree(left)
            let leftCount = relations.count
            try readJoinTree(right)
            let leftSide = 0..<leftCount, rightSide = leftCount..<relations.count
            var shared: [String] = []
            if op.natural {
                guard constraint == nil else { throw GatewayError(.syntaxError, "a NATURAL join may not have an ON or USING clause") }
                let leftNames = Set(leftSide.flatMap { relations[$0].columns.map { $0.name.lowercased() } })
                shared = rightSide.flatMap { relations[$0].columns.map { $0.name.lowercased() } }.filter(leftNames.contains)
                guard !shared.isEmpty else {
                    throw GatewayError(.shapeNotAllowed, "this NATURAL JOIN has no common columns", hint: "use INNER JOIN … ON a = b")
                }
            }
            switch constraint {
            case .using(let names)?: shared = names.map { $0.lowercased() }
            case .on(let condition)?: try readJoinCondition(condition, relations: 0..<relations.count)
            case nil:
                if !op.natural {
                    throw GatewayError(.shapeNotAllowed, "a join of an aggregate table needs ON a = b", hint: "a join without a condition pairs every row with every row")
                }
            }
            for name in shared {
                // A merged column is both sides' column: resolved to every side it comes from.
                let onLeft = leftSide.filter { relations[$0].column(name) != nil }
                let onRight = rightSide.filter { relations[$0].column(name) != nil }
                guard onLeft.count == 1, onRight.count == 1, let l = onLeft.first, let r = onRight.first,
                      let leftColumn = relations[l].column(name), let rightColumn = relations[r].column(name) else {
                    throw GatewayError(.noSuchColumn, "cannot join using column \(name) - column not present in exactly one table on each side")
                }
                equalities.append((Bound(relation: l, column: leftColumn), Bound(relation: r, column: rightColumn)))
                merged[name, default: []].formUnion([l, r])
                use(Bound(relation: l, column: leftColumn))
                use(Bound(relation: r, column: rightColumn))
            }
        }
    }

    /// ON must be a conjunction of `column = column`; nothing else (no literal, no OR).
    private mutating func readJoinCondition(_ condition: Expr, relations scope: Range<Int>) throws(GatewayError) {
        switch condition {
        case .binary(.and, let left, let right):
            try readJoinCondition(left, relations: scope)
            try readJoinCondition(right, relations: scope)
        case .binary(.equal, .column(let a), .column(let b)):
            let first = try resolve(a), second = try resolve(b)
            guard first.count == 1, second.count == 1 else {
                throw GatewayError(.shapeNotAllowed, "a column merged by USING cannot be compared again in ON")
            }
            equalities.append((first[0], second[0]))
        default:
            throw GatewayError(.shapeNotAllowed, "ON in a query on an aggregate table must be column = column equalities joined by AND",
                               hint: "no literals, OR or other operators in ON; filter dimensions in WHERE")
        }
    }

    private func checkEqualities() throws(GatewayError) {
        for (a, b) in equalities {
            guard a.relation != b.relation else {
                throw GatewayError(.shapeNotAllowed, "ON compares two columns of \(relations[a.relation].name)", hint: "ON joins two different tables")
            }
            for side in [a, b] where side.column.policy?.role == .measure {
                throw GatewayError(.columnNotAllowed, "measure \(relations[side.relation].name).\(side.column.name) may not be used to join",
                                   hint: "join on a join_key column")
            }
        }
    }

    /// Every rows table must be unique on columns equated to tables already known to give at most
    /// one row per row of the aggregate table.
    private func checkUniqueness() throws(GatewayError) {
        var determined: Set<Int> = [aggregateRelation]
        var changed = true
        while changed {
            changed = false
            for index in relations.indices where !determined.contains(index) {
                var bound: Set<String> = []
                for (a, b) in equalities {
                    if a.relation == index, determined.contains(b.relation), Self.preservesUniqueness(a.column) { bound.insert(a.column.name.lowercased()) }
                    if b.relation == index, determined.contains(a.relation), Self.preservesUniqueness(b.column) { bound.insert(b.column.name.lowercased()) }
                }
                let keys = facts.uniqueKeys[tables[index].name.lowercased()] ?? []
                if keys.contains(where: { !$0.isEmpty && $0.isSubset(of: bound) }) {
                    determined.insert(index)
                    changed = true
                }
            }
        }
        if let index = relations.indices.first(where: { !determined.contains($0) }) {
            let table = tables[index]
            let keys = (facts.uniqueKeys[table.name.lowercased()] ?? []).map { "(" + $0.sorted().joined(separator: ", ") + ")" }
            throw GatewayError(.shapeNotAllowed,
                               "\(relations[index].name) must be joined on columns it is unique on, so that no row of \(tables[aggregateRelation].name) is counted twice",
                               hint: keys.isEmpty ? "\(table.name) has no primary key or unique index that can be joined on" : "\(table.name) is unique on \(keys.joined(separator: " or "))")
        }
    }

    /// Masks other than join tokens can map two values to one: such a column proves nothing unique.
    private static func preservesUniqueness(_ column: RelationColumn) -> Bool {
        guard let policy = column.policy else { return false }
        return policy.mask == nil || policy.role == .joinKey
    }

    // MARK: Names

    private mutating func use(_ bound: Bound) {
        let name = bound.column.name
        if !(used[bound.relation]?.contains(name) ?? false) { used[bound.relation, default: []].append(name) }
    }

    /// Resolves a column reference to every relation it names (two for a merged USING column).
    private mutating func resolve(_ reference: ColumnReference) throws(GatewayError) -> [Bound] {
        let found = try find(reference)
        for bound in found { use(bound) }
        return found
    }

    /// `resolve` without noting the columns as used (for canonical forms and rendering).
    private func find(_ reference: ColumnReference) throws(GatewayError) -> [Bound] {
        if let schema = reference.schema {
            throw GatewayError(.noSuchTable, "no such table: \(schema).\(reference.table ?? "")", hint: "write table names without a schema")
        }
        let found: [Bound]
        if let table = reference.table {
            guard let index = relations.firstIndex(where: { equalNames($0.name, table) }) else {
                throw GatewayError(.noSuchColumn, "no such column: \(table).\(reference.column)", hint: columnHint(missing: reference.column))
            }
            guard let column = relations[index].column(reference.column) else {
                throw GatewayError(.noSuchColumn, "no such column: \(table).\(reference.column)", hint: columnHint([index], missing: reference.column))
            }
            found = [Bound(relation: index, column: column)]
        } else {
            found = relations.indices.compactMap { index in relations[index].column(reference.column).map { Bound(relation: index, column: $0) } }
            guard !found.isEmpty else {
                throw GatewayError(.noSuchColumn, "no such column: \(reference.column)", hint: columnHint(missing: reference.column))
            }
            if found.count > 1, !Set(found.map(\.relation)).isSubset(of: merged[reference.column.lowercased()] ?? []) {
                throw GatewayError(.syntaxError, "ambiguous column name: \(reference.column)")
            }
        }
        return found
    }

    private func columnHint(_ indices: [Int]? = nil, missing: String) -> String {
        let names = (indices ?? Array(relations.indices)).flatMap { relations[$0].columns.map(\.name) }
        return names.isEmpty ? "`sandgate describe` lists the columns you can query"
            : Suggestions.didYouMean(missing, among: names) + "columns here: " + names.prefix(20).joined(separator: ", ")
    }

    /// The expression with every column written `relation.column`, in the case the policy uses.
    private func qualified(_ expr: Expr) -> Expr {
        expr.transformed { node in
            guard case .column(let reference) = node, let bound = try? lookup(reference) else { return nil }
            return .column(ColumnReference(schema: nil, table: relations[bound.relation].name, column: bound.column.name))
        }
    }

    /// The first relation a reference names (for rendering after the checks).
    private func lookup(_ reference: ColumnReference) throws(GatewayError) -> Bound {
        guard let first = try find(reference).first else {
            throw GatewayError(.noSuchColumn, "no such column: \(reference.column)", hint: columnHint(missing: reference.column))
        }
        return first
    }

    private func canonical(_ expr: Expr) -> String {
        Renderer.render(expr.transformed { node in
            guard case .column(let reference) = node, let bound = try? lookup(reference) else { return nil }
            return .column(ColumnReference(schema: nil, table: relations[bound.relation].name.lowercased(), column: bound.column.name.lowercased()))
        })
    }

    private func isMasked(_ expr: Expr) -> Bool {
        var masked = false
        _ = expr.transformed { node in
            if case .column(let reference) = node, let bound = try? lookup(reference), bound.column.masked { masked = true }
            return nil
        }
        return masked
    }

    private mutating func groupingTerm(_ term: Expr, outputs: [(expr: Expr, name: String)], aliases: [ResultColumn]) throws(GatewayError) -> Expr {
        if case .literal(.number(let text)) = term, let position = Int(text) {
            guard position >= 1, position <= outputs.count else {
                throw GatewayError(.syntaxError, "GROUP BY term out of range - should be between 1 and \(outputs.count)")
            }
            return outputs[position - 1].expr
        }
        // A name that is not a column may be an output alias, as in SQLite.
        if case .column(let reference) = term, reference.table == nil, (try? lookup(reference)) == nil {
            for column in aliases {
                if case .expr(let expr, let alias?, _) = column, equalNames(alias, reference.column) { return expr }
            }
        }
        return term
    }

    // MARK: Stage 1 expressions

    /// WHERE and GROUP BY: dimensions and visible columns through `StageOneFunctions`.
    private mutating func checkStageOne(_ expr: Expr) throws(GatewayError) {
        switch expr {
        case .literal(let literal):
            if [.currentTime, .currentDate, .currentTimestamp].contains(literal) { throw Self.nonDeterministic("CURRENT_TIME/CURRENT_DATE/CURRENT_TIMESTAMP") }
        case .parameter:
            break
        case .column(let reference):
            for bound in try resolve(reference) { try checkStageOneColumn(bound) }
        case .binary(let op, _, _) where StageOneFunctions.refusedOperators.contains(op):
            throw GatewayError(.shapeNotAllowed, "operator \(op.rawValue) is not allowed in WHERE or GROUP BY of a query on an aggregate table",
                               hint: "it can fail on some values, which would tell about rows of withheld groups; group by the columns separately")
        case .collate(_, let name) where !StageOneFunctions.collations.contains(name.lowercased()):
            throw GatewayError(.syntaxError, "no such collation sequence: \(name)")
        case .pattern(let operand, let op, let pattern, let escape, _):
            guard op == .like || op == .glob else {
                throw GatewayError(.functionNotAllowed, "\(op.rawValue) is not available")
            }
            try checkStageOne(operand)
            // Literals only: a bound pattern over the length limit, or a two-character ESCAPE,
            // is an error, and an error on some rows (`iif(<predicate>, x LIKE ?, 1)`) would say
            // whether those rows exist.
            guard case .literal(.string(let text)) = pattern, text.utf8.count <= 1000 else {
                throw GatewayError(.shapeNotAllowed, "in a query on an aggregate table the pattern of \(op.rawValue) must be a string literal of at most 1000 bytes")
            }
            switch escape {
            case nil: break
            case .literal(.string(let text))? where text.unicodeScalars.count == 1: break
            default: throw GatewayError(.shapeNotAllowed, "ESCAPE must be one character, written as a string literal")
            }
        case .inSelect, .inTable, .exists, .subquery:
            throw GatewayError(.shapeNotAllowed, "subqueries are not allowed in a query on an aggregate table")
        case .function(let call):
            let name = call.name.lowercased()
            if call.over != nil { throw GatewayError(.shapeNotAllowed, "window functions are not allowed in a query on an aggregate table") }
            if Checker.valueRevealingAggregates.contains(name) { throw Self.concatenating(call.name) }
            if Checker.isAggregate(call) { throw GatewayError(.syntaxError, "misuse of aggregate function \(call.name)()") }
            if StageOneFunctions.nonDeterministic.contains(name) || StageOneFunctions.readsClock(call) { throw Self.nonDeterministic("\(call.name)()") }
            if !FunctionAllowlist.allows(name), !FunctionRules.boundedFunctions.contains(name) { throw Suggestions.functionError(call.name) }
            guard let arity = StageOneFunctions.arities[name], arity.contains(call.arguments.count), !call.distinct, !call.star, call.filter == nil else {
                throw GatewayError(.functionNotAllowed, "function \(call.name)() is not allowed in WHERE or GROUP BY of a query on an aggregate table",
                                   hint: "allowed there: " + StageOneFunctions.arities.keys.sorted().joined(separator: ", "))
            }
            // strftime's output grows with its format: a long one passes the length limit.
            if name == "strftime" {
                guard case .literal(.string(let format))? = call.arguments.first, format.utf8.count <= StageOneFunctions.maximumFormatBytes else {
                    throw GatewayError(.shapeNotAllowed, "in a query on an aggregate table strftime() takes a string literal format of at most \(StageOneFunctions.maximumFormatBytes) bytes")
                }
            }
        default:
            break
        }
        switch expr {
        case .pattern, .inSelect, .inTable, .exists, .subquery: return
        default: for child in expr.children { try checkStageOne(child) }
        }
    }

    private func checkStageOneColumn(_ bound: Bound) throws(GatewayError) {
        guard let policy = bound.column.policy else { return }
        let table = tables[bound.relation]
        let name = "\(table.name).\(policy.name)"
        let isUnit = table.access == .aggregate && (table.privacyUnit.map { equalNames($0, policy.name) } ?? false)
        if policy.role == .joinKey || isUnit {
            throw GatewayError(.columnNotAllowed, "\(name) may be used only in JOIN … ON a = b",
                               hint: isUnit ? "it identifies the individuals the threshold protects" : "it is a join key")
        }
        if policy.role == .measure {
            throw GatewayError(.columnNotAllowed, "measure \(name) may be used only as the argument of an aggregate",
                               hint: "allowed: \(policy.aggregates.map { "\($0)(\(policy.name))" }.joined(separator: ", "))")
        }
    }

    private static func nonDeterministic(_ what: String) -> GatewayError {
        GatewayError(.functionNotAllowed, "\(what) is not deterministic and is not allowed in a query on an aggregate table",
                     hint: "write the date or value as a literal")
    }

    private static func concatenating(_ name: String) -> GatewayError {
        GatewayError(.shapeNotAllowed, "\(name)() would release individual values", hint: "use count, sum or avg")
    }

    private func checkConstant(_ expr: Expr) throws(GatewayError) {
        var constant = true
        _ = expr.transformed { node in
            switch node {
            case .column, .subquery, .exists, .inSelect, .inTable, .function: constant = false
            default: break
            }
            return nil
        }
        guard constant else { throw GatewayError(.syntaxError, "LIMIT and OFFSET take constant expressions") }
    }

    // MARK: Stage 2 expressions

    /// Maps an output, HAVING or ORDER BY expression onto stage 1's columns: GROUP BY terms become
    /// `__sg_kN`, aggregates `__sg_aN`; any other column is refused.
    private mutating func stageTwo(_ expr: Expr, aliases: [(String, Expr)]) throws(GatewayError) -> Expr {
        var failure: GatewayError?
        let mapped = expr.transformed { node in
            guard failure == nil else { return node }
            do throws(GatewayError) {
                return try stageTwoNode(node, aliases: aliases)
            } catch {
                failure = error
                return node
            }
        }
        if let failure { throw failure }
        return mapped
    }

    private mutating func stageTwoNode(_ node: Expr, aliases: [(String, Expr)]) throws(GatewayError) -> Expr? {
        let canonical = self.canonical(node)
        if let index = keys.firstIndex(where: { $0.canonical == canonical }), !Self.isLiteral(node) {
            return Self.column("__sg_k\(index)")
        }
        switch node {
        case .function(let call):
            let name = call.name.lowercased()
            if call.over != nil { throw GatewayError(.shapeNotAllowed, "window functions are not allowed in a query on an aggregate table") }
            if Checker.valueRevealingAggregates.contains(name) { throw Self.concatenating(call.name) }
            if Checker.isAggregate(call) { return Self.column("__sg_a\(try aggregate(call))") }
            if StageOneFunctions.nonDeterministic.contains(name) || StageOneFunctions.readsClock(call) { throw Self.nonDeterministic("\(call.name)()") }
            guard FunctionAllowlist.allows(name) || FunctionRules.boundedFunctions.contains(name) else { throw Suggestions.functionError(call.name) }
            guard !call.distinct, call.filter == nil else {
                throw GatewayError(.functionNotAllowed, "DISTINCT and FILTER apply to aggregates, not to \(call.name)()")
            }
            try FunctionRules.check(call)
            return nil
        case .column(let reference):
            if reference.table == nil, (try? lookup(reference)) == nil,
               let alias = aliases.first(where: { equalNames($0.0, reference.column) }) {
                return alias.1
            }
            _ = try resolve(reference)
            throw GatewayError(.columnNotAllowed, "\(Renderer.render(node)) must be a GROUP BY term or inside an aggregate",
                               hint: "a bare column in a grouped query shows one row's value")
        case .literal(let literal) where [.currentTime, .currentDate, .currentTimestamp].contains(literal):
            throw Self.nonDeterministic("CURRENT_TIME/CURRENT_DATE/CURRENT_TIMESTAMP")
        case .inSelect, .inTable, .exists, .subquery:
            throw GatewayError(.shapeNotAllowed, "subqueries are not allowed in a query on an aggregate table")
        default:
            return nil
        }
    }

    /// Checks one aggregate call and returns its index among stage 1's aggregates.
    private mutating func aggregate(_ call: FunctionCall) throws(GatewayError) -> Int {
        let name = call.name.lowercased()
        let table = tables[aggregateRelation]
        if call.filter != nil {
            throw GatewayError(.shapeNotAllowed, "FILTER is not allowed on aggregates of an aggregate table",
                               hint: "the threshold counts the whole group; filter with WHERE instead")
        }
        var aggregate: Aggregate
        if call.star {
            aggregate = Aggregate(canonical: "count(*)", name: "count", distinct: false, argument: nil, countsUnits: false)
        } else {
            guard call.arguments.count == 1, case .column(let reference) = call.arguments[0] else {
                throw GatewayError(.shapeNotAllowed, "the argument of \(call.name)() must be a bare column",
                                   hint: "expressions inside aggregates could single out one individual within a large group")
            }
            // A column merged by USING names the aggregate table's side too.
            let all = try resolve(reference)
            let bounds = all.contains { $0.relation == aggregateRelation } ? all.filter { $0.relation == aggregateRelation } : all
            let allowed = table.columns.filter { $0.role == .measure }.flatMap { measure in measure.aggregates.map { "\($0)(\(measure.name))" } }
                + (table.privacyUnit.map { ["count(DISTINCT \($0))"] } ?? [])
            guard bounds.count == 1, let bound = bounds.first, bound.relation == aggregateRelation, let column = bound.column.policy else {
                throw GatewayError(.columnNotAllowed, "aggregates take a measure of \(table.name)", hint: "allowed: " + allowed.joined(separator: ", "))
            }
            let isUnit = table.privacyUnit.map { equalNames($0, column.name) } ?? false
            if isUnit {
                guard name == "count", call.distinct else {
                    throw GatewayError(.columnNotAllowed, "\(table.name).\(column.name) identifies individuals: only count(DISTINCT \(column.name)) may use it")
                }
            } else {
                guard column.role == .measure else {
                    throw GatewayError(.columnNotAllowed, "\(call.name)(\(column.name)): aggregates take a measure of \(table.name)",
                                       hint: (name == "min" || name == "max" ? "min and max over a dimension would show one individual's value; " : "") + "allowed: " + allowed.joined(separator: ", "))
                }
                guard column.aggregates.contains(name) else {
                    throw GatewayError(.functionNotAllowed, "\(name)(\(column.name)) is not allowed on \(table.name)",
                                       hint: "allowed: \(column.aggregates.map { "\($0)(\(column.name))" }.joined(separator: ", "))")
                }
                if name == "sum", call.distinct, facts.overflowingSums.contains("\(table.name.lowercased()).\(column.name.lowercased())") {
                    throw GatewayError(.functionNotAllowed, "sum(DISTINCT \(column.name)) is not available: its sum can pass the 64-bit range", hint: "use sum(\(column.name)) or avg")
                }
            }
            aggregate = Aggregate(
                canonical: "\(name)(\(call.distinct ? "DISTINCT " : "")\(column.name.lowercased()))", name: name,
                distinct: call.distinct, argument: bound, countsUnits: isUnit)
        }
        if let index = aggregates.firstIndex(where: { $0.canonical == aggregate.canonical }) { return index }
        aggregates.append(aggregate)
        return aggregates.count - 1
    }

    // MARK: Rendering

    static func column(_ name: String, _ table: String? = nil) -> Expr {
        .column(ColumnReference(schema: nil, table: table, column: name))
    }

    static func call(_ name: String, _ arguments: [Expr], distinct: Bool = false, star: Bool = false) -> Expr {
        .function(FunctionCall(name: name, distinct: distinct, star: star, arguments: arguments, filter: nil, over: nil))
    }

    static func containsCollate(_ expr: Expr) -> Bool {
        if case .collate = expr { return true }
        return expr.children.contains(where: containsCollate)
    }

    static func isLiteral(_ expr: Expr) -> Bool {
        if case .literal = expr { return true }
        return false
    }

    /// `__sg_tally(count(DISTINCT unit), k)`: the unit count, with groups below k counted.
    static func tally(_ units: Expr, minimum: Int) -> Expr {
        call(PlanCounters.tally, [call("count", [units], distinct: true), .literal(.number(String(minimum)))])
    }

    /// Rows tables joined on join-key tokens are read through MATERIALIZED copies of the columns
    /// the query uses: tokens are computed in the views, so SQLite cannot use an index to join on
    /// them, while a materialised copy gets an automatic index.
    private func materializedRowsTables() -> [CommonTable] {
        relations.indices.compactMap { index in
            guard materializes(index) else { return nil }
            let columns = (used[index] ?? []).map { name -> ResultColumn in .expr(Self.column(name), alias: name, span: name) }
            return CommonTable(name: "__sg_m\(index)", columns: [], materialized: true, select: Select(body: .core(SelectCore(
                columns: columns.isEmpty ? [.expr(.literal(.number("1")), alias: "__sg_one", span: "")] : columns,
                from: .table(name: tables[index].name, schema: nil, alias: nil, indexHint: nil)))))
        }
    }

    private func materializes(_ index: Int) -> Bool {
        index != aggregateRelation && equalities.contains { a, b in
            (a.relation == index && a.column.policy?.role == .joinKey) || (b.relation == index && b.column.policy?.role == .joinKey)
        }
    }

    /// The join tree, left-deep in FROM order, each equality in the ON of the first join that has
    /// both its tables.
    private func joinTree() -> FromItem {
        func item(_ index: Int) -> FromItem {
            .table(name: materializes(index) ? "__sg_m\(index)" : tables[index].name, schema: nil, alias: relations[index].name, indexHint: nil)
        }
        func reference(_ bound: Bound) -> Expr { Self.column(bound.column.name, relations[bound.relation].name) }
        var tree = item(0)
        for index in relations.indices.dropFirst() {
            let conditions = equalities.filter { a, b in max(a.relation, b.relation) == index }
                .map { Expr.binary(.equal, reference($0.0), reference($0.1)) }
            let condition = conditions.dropFirst().reduce(conditions.first ?? .literal(.number("1"))) { .binary(.and, $0, $1) }
            tree = .join(tree, JoinOperator(kind: .inner, natural: false), item(index), .on(condition))
        }
        return tree
    }

    private func unitReference() -> Expr {
        Self.column(Checker.unitColumn, relations[aggregateRelation].name)
    }

    /// Stage 1 of an aggregate as SQLite should compute it, reading `argument` for its column.
    private func stageOneCall(_ aggregate: Aggregate, argument: Expr?, units: Expr) -> Expr {
        guard let argument else { return Self.call("count", [], star: true) }
        if aggregate.countsUnits { return Self.call("count", [units], distinct: true) }
        if aggregate.name == "sum", !aggregate.distinct, let bound = aggregate.argument,
           facts.overflowingSums.contains("\(tables[bound.relation].name.lowercased()).\(bound.column.name.lowercased())") {
            return Self.exactSum(argument)
        }
        return Self.call(aggregate.name, [argument], distinct: aggregate.distinct)
    }

    /// `sum(x)` without SQLite's "integer overflow" error (an error would tell about withheld rows):
    /// integers are summed as high and low 32-bit halves, which cannot overflow, and recombined
    /// (a total beyond 64 bits becomes a real); anything else sums as `total(x)` does.
    static func exactSum(_ x: Expr) -> Expr {
        let count = call("count", [x])
        let integers = call("sum", [.binary(.equal, call("typeof", [x]), .literal(.string("integer")))])
        let high = call("sum", [.binary(.shiftRight, x, .literal(.number("32")))])
        let low = call("sum", [.binary(.bitAnd, x, .literal(.number("4294967295")))])
        return .caseWhen(base: nil, branches: [
            CaseBranch(when: .binary(.equal, count, .literal(.number("0"))), then: .literal(.null)),
            CaseBranch(when: .binary(.equal, count, integers),
                       then: .binary(.add, .binary(.multiply, high, .literal(.number("4294967296"))), low)),
        ], otherwise: call("total", [x]))
    }

    private func dropStage(whereClause: Expr?, minimum: Int) -> CommonTable {
        var columns: [ResultColumn] = keys.enumerated().map { .expr($0.element.expr, alias: "__sg_k\($0.offset)", span: "") }
        for (index, aggregate) in aggregates.enumerated() {
            let argument = aggregate.argument.map { Self.column(aggregate.countsUnits ? Checker.unitColumn : $0.column.name, relations[$0.relation].name) }
            columns.append(.expr(stageOneCall(aggregate, argument: argument, units: unitReference()), alias: "__sg_a\(index)", span: ""))
        }
        columns.append(.expr(Self.tally(unitReference(), minimum: minimum), alias: Self.unitCount, span: ""))
        return CommonTable(name: Self.grouped, columns: [], materialized: true, select: Select(body: .core(SelectCore(
            columns: columns, from: joinTree(), whereClause: whereClause,
            groupBy: keys.map(\.expr).filter { !Self.isLiteral($0) }))))
    }

    private func remainderStage(whereClause: Expr?, minimum: Int) -> [CommonTable] {
        let rows = Self.rowsTable, sizes = Self.sizesTable
        let keyNames = keys.indices.map { "__sg_k\($0)" }
        // Every measure an aggregate reads, once.
        var measures: [String] = []
        for aggregate in aggregates where !aggregate.countsUnits {
            if let bound = aggregate.argument, !measures.contains(bound.column.name) { measures.append(bound.column.name) }
        }
        var rowColumns: [ResultColumn] = keys.enumerated().map { .expr($0.element.expr, alias: keyNames[$0.offset], span: "") }
        rowColumns += measures.enumerated().map { .expr(Self.column($0.element, relations[aggregateRelation].name), alias: "__sg_m\($0.offset)", span: "") }
        rowColumns.append(.expr(unitReference(), alias: Self.unitValue, span: ""))
        let rowsTable = CommonTable(name: rows, columns: [], materialized: true, select: Select(body: .core(SelectCore(
            columns: rowColumns, from: joinTree(), whereClause: whereClause))))

        var sizeColumns: [ResultColumn] = keyNames.map { .expr(Self.column($0), alias: $0, span: "") }
        sizeColumns.append(.expr(Self.tally(Self.column(Self.unitValue), minimum: minimum), alias: Self.unitCount, span: ""))
        let sizesTable = CommonTable(name: sizes, columns: [], materialized: true, select: Select(body: .core(SelectCore(
            columns: sizeColumns, from: .table(name: rows, schema: nil, alias: nil, indexHint: nil), groupBy: keyNames.map { Self.column($0) }))))

        let units = Self.column(Self.unitValue, rows)
        var aggregateColumns: [ResultColumn] = []
        for (index, aggregate) in aggregates.enumerated() {
            let argument = aggregate.argument.map { bound -> Expr in
                aggregate.countsUnits ? units : Self.column("__sg_m\(measures.firstIndex(of: bound.column.name) ?? 0)", rows)
            }
            aggregateColumns.append(.expr(stageOneCall(aggregate, argument: argument, units: units), alias: "__sg_a\(index)", span: ""))
        }
        aggregateColumns.append(.expr(Self.call("count", [units], distinct: true), alias: Self.unitCount, span: ""))
        let sameKeys = keyNames.map { Expr.binary(.is, Self.column($0, rows), Self.column($0, sizes)) }
        let join = FromItem.join(.table(name: rows, schema: nil, alias: nil, indexHint: nil), JoinOperator(kind: .inner, natural: false),
                                 .table(name: sizes, schema: nil, alias: nil, indexHint: nil),
                                 .on(sameKeys.dropFirst().reduce(sameKeys[0]) { .binary(.and, $0, $1) }))
        let size = Self.column(Self.unitCount, sizes)
        let large = SelectCore(
            columns: keyNames.map { .expr(Self.column($0, rows), alias: $0, span: "") } + aggregateColumns,
            from: join, whereClause: .binary(.greaterEqual, size, .literal(.number(String(minimum)))),
            groupBy: keyNames.map { Self.column($0, rows) })
        let small = SelectCore(
            columns: keyNames.map { .expr(.literal(.null), alias: $0, span: "") } + aggregateColumns,
            from: join, whereClause: .binary(.less, size, .literal(.number(String(minimum)))))
        let grouped = CommonTable(name: Self.grouped, columns: [], materialized: true, select: Select(body: .compound(.core(large), .unionAll, .core(small))))
        return [rowsTable, sizesTable, grouped]
    }

    // MARK: Parameters

    /// Numbers anonymous `?` parameters as SQLite would in the consumer's text (`?` after `?N`
    /// is `?N+1`), because the plan moves expressions around.
    static func numberingParameters(_ select: Select) -> Select {
        var largest = 0
        return select.transformingExpressions { node in
            guard case .parameter(let text) = node, text.hasPrefix("?") else { return nil }
            if text == "?" {
                largest += 1
                return .parameter("?\(largest)")
            }
            if let number = Int(text.dropFirst()) { largest = max(largest, number) }
            return nil
        }
    }
}
