import SandgatePolicy
import SandgateSQL

/// `small_groups: remainder`: groups below the threshold are not dropped but merged into one
/// group whose keys are NULL, released only if it reaches the threshold itself. The small
/// groups' *rows* are re-aggregated (an average of averages would be wrong):
///
///     WITH __sg_rows AS (SELECT <referenced columns>, <unit> FROM … WHERE …),
///          __sg_sizes AS (SELECT <keys>, count(DISTINCT unit) AS __sg_n FROM __sg_rows GROUP BY <keys>),
///          __sg_marked AS (SELECT __sg_rows.*, __sg_n >= k AS __sg_big FROM __sg_rows JOIN __sg_sizes ON keys IS keys)
///     SELECT … FROM __sg_marked WHERE __sg_big GROUP BY <keys> HAVING <user>
///     UNION ALL
///     SELECT <keys as NULL> … FROM __sg_marked WHERE NOT __sg_big HAVING count(DISTINCT unit) >= k AND <user>
///     ORDER BY <result columns> LIMIT …
struct RemainderPlan {
    var commonTables: [CommonTable]
    var body: SelectBody
    var orderBy: [OrderingTerm]
    var suppressedGroups: Select

    static let rows = "__sg_rows", sizes = "__sg_sizes", marked = "__sg_marked", big = "__sg_big", size = "__sg_n"

    static func make(
        core: SelectCore, orderBy: [OrderingTerm], relation: Relation, minimum: Int, scope: Scope, checker: Checker
    ) throws(GatewayError) -> RemainderPlan {
        // Every column the query reads, by its resolved relation and name, gets a plain name.
        var names: [String: String] = [:]
        var columnsList: [(key: String, expr: Expr, name: String)] = []
        func rename(_ expr: Expr) -> Expr {
            expr.transformed { node in
                guard case .column(let reference) = node, let resolved = try? checker.resolve(reference, scope: scope) else { return nil }
                let key = "\(resolved.relation.name.lowercased()).\(resolved.column.name.lowercased())"
                if let name = names[key] { return .column(ColumnReference(schema: nil, table: nil, column: name)) }
                let name = "__sg_c\(columnsList.count)"
                names[key] = name
                columnsList.append((key, .column(ColumnReference(schema: nil, table: resolved.relation.name, column: resolved.column.name)), name))
                return .column(ColumnReference(schema: nil, table: nil, column: name))
            }
        }
        let keys = core.groupBy.map(rename)
        let keyTexts = keys.map { Renderer.render($0) }
        var outputs: [(Expr, String?, String)] = []
        for column in core.columns {
            guard case .expr(let expr, let alias, let span) = column else {
                throw GatewayError(.columnNotAllowed, "* is not allowed in a query on an aggregate table")
            }
            outputs.append((rename(expr), alias, span))
        }
        let having = core.having.map(rename)
        let canonicalOutputs = core.columns.compactMap { column -> String? in
            if case .expr(let expr, _, _) = column { return AggregateRules.canonical(expr, scope: scope, checker: checker) }
            return nil
        }
        // In a compound, ORDER BY may name only result columns: by position, alias or equal expression.
        var terms: [OrderingTerm] = []
        for var term in orderBy {
            if case .literal(.number) = term.expr {
            } else if case .column(let reference) = term.expr, reference.table == nil,
                      outputs.contains(where: { $0.1.map { equalNames($0, reference.column) } ?? false }) {
            } else if let position = canonicalOutputs.firstIndex(of: AggregateRules.canonical(term.expr, scope: scope, checker: checker)) {
                term.expr = .literal(.number(String(position + 1)))
            } else {
                throw GatewayError(.shapeNotAllowed, "with small_groups: remainder, ORDER BY may name only result columns",
                                   hint: "add the expression to the select list and order by it")
            }
            terms.append(term)
        }

        func column(_ name: String, _ table: String? = nil) -> Expr { .column(ColumnReference(schema: nil, table: table, column: name)) }
        let unit = Expr.function(FunctionCall(name: "count", distinct: true, star: false, arguments: [column(Checker.unitColumn)], filter: nil, over: nil))
        let threshold = Expr.binary(.greaterEqual, unit, .literal(.number(String(minimum))))

        var rowColumns: [ResultColumn] = columnsList.map { .expr($0.expr, alias: $0.name, span: $0.name) }
        rowColumns.append(.expr(column(Checker.unitColumn, relation.name), alias: Checker.unitColumn, span: Checker.unitColumn))
        let rowsTable = CommonTable(name: rows, columns: [], materialized: true, select: Select(body: .core(SelectCore(
            columns: rowColumns, from: core.from, whereClause: core.whereClause))))

        var sizeColumns: [ResultColumn] = keys.enumerated().map { .expr($0.element, alias: "__sg_k\($0.offset)", span: "") }
        sizeColumns.append(.expr(unit, alias: size, span: ""))
        let sizesTable = CommonTable(name: sizes, columns: [], materialized: nil, select: Select(body: .core(SelectCore(
            columns: sizeColumns, from: .table(name: rows, schema: nil, alias: nil, indexHint: nil), groupBy: keys))))

        let joinCondition = keys.enumerated().map { index, key -> Expr in
            .binary(.is, key.transformed { node in
                if case .column(let reference) = node { return column(reference.column, rows) }
                return nil
            }, column("__sg_k\(index)", sizes))
        }.reduce(nil as Expr?) { partial, next in partial.map { .binary(.and, $0, next) } ?? next } ?? .literal(.bool(true))
        let markedTable = CommonTable(name: marked, columns: [], materialized: nil, select: Select(body: .core(SelectCore(
            columns: [.tableStar(rows), .expr(.binary(.greaterEqual, column(size, sizes), .literal(.number(String(minimum)))), alias: big, span: "")],
            from: .join(.table(name: rows, schema: nil, alias: nil, indexHint: nil), JoinOperator(kind: .inner, natural: false),
                        .table(name: sizes, schema: nil, alias: nil, indexHint: nil), .on(joinCondition))))))

        let released = SelectCore(
            columns: outputs.map { .expr($0.0, alias: $0.1 ?? $0.2, span: $0.2) },
            from: .table(name: marked, schema: nil, alias: nil, indexHint: nil), whereClause: column(big), groupBy: keys, having: having)
        // The remainder: the same outputs with every GROUP BY key replaced by NULL.
        func nullKeys(_ expr: Expr) -> Expr {
            expr.transformed { node in keyTexts.contains(Renderer.render(node)) ? .literal(.null) : nil }
        }
        let remainder = SelectCore(
            columns: outputs.map { .expr(nullKeys($0.0), alias: $0.1 ?? $0.2, span: $0.2) },
            from: .table(name: marked, schema: nil, alias: nil, indexHint: nil), whereClause: .unary(.not, column(big)),
            having: having.map { .binary(.and, threshold, nullKeys($0)) } ?? threshold)

        let countSmall = Select(body: .core(SelectCore(
            columns: [.expr(.function(FunctionCall(name: "count", distinct: false, star: true, arguments: [], filter: nil, over: nil)), alias: "suppressed", span: "")],
            from: .table(name: sizes, schema: nil, alias: nil, indexHint: nil),
            whereClause: .binary(.less, column(size), .literal(.number(String(minimum)))))))
        return RemainderPlan(
            commonTables: [rowsTable, sizesTable, markedTable],
            body: .compound(.core(released), .unionAll, .core(remainder)), orderBy: terms, suppressedGroups: countSmall)
    }
}
