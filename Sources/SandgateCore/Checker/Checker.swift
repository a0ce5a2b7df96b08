import SandgatePolicy
import SandgateSQL

/// The outcome of checking one query against a consumer's view of a dataset.
struct CheckedQuery {
    /// The query to run (rewritten: a two-stage plan on aggregate tables), to be rendered.
    var select: Select
    /// For each output column: derived from a masked or tokenised column.
    var maskedOutputs: [Bool]
    /// Rules that applied, for `explain` (masks, row filters, thresholds).
    var rules: [String]
    /// What the sandbox needs to run and meter it.
    var plan: ExecutionPlan
}

/// Resolves every table and column of a parsed query through its scopes against the consumer's
/// view of the dataset and enforces the function allowlist. A query that touches an aggregate
/// table anywhere is handed whole to `AggregatePlanner` (DESIGN.md §3); this checker handles
/// queries on rows tables only, and refuses an aggregate table if it ever meets one.
struct Checker {
    let policy: DatasetPolicy
    let facts: SnapshotFacts
    private(set) var rules: [String] = []
    /// Tables joined on join keys, to be read through MATERIALIZED CTEs (name of CTE, table).
    private var materialized: [(cte: String, table: String)] = []

    /// Prefix of names the rewriter introduces; consumers may not use it.
    static let internalPrefix = "__sg"

    /// The internal view column holding the privacy unit's token on aggregate tables.
    static let unitColumn = "__sg_unit"

    init(policy: DatasetPolicy, facts: SnapshotFacts) {
        self.policy = policy
        self.facts = facts
    }

    static let aggregateFunctions: Set<String> = [
        "count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg", "json_group_array", "json_group_object",
    ]
    /// Aggregates that release individual values; never allowed on aggregate tables, and on rows
    /// tables every row they pack counts as a row.
    static let valueRevealingAggregates: Set<String> = ["group_concat", "string_agg", "json_group_array", "json_group_object"]

    /// True for an aggregate call (not a window function, not the scalar min/max).
    static func isAggregate(_ call: FunctionCall) -> Bool {
        let name = call.name.lowercased()
        return call.over == nil && aggregateFunctions.contains(name) && !((name == "min" || name == "max") && call.arguments.count > 1)
    }

    struct Context {
        var topLevel: Bool
        /// Inside a CTE, a FROM subquery, an expression subquery, or a compound member.
        var nested: Bool
    }

    mutating func check(_ select: Select) throws(GatewayError) -> CheckedQuery {
        if AggregatePlanner.touchesAggregateTable(select, policy: policy) {
            var planner = AggregatePlanner(policy: policy, facts: facts)
            return try planner.plan(select)
        }
        var select = select
        let columns = try checkSelect(&select, parent: nil, context: Context(topLevel: true, nested: false))
        if !materialized.isEmpty {
            // Join keys are keyed tokens computed in the views, so SQLite cannot use an index to
            // join on them; a materialised copy of the probed side gets an automatic index.
            let tables = materialized.map { entry in
                CommonTable(name: entry.cte, columns: [], materialized: true, select: Select(body: .core(SelectCore(
                    columns: [.star], from: .table(name: entry.table, schema: nil, alias: nil, indexHint: nil)))))
            }
            if var with = select.with {
                with.tables = tables + with.tables
                select.with = with
            } else {
                select.with = With(recursive: false, tables: tables)
            }
        }
        let packed = Self.countingPackedRows(select)
        return CheckedQuery(select: packed, maskedOutputs: columns.map(\.masked), rules: rules, plan: ExecutionPlan(packsRows: packed != select))
    }

    /// Wraps the first argument of every concatenating aggregate (and of every window function
    /// that copies other rows' values) in `__sg_packed`, which counts the rows packed into one
    /// row against the row limit (DESIGN.md §3, rows tables).
    static func countingPackedRows(_ select: Select) -> Select {
        func packs(_ call: FunctionCall) -> Bool {
            let name = call.name.lowercased()
            // Any window function with an argument can copy other rows' values into this row
            // (`min(x) OVER (ROWS BETWEEN 200 FOLLOWING AND 200 FOLLOWING)` is `lead`).
            return valueRevealingAggregates.contains(name) || (call.over != nil && name != "ntile")
        }
        func counted(_ expr: Expr) -> Expr {
            .function(FunctionCall(name: PlanCounters.packed, distinct: false, star: false, arguments: [expr], filter: nil, over: nil))
        }
        func pack(_ node: Expr) -> Expr? {
            // A scalar subquery brings one row's value (or an aggregate) into this row each time
            // it is evaluated: 1,500 of them carried 1,493 customers in one cell (red team).
            if case .subquery(let inner) = node { return counted(.subquery(inner.transformingExpressions(pack))) }
            guard case .function(var call) = node, packs(call), !call.arguments.isEmpty else { return nil }
            call.arguments = call.arguments.map { $0.transformingDeep(pack) }
            call.filter = call.filter.map { $0.transformingDeep(pack) }
            call.arguments[0] = counted(call.arguments[0])
            return .function(call)
        }
        return select.transformingExpressions(pack)
    }


    mutating func note(_ rule: String) {
        if !rules.contains(rule) { rules.append(rule) }
    }

    // MARK: SELECT

    mutating func checkSelect(_ select: inout Select, parent: Scope?, context: Context) throws(GatewayError) -> [RelationColumn] {
        let scope = Scope(parent: parent)
        if var with = select.with {
            for index in with.tables.indices {
                var table = with.tables[index]
                if table.name.lowercased().hasPrefix(Self.internalPrefix) {
                    throw GatewayError(.syntaxError, "names starting with \(Self.internalPrefix) are reserved", hint: "rename the common table \(table.name)")
                }
                // A recursive CTE may read itself: its columns come from its first member.
                if with.recursive, case .compound = table.select.body {
                    try Self.checkRecursion(table)
                    var first = Select(body: Self.firstMember(table.select.body))
                    let probe = try checkSelect(&first, parent: scope, context: Context(topLevel: false, nested: true))
                    scope.commonTables[table.name] = Self.relation(named: table.name, columns: probe, renamed: table.columns)
                }
                let columns = try checkSelect(&table.select, parent: scope, context: Context(topLevel: false, nested: true))
                if !table.columns.isEmpty, table.columns.count != columns.count {
                    throw GatewayError(.syntaxError, "table \(table.name) has \(columns.count) values for \(table.columns.count) columns")
                }
                scope.commonTables[table.name] = Self.relation(named: table.name, columns: columns, renamed: table.columns)
                with.tables[index] = table
            }
            select.with = with
        }
        var isCompound = false
        if case .compound = select.body { isCompound = true }
        let bodyContext = Context(topLevel: context.topLevel && !isCompound, nested: context.nested || isCompound)
        var body = select.body
        var orderBy = select.orderBy
        let columns = try checkBody(&body, scope: scope, context: bodyContext, orderBy: &orderBy)
        select.body = body
        select.orderBy = orderBy
        if let limit = select.limit {
            try checkStandalone(limit.count, scope: scope)
            if let offset = limit.offset { try checkStandalone(offset, scope: scope) }
        }
        return columns
    }

    /// Recursion can carry every row of a table into one value (`SELECT r.s || t.phone FROM r JOIN
    /// t …`), past `max_rows`: the recursive members of a recursive CTE may read only the CTE.
    static func checkRecursion(_ table: CommonTable) throws(GatewayError) {
        func members(_ body: SelectBody) -> [SelectBody] {
            if case .compound(let left, _, let right) = body { return members(left) + [right] }
            return [body]
        }
        for member in members(table.select.body).dropFirst() {
            for name in Select(body: member).referencedTables where !equalNames(name, table.name) {
                throw GatewayError(.shapeNotAllowed, "the recursive part of \(table.name) reads \(name)",
                                   hint: "the recursive part of a recursive CTE may read only the CTE itself; recursion could carry every row into one value")
            }
        }
    }

    static func firstMember(_ body: SelectBody) -> SelectBody {
        if case .compound(let left, _, _) = body { return firstMember(left) }
        return body
    }

    static func relation(named name: String, columns: [RelationColumn], renamed: [String]) -> Relation {
        let named = columns.enumerated().map { index, column in
            RelationColumn(name: index < renamed.count ? renamed[index] : column.name, masked: column.masked, table: nil, policy: nil)
        }
        return Relation(name: name, columns: named, table: nil)
    }

    /// An expression that must not reference columns (LIMIT, OFFSET, VALUES outside FROM).
    mutating func checkStandalone(_ expr: Expr, scope: Scope) throws(GatewayError) {
        let info = try checkExpr(expr, scope: Scope(parent: nil), site: .other)
        if !info.columns.isEmpty { throw GatewayError(.syntaxError, "LIMIT and OFFSET take constant expressions") }
    }

    mutating func checkBody(_ body: inout SelectBody, scope: Scope, context: Context, orderBy: inout [OrderingTerm]) throws(GatewayError) -> [RelationColumn] {
        switch body {
        case .values(let rows):
            var masked: [Bool] = []
            for row in rows {
                for (index, expr) in row.enumerated() {
                    let info = try checkExpr(expr, scope: scope, site: .other)
                    if index >= masked.count { masked.append(info.masked) } else { masked[index] = masked[index] || info.masked }
                }
            }
            try checkOrderBy(&orderBy, outputs: nil, scope: scope, inCompound: true)
            return masked.enumerated().map { RelationColumn(name: "column\($0.offset + 1)", masked: $0.element, table: nil, policy: nil) }
        case .core(var core):
            let columns = try checkCore(&core, scope: scope, context: context, orderBy: &orderBy)
            body = .core(core)
            return columns
        case .compound(var left, let op, var right):
            var none: [OrderingTerm] = []
            let leftColumns = try checkBody(&left, scope: scope, context: context, orderBy: &none)
            let rightColumns = try checkBody(&right, scope: scope, context: context, orderBy: &none)
            guard leftColumns.count == rightColumns.count else {
                throw GatewayError(.syntaxError, "SELECTs to the left and right of \(op.rawValue) do not have the same number of result columns")
            }
            body = .compound(left, op, right)
            let columns = zip(leftColumns, rightColumns).map {
                RelationColumn(name: $0.name, masked: $0.masked || $1.masked, table: nil, policy: nil)
            }
            let outputs = Relation(name: "", columns: columns, table: nil)
            try checkOrderBy(&orderBy, outputs: outputs, scope: scope, inCompound: true)
            return columns
        }
    }

    // MARK: Core

    mutating func checkCore(_ core: inout SelectCore, scope parent: Scope, context: Context, orderBy: inout [OrderingTerm]) throws(GatewayError) -> [RelationColumn] {
        let scope = Scope(parent: parent)
        if var from = core.from {
            scope.relations = try checkFrom(&from, scope: scope, context: context)
            core.from = from
        }
        // Result columns (and their aliases, which WHERE/GROUP BY/HAVING/ORDER BY may use).
        var outputs: [RelationColumn] = []
        var containsAggregate = false
        for column in core.columns {
            switch column {
            case .star:
                guard !scope.relations.isEmpty else { throw GatewayError(.syntaxError, "no tables specified") }
                for relation in scope.relations {
                    outputs += try expandStar(relation)
                }
            case .tableStar(let name):
                guard let relation = scope.relations.first(where: { equalNames($0.name, name) }) else {
                    let names = scope.relations.map(\.name)
                    throw GatewayError(.noSuchTable, "no such table: \(name)",
                                       hint: Suggestions.didYouMean(name, among: names) + "tables in this FROM: " + names.joined(separator: ", "))
                }
                outputs += try expandStar(relation)
            case .expr(let expr, let alias, let span):
                let info = try checkExpr(expr, scope: scope, site: .select)
                containsAggregate = containsAggregate || info.containsAggregate
                var name = alias ?? span
                if alias == nil, case .column(let reference) = expr { name = reference.column }
                outputs.append(RelationColumn(name: name, masked: info.masked, table: nil, policy: nil))
                if let alias { scope.aliases.append((alias, info)) }
            }
        }
        if let condition = core.whereClause {
            let info = try checkExpr(condition, scope: scope, site: .where)
            if info.containsAggregate { throw GatewayError(.syntaxError, "misuse of aggregate function in WHERE") }
        }
        for term in core.groupBy {
            let info = try checkExpr(term, scope: scope, site: .groupBy)
            if info.containsAggregate { throw GatewayError(.syntaxError, "aggregate functions are not allowed in the GROUP BY clause") }
        }
        if let having = core.having {
            let info = try checkExpr(having, scope: scope, site: .having)
            containsAggregate = containsAggregate || info.containsAggregate
        }
        for window in core.windows {
            try checkWindow(window.definition, scope: scope)
        }
        let outputRelation = Relation(name: "", columns: outputs, table: nil)
        try checkOrderBy(&orderBy, outputs: outputRelation, scope: scope, inCompound: false)

        return outputs
    }

    /// A syntactic look for an aggregate call (no OVER), without entering subqueries.
    static func containsAggregateCall(_ expr: Expr) -> Bool {
        if case .function(let call) = expr, call.over == nil, aggregateFunctions.contains(call.name.lowercased()) { return true }
        return expr.children.contains(where: containsAggregateCall)
    }

    mutating func expandStar(_ relation: Relation) throws(GatewayError) -> [RelationColumn] {
        let columns = relation.columns.filter { !relation.hiddenFromStar.contains($0.name.lowercased()) }
        for column in columns { noteMask(column) }
        return columns
    }

    /// Records, for `explain`, the mask of a published column the query reads.
    mutating func noteMask(_ column: RelationColumn) {
        guard let table = column.table, let policy = column.policy, let mask = policy.mask else { return }
        note(mask.kind.isToken ? "\(table.name).\(policy.name) is a keyed token" : "\(table.name).\(policy.name) is masked (\(mask.name))")
    }

    /// `inCompound`: ORDER BY of a compound or VALUES, which may name only result columns.
    mutating func checkOrderBy(_ terms: inout [OrderingTerm], outputs: Relation?, scope: Scope, inCompound: Bool) throws(GatewayError) {
        for term in terms {
            // `ORDER BY 2` and `ORDER BY alias` refer to result columns.
            if case .literal(.number(let text)) = term.expr, let position = Int(text) {
                guard let outputs, position >= 1, position <= outputs.columns.count else {
                    throw GatewayError(.syntaxError, "ORDER BY term out of range: \(text)")
                }
                continue
            }
            if case .column(let reference) = term.expr, reference.table == nil, let outputs, outputs.column(reference.column) != nil,
               inCompound || scope.aliases.contains(where: { equalNames($0.name, reference.column) }) || resolveInFrom(reference, scope: scope) == nil {
                continue
            }
            _ = try checkExpr(term.expr, scope: scope, site: .orderBy)
        }
    }

    func resolveInFrom(_ reference: ColumnReference, scope: Scope) -> ResolvedColumn? {
        try? resolve(reference, scope: scope)
    }

    // MARK: FROM

    mutating func checkFrom(_ item: inout FromItem, scope: Scope, context: Context) throws(GatewayError) -> [Relation] {
        switch item {
        case .table(let name, let schema, let alias, let hint):
            if name.lowercased().hasPrefix(Self.internalPrefix) || (alias?.lowercased().hasPrefix(Self.internalPrefix) ?? false) {
                throw GatewayError(.noSuchTable, "no such table: \(name)", hint: "names starting with \(Self.internalPrefix) are reserved; " + Suggestions.tableHint(name, policy: policy))
            }
            if let schema { throw GatewayError(.noSuchTable, "no such table: \(schema).\(name)", hint: "write table names without a schema") }
            if case .indexedBy = hint {
                throw GatewayError(.shapeNotAllowed, "INDEXED BY is not available", hint: "indexes are not part of the published dataset")
            }
            if let common = scope.commonTable(name) {
                return [Relation(name: alias ?? name, columns: common.columns, table: nil)]
            }
            guard let table = policy.table(named: name) else {
                throw GatewayError(.noSuchTable, "no such table: \(name)", hint: Suggestions.tableHint(name, policy: policy))
            }
            // Aggregate tables are planned by AggregatePlanner; meeting one here is a bug: fail closed.
            guard table.access == .rows else {
                throw GatewayError(.shapeNotAllowed, "aggregate table \(table.name) may be used only in the FROM clause of the top-level SELECT")
            }
            if table.rowFilter != nil { note("rows of \(table.name) are filtered by the policy") }
            let columns = table.visibleColumns.map {
                RelationColumn(name: $0.name, masked: $0.mask != nil, table: table, policy: $0)
            }
            return [Relation(name: alias ?? table.name, columns: columns, table: table)]
        case .tableFunction(let name, _, _, _):
            throw GatewayError(.functionNotAllowed, "table-valued function \(name)() is not available")
        case .subquery(var select, let alias):
            let columns = try checkSelect(&select, parent: scope.parent, context: Context(topLevel: false, nested: true))
            item = .subquery(select, alias: alias)
            return [Relation(name: alias ?? "", columns: columns.map { RelationColumn(name: $0.name, masked: $0.masked, table: nil, policy: nil) }, table: nil)]
        case .group(var inner):
            let relations = try checkFrom(&inner, scope: scope, context: context)
            item = .group(inner)
            return relations
        case .join(var left, let op, var right, let constraint):
            var relations = try checkFrom(&left, scope: scope, context: context)
            var rightRelations = try checkFrom(&right, scope: scope, context: context)
            defer { item = .join(left, op, right, constraint) }
            var shared: [String] = []
            if op.natural {
                guard constraint == nil else { throw GatewayError(.syntaxError, "a NATURAL join may not have an ON or USING clause") }
                let leftNames = relations.flatMap { $0.columns.map { $0.name.lowercased() } }
                shared = rightRelations.flatMap { $0.columns.map { $0.name.lowercased() } }.filter(leftNames.contains)
            } else if case .using(let names) = constraint {
                shared = names.map { $0.lowercased() }
            }
            for name in shared {
                let onLeft = relations.compactMap { $0.column(name) }
                let onRight = rightRelations.compactMap { $0.column(name) }
                guard !onLeft.isEmpty, !onRight.isEmpty else {
                    throw GatewayError(.noSuchColumn, "cannot join using column \(name) - column not present in both tables")
                }
                for index in rightRelations.indices where rightRelations[index].column(name) != nil {
                    rightRelations[index].hiddenFromStar.insert(name)
                }
                if (onLeft + onRight).allSatisfy({ $0.policy?.role == .joinKey }) {
                    materializeJoined(&right, relations: rightRelations, left: &left, leftRelations: relations)
                }
            }
            relations += rightRelations
            if case .on(let condition) = constraint {
                let joinScope = Scope(parent: scope.parent)
                joinScope.relations = relations
                joinScope.commonTables = scope.commonTables
                try checkJoinCondition(condition, scope: joinScope)
                if Self.equalitiesOnJoinKeys(condition, scope: joinScope, checker: self) {
                    materializeJoined(&right, relations: rightRelations, left: &left, leftRelations: relations)
                }
            }
            return relations
        }
    }

    /// True when `condition` contains an equality between two join-key columns.
    static func equalitiesOnJoinKeys(_ condition: Expr, scope: Scope, checker: Checker) -> Bool {
        switch condition {
        case .binary(.and, let left, let right):
            return equalitiesOnJoinKeys(left, scope: scope, checker: checker) || equalitiesOnJoinKeys(right, scope: scope, checker: checker)
        case .binary(.equal, .column(let a), .column(let b)):
            guard let first = try? checker.resolve(a, scope: scope), let second = try? checker.resolve(b, scope: scope) else { return false }
            return first.column.policy?.role == .joinKey && second.column.policy?.role == .joinKey
        default:
            return false
        }
    }

    /// Reads the probed side of a join-key join (a published rows table, preferably on the right)
    /// through a MATERIALIZED CTE.
    mutating func materializeJoined(_ right: inout FromItem, relations: [Relation], left: inout FromItem, leftRelations: [Relation]) {
        if materializable(right) {
            materialize(&right)
        } else if materializable(left) {
            materialize(&left)
        }
    }

    func materializable(_ item: FromItem) -> Bool {
        guard case .table(let name, nil, _, _) = item else { return false }
        return policy.table(named: name)?.access == .rows
    }

    mutating func materialize(_ item: inout FromItem) {
        guard case .table(let name, nil, let alias, _) = item, let table = policy.table(named: name), table.access == .rows else { return }
        let cte = "\(Self.internalPrefix)_m\(materialized.count)"
        materialized.append((cte, table.name))
        item = .table(name: cte, schema: nil, alias: alias ?? table.name, indexHint: nil)
    }

    /// ON clauses: equalities of two column references may use join keys; everything else is an
    /// ordinary expression.
    mutating func checkJoinCondition(_ condition: Expr, scope: Scope) throws(GatewayError) {
        if case .binary(.and, let left, let right) = condition {
            try checkJoinCondition(left, scope: scope)
            try checkJoinCondition(right, scope: scope)
            return
        }
        if case .binary(.equal, .column(let a), .column(let b)) = condition {
            _ = try checkExpr(.column(a), scope: scope, site: .joinEquality)
            _ = try checkExpr(.column(b), scope: scope, site: .joinEquality)
            return
        }
        _ = try checkExpr(condition, scope: scope, site: .where)
    }

    // MARK: Expressions

    enum Site: Equatable {
        case select, `where`, groupBy, having, orderBy, joinEquality, other
        case aggregateArgument(String)
    }


    func resolve(_ reference: ColumnReference, scope: Scope) throws(GatewayError) -> ResolvedColumn {
        if let schema = reference.schema {
            throw GatewayError(.noSuchTable, "no such table: \(schema).\(reference.table ?? "")", hint: "write table names without a schema")
        }
        var current: Scope? = scope
        var depth = 0
        while let level = current {
            if let table = reference.table {
                if let relation = level.relations.first(where: { equalNames($0.name, table) }) {
                    guard let column = relation.column(reference.column) else {
                        throw GatewayError(.noSuchColumn, "no such column: \(table).\(reference.column)", hint: hint(for: [relation], missing: reference.column))
                    }
                    return ResolvedColumn(relation: relation, column: column, depth: depth)
                }
            } else {
                let matches = level.relations.compactMap { relation in relation.column(reference.column).map { (relation, $0) } }
                let distinctTables = matches.filter { match in !match.0.hiddenFromStar.contains(reference.column.lowercased()) }
                if distinctTables.count > 1 {
                    throw GatewayError(.syntaxError, "ambiguous column name: \(reference.column)")
                }
                if let match = distinctTables.first ?? matches.first {
                    // A column merged by USING/NATURAL is every side's column (an outer join
                    // gives COALESCE(left, right)): masked if any side is.
                    let masked = matches.contains { $0.1.masked }
                    let column = masked == match.1.masked ? match.1
                        : RelationColumn(name: match.1.name, masked: masked, table: match.1.table, policy: match.1.policy)
                    return ResolvedColumn(relation: match.0, column: column, depth: depth)
                }
            }
            current = level.parent
            depth += 1
        }
        let name = reference.table.map { "\($0).\(reference.column)" } ?? reference.column
        throw GatewayError(.noSuchColumn, "no such column: \(name)", hint: hint(for: scope.relations, missing: reference.column))
    }

    func hint(for relations: [Relation], missing: String) -> String {
        let names = relations.flatMap { relation in relation.columns.map(\.name) }
        guard !names.isEmpty else { return "`sandgate describe` lists the columns you can query" }
        return Suggestions.didYouMean(missing, among: names) + "columns here: " + names.prefix(20).joined(separator: ", ")
    }

    mutating func checkExpr(_ expr: Expr, scope: Scope, site: Site) throws(GatewayError) -> ExprInfo {
        var info = ExprInfo()
        func sub(_ e: Expr, _ s: Site? = nil) throws(GatewayError) {
            info.merge(try checkExpr(e, scope: scope, site: s ?? (site == .joinEquality ? .where : site)))
        }
        switch expr {
        case .literal, .parameter:
            break
        case .column(let reference):
            // Result aliases are visible outside the select list, as in SQLite.
            if reference.table == nil, site != .select, site != .joinEquality,
               let alias = scope.aliases.first(where: { equalNames($0.name, reference.column) }),
               (try? resolve(reference, scope: scope)) == nil || site == .orderBy {
                var aliasInfo = alias.info
                aliasInfo.columns = []
                return aliasInfo
            }
            let resolved = try resolve(reference, scope: scope)
            noteMask(resolved.column)
            info.masked = resolved.column.masked
            info.columns.append(resolved)
        case .unary(_, let operand):
            try sub(operand)
        case .binary(_, let left, let right), .distinctFrom(let left, let right, _):
            try sub(left)
            try sub(right)
        case .collate(let operand, _):
            try sub(operand)
        case .pattern(let operand, _, let pattern, let escape, _):
            try sub(operand)
            try sub(pattern)
            if let escape { try sub(escape) }
        case .between(let operand, let low, let high, _):
            try sub(operand)
            try sub(low)
            try sub(high)
        case .inList(let operand, let list, _):
            try sub(operand)
            for item in list { try sub(item) }
        case .inSelect(let operand, let select, _):
            try sub(operand)
            info.merge(try checkSubquery(select, scope: scope))
        case .inTable(let operand, let schema, let table, let arguments, _):
            try sub(operand)
            if schema != nil || arguments != nil {
                throw GatewayError(.noSuchTable, "no such table: \(schema.map { "\($0)." } ?? "")\(table)",
                                   hint: "write `IN table` with a table name only (no schema, no arguments); " + Suggestions.tableHint(table, policy: policy))
            }
            let relation: Relation
            if let common = scope.commonTable(table) {
                relation = common
            } else if let published = policy.table(named: table) {
                guard published.access == .rows else {
                    throw GatewayError(.shapeNotAllowed, "aggregate table \(published.name) may be used only in the top-level SELECT")
                }
                relation = Relation(name: published.name, columns: published.visibleColumns.map {
                    RelationColumn(name: $0.name, masked: $0.mask != nil, table: published, policy: $0)
                }, table: published)
            } else {
                throw GatewayError(.noSuchTable, "no such table: \(table)", hint: Suggestions.tableHint(table, policy: policy))
            }
            info.masked = info.masked || relation.columns.contains { $0.masked }
        case .isNull(let operand, _):
            try sub(operand)
        case .exists(let select), .subquery(let select):
            info.merge(try checkSubquery(select, scope: scope))
        case .caseWhen(let base, let branches, let otherwise):
            if let base { try sub(base) }
            for branch in branches {
                try sub(branch.when)
                try sub(branch.then)
            }
            if let otherwise { try sub(otherwise) }
        case .cast(let operand, _):
            try sub(operand)
        case .row(let list):
            for item in list { try sub(item) }
        case .function(let call):
            info.merge(try checkFunction(call, scope: scope, site: site))
        }
        return info
    }

    mutating func checkSubquery(_ select: Select, scope: Scope) throws(GatewayError) -> ExprInfo {
        var copy = select
        let columns = try checkSelect(&copy, parent: scope, context: Context(topLevel: false, nested: true))
        var info = ExprInfo()
        info.masked = columns.contains { $0.masked }
        return info
    }

    mutating func checkFunction(_ call: FunctionCall, scope: Scope, site: Site) throws(GatewayError) -> ExprInfo {
        let name = call.name.lowercased()
        let isAggregate = Self.isAggregate(call)
        let isWindow = call.over != nil
        guard FunctionAllowlist.allows(name) || FunctionRules.boundedFunctions.contains(name) else {
            throw Suggestions.functionError(call.name)
        }
        try FunctionRules.check(call)
        var info = ExprInfo()
        if case .aggregateArgument = site, isAggregate {
            throw GatewayError(.syntaxError, "misuse of aggregate function \(call.name)()")
        }
        let argumentSite: Site = isAggregate ? .aggregateArgument(name) : site
        for argument in call.arguments {
            info.merge(try checkExpr(argument, scope: scope, site: argumentSite))
        }
        if let filter = call.filter { info.merge(try checkExpr(filter, scope: scope, site: .where)) }
        if case .definition(let definition) = call.over { try checkWindow(definition, scope: scope) }
        if isAggregate {
            info.containsAggregate = true
            info.columns = []
        }
        info.containsWindow = info.containsWindow || isWindow
        return info
    }

    mutating func checkWindow(_ definition: WindowDefinition, scope: Scope) throws(GatewayError) {
        for term in definition.partitionBy { _ = try checkExpr(term, scope: scope, site: .other) }
        for term in definition.orderBy { _ = try checkExpr(term.expr, scope: scope, site: .other) }
        for bound in [definition.frame?.start, definition.frame?.end] {
            switch bound {
            case .preceding(let e)?, .following(let e)?: _ = try checkExpr(e, scope: scope, site: .other)
            default: break
            }
        }
    }
}

extension Mask.Kind {
    var isToken: Bool {
        if case .joinToken = self { return true }
        return false
    }
}
