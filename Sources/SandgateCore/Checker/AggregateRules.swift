import SandgatePolicy
import SandgateSQL

/// The rules of DESIGN.md §3 for tables with `access: aggregate`, and the threshold rewrite.
enum AggregateRules {
    /// A column of an aggregate table used at `site`.
    static func checkColumn(_ resolved: ResolvedColumn, site: Checker.Site) throws(GatewayError) {
        guard let table = resolved.column.table, table.access == .aggregate, let policy = resolved.column.policy else { return }
        let name = "\(table.name).\(policy.name)"
        let isUnit = table.privacyUnit.map { equalNames($0, policy.name) } ?? false
        if policy.role == .joinKey || isUnit {
            guard site == .joinEquality else {
                throw GatewayError(.columnNotAllowed, "\(name) may be used only in JOIN … ON a = b",
                                   hint: isUnit ? "it identifies the individuals the threshold protects" : "it is a join key")
            }
            return
        }
        if policy.role == .measure {
            guard case .aggregateArgument(let function) = site else {
                throw GatewayError(.columnNotAllowed, "measure \(name) may be used only as the argument of an aggregate",
                                   hint: "allowed: \(policy.aggregates.map { "\($0)(\(policy.name))" }.joined(separator: ", "))")
            }
            guard policy.aggregates.contains(function) else {
                throw GatewayError(.functionNotAllowed, "\(function)(\(policy.name)) is not allowed on \(table.name)",
                                   hint: "allowed: \(policy.aggregates.map { "\($0)(\(policy.name))" }.joined(separator: ", "))")
            }
        }
    }

    /// Functions inside a query on an aggregate table.
    static func checkFunction(_ call: FunctionCall, isAggregate: Bool, isWindow: Bool) throws(GatewayError) {
        let name = call.name.lowercased()
        if isWindow {
            throw GatewayError(.shapeNotAllowed, "window functions are not allowed in a query on an aggregate table")
        }
        if Checker.valueRevealingAggregates.contains(name) {
            throw GatewayError(.shapeNotAllowed, "\(call.name)() would release individual values", hint: "use count, sum, avg, min or max")
        }
        guard isAggregate else { return }
        if call.filter != nil {
            throw GatewayError(.shapeNotAllowed, "FILTER is not allowed on aggregates of an aggregate table",
                               hint: "the threshold counts the whole group; filter with WHERE instead")
        }
        for argument in call.arguments {
            guard case .column = argument else {
                throw GatewayError(.shapeNotAllowed, "the argument of \(call.name)() must be a bare column",
                                   hint: "expressions inside aggregates could single out one individual within a large group")
            }
        }
    }

    /// Every output, HAVING and ORDER BY term must be built from GROUP BY terms and aggregates.
    static func checkGrouping(core: SelectCore, orderBy: [OrderingTerm], scope: Scope, checker: inout Checker) throws(GatewayError) {
        let keys = Set(core.groupBy.map { canonical($0, scope: scope, checker: checker) })
        let aliases = Set(scope.aliases.map { $0.name.lowercased() })
        func grouped(_ expr: Expr) -> Bool {
            if keys.contains(canonical(expr, scope: scope, checker: checker)) { return true }
            switch expr {
            case .literal, .parameter: return true
            case .function(let call) where call.over == nil && Checker.aggregateFunctions.contains(call.name.lowercased()):
                return true
            case .column(let reference):
                return reference.table == nil && aliases.contains(reference.column.lowercased()) && (try? checker.resolve(reference, scope: scope)) == nil
            default:
                return expr.children.allSatisfy(grouped)
            }
        }
        for column in core.columns {
            if case .expr(let expr, _, let span) = column, !grouped(expr) {
                throw GatewayError(.columnNotAllowed, "\(span) must be a GROUP BY term or inside an aggregate",
                                   hint: "a bare column in a grouped query shows one row's value")
            }
        }
        if let having = core.having, !grouped(having) {
            throw GatewayError(.columnNotAllowed, "HAVING may use only GROUP BY terms and aggregates")
        }
        for term in orderBy {
            if case .literal(.number) = term.expr { continue }
            if case .column(let reference) = term.expr, reference.table == nil, aliases.contains(reference.column.lowercased()) { continue }
            guard grouped(term.expr) else {
                throw GatewayError(.columnNotAllowed, "ORDER BY may use only GROUP BY terms, aggregates and result columns")
            }
        }
    }

    static func canonical(_ expr: Expr, scope: Scope, checker: Checker) -> String {
        Renderer.render(expr.transformed { node in
            guard case .column(let reference) = node, let resolved = try? checker.resolve(reference, scope: scope) else { return nil }
            return .column(ColumnReference(schema: nil, table: resolved.relation.name.lowercased(), column: resolved.column.name.lowercased()))
        })
    }

    struct Rewrite {
        var core: SelectCore
        var suppressedGroups: Select
    }

    /// `HAVING (user) AND count(DISTINCT unit) >= k` for each aggregate table, so that LIMIT and
    /// OFFSET count only released groups; and a query counting the groups this suppresses.
    static func rewrite(core: SelectCore, aggregateRelations: [Relation]) -> Rewrite {
        let conditions = aggregateRelations.compactMap { relation -> Expr? in
            guard let size = relation.table?.minGroupSize else { return nil }
            let units = Expr.function(FunctionCall(
                name: "count", distinct: true, star: false,
                arguments: [.column(ColumnReference(schema: nil, table: relation.name, column: Checker.unitColumn))],
                filter: nil, over: nil))
            return .binary(.greaterEqual, units, .literal(.number(String(size))))
        }
        let threshold = conditions.dropFirst().reduce(conditions.first ?? Expr.literal(.bool(true))) { Expr.binary(.and, $0, $1) }
        var rewritten = core
        rewritten.having = core.having.map { .binary(.and, $0, threshold) } ?? threshold

        var counted = core
        // An aggregate in the select list keeps SQLite treating this as an aggregate query even
        // without GROUP BY (HAVING alone is refused on a non-aggregate query).
        counted.columns = [.expr(.function(FunctionCall(name: "count", distinct: false, star: true, arguments: [], filter: nil, over: nil)), alias: "g", span: "count(*)")]
        counted.windows = []
        let below = Expr.unary(.not, threshold)
        counted.having = core.having.map { .binary(.and, $0, below) } ?? below
        let outer = SelectCore(
            columns: [.expr(.function(FunctionCall(name: "count", distinct: false, star: true, arguments: [], filter: nil, over: nil)), alias: "suppressed", span: "count(*)")],
            from: .subquery(Select(body: .core(counted)), alias: "groups"))
        return Rewrite(core: rewritten, suppressedGroups: Select(body: .core(outer)))
    }
}
