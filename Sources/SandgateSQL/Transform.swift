extension Expr {
    /// Rebuilds the expression top-down: where `replace` returns a node it is used as is; elsewhere
    /// the children are transformed. Subqueries (`Select`) are not entered.
    public func transformed(_ replace: (Expr) -> Expr?) -> Expr {
        if let replacement = replace(self) { return replacement }
        func t(_ e: Expr) -> Expr { e.transformed(replace) }
        switch self {
        case .literal, .parameter, .column, .exists, .subquery:
            return self
        case .unary(let op, let operand): return .unary(op, t(operand))
        case .binary(let op, let left, let right): return .binary(op, t(left), t(right))
        case .distinctFrom(let left, let right, let not): return .distinctFrom(t(left), t(right), not: not)
        case .collate(let operand, let name): return .collate(t(operand), name)
        case .pattern(let operand, let op, let pattern, let escape, let not):
            return .pattern(t(operand), op, t(pattern), escape: escape.map(t), not: not)
        case .between(let operand, let low, let high, let not): return .between(t(operand), low: t(low), high: t(high), not: not)
        case .inList(let operand, let list, let not): return .inList(t(operand), list.map(t), not: not)
        case .inSelect(let operand, let select, let not): return .inSelect(t(operand), select, not: not)
        case .inTable(let operand, let schema, let table, let arguments, let not):
            return .inTable(t(operand), schema: schema, table: table, arguments: arguments?.map(t), not: not)
        case .isNull(let operand, let not): return .isNull(t(operand), not: not)
        case .caseWhen(let base, let branches, let otherwise):
            return .caseWhen(base: base.map(t), branches: branches.map { CaseBranch(when: t($0.when), then: t($0.then)) }, otherwise: otherwise.map(t))
        case .cast(let operand, let type): return .cast(t(operand), type: type)
        case .function(var call):
            call.arguments = call.arguments.map(t)
            call.filter = call.filter.map(t)
            return .function(call)
        case .row(let list): return .row(list.map(t))
        }
    }
}

extension Expr {
    /// The direct sub-expressions (not entering subqueries).
    public var children: [Expr] {
        switch self {
        case .literal, .parameter, .column, .exists, .subquery: return []
        case .unary(_, let operand), .collate(let operand, _), .isNull(let operand, _), .cast(let operand, _): return [operand]
        case .binary(_, let left, let right), .distinctFrom(let left, let right, _): return [left, right]
        case .pattern(let operand, _, let pattern, let escape, _): return [operand, pattern] + (escape.map { [$0] } ?? [])
        case .between(let operand, let low, let high, _): return [operand, low, high]
        case .inList(let operand, let list, _): return [operand] + list
        case .inSelect(let operand, _, _): return [operand]
        case .inTable(let operand, _, _, let arguments, _): return [operand] + (arguments ?? [])
        case .caseWhen(let base, let branches, let otherwise):
            return (base.map { [$0] } ?? []) + branches.flatMap { [$0.when, $0.then] } + (otherwise.map { [$0] } ?? [])
        case .function(let call): return call.arguments + (call.filter.map { [$0] } ?? [])
        case .row(let list): return list
        }
    }
}

extension Select {
    /// Rebuilds every expression of the statement with `Expr.transformed(replace)`, entering
    /// subqueries, common tables, FROM subqueries and ON clauses, in the order the expressions are
    /// written (so a rewrite can number anonymous `?` parameters as SQLite would). Window
    /// definitions are left as they are.
    public func transformingExpressions(_ replace: (Expr) -> Expr?) -> Select {
        withoutActuallyEscaping(replace) { replace in
            ExpressionRewriter(replace: replace).select(self)
        }
    }

    /// The names of every table the statement reads, subqueries and `IN table` included (common
    /// tables' own names are not resolved: a CTE named like a table counts as that table).
    public var referencedTables: [String] {
        var names: [String] = []
        func visit(_ select: Select) {
            for table in select.with?.tables ?? [] { visit(table.select) }
            visit(select.body)
        }
        func visit(_ body: SelectBody) {
            switch body {
            case .core(let core): if let from = core.from { visit(from) }
            case .values: break
            case .compound(let left, _, let right): visit(left); visit(right)
            }
        }
        func visit(_ item: FromItem) {
            switch item {
            case .table(let name, _, _, _): names.append(name)
            case .tableFunction(let name, _, _, _): names.append(name)
            case .subquery(let select, _): visit(select)
            case .join(let left, _, let right, _): visit(left); visit(right)
            case .group(let inner): visit(inner)
            }
        }
        visit(self)
        // `IN table` and the FROM clauses of subqueries inside expressions (the walk enters
        // nested subqueries itself).
        _ = transformingExpressions { node in
            switch node {
            case .inTable(_, _, let table, _, _): names.append(table)
            case .subquery(let select), .exists(let select), .inSelect(_, let select, _): visit(select)
            default: break
            }
            return nil
        }
        return names
    }
}

extension Expr {
    /// `transformed(replace)` that also enters subqueries (`Select.transformingExpressions`).
    public func transformingDeep(_ replace: (Expr) -> Expr?) -> Expr {
        withoutActuallyEscaping(replace) { replace in ExpressionRewriter(replace: replace).expr(self) }
    }
}

/// The walk behind `Select.transformingExpressions`.
private struct ExpressionRewriter {
    let replace: (Expr) -> Expr?

    func select(_ select: Select) -> Select {
        var result = select
        if var with = select.with {
            with.tables = with.tables.map { table in
                var table = table
                table.select = self.select(table.select)
                return table
            }
            result.with = with
        }
        result.body = self.body(select.body)
        result.orderBy = select.orderBy.map { term in
            var term = term
            term.expr = expr(term.expr)
            return term
        }
        if let limit = select.limit {
            result.limit = Limit(count: expr(limit.count), offset: limit.offset.map { expr($0) })
        }
        return result
    }

    func body(_ body: SelectBody) -> SelectBody {
        switch body {
        case .core(var core):
            core.columns = core.columns.map { column in
                if case .expr(let e, let alias, let span) = column { return .expr(expr(e), alias: alias, span: span) }
                return column
            }
            core.from = core.from.map { from($0) }
            core.whereClause = core.whereClause.map { expr($0) }
            core.groupBy = core.groupBy.map { expr($0) }
            core.having = core.having.map { expr($0) }
            return .core(core)
        case .values(let rows):
            return .values(rows.map { $0.map { expr($0) } })
        case .compound(let left, let op, let right):
            let newLeft = self.body(left)
            return .compound(newLeft, op, self.body(right))
        }
    }

    func from(_ item: FromItem) -> FromItem {
        switch item {
        case .table:
            return item
        case .tableFunction(let name, let schema, let arguments, let alias):
            return .tableFunction(name: name, schema: schema, arguments: arguments.map { expr($0) }, alias: alias)
        case .subquery(let inner, let alias):
            return .subquery(select(inner), alias: alias)
        case .join(let left, let op, let right, let constraint):
            let newLeft = from(left)
            let newRight = from(right)
            if case .on(let condition) = constraint { return .join(newLeft, op, newRight, .on(expr(condition))) }
            return .join(newLeft, op, newRight, constraint)
        case .group(let inner):
            return .group(from(inner))
        }
    }

    func expr(_ expression: Expr) -> Expr {
        expression.transformed { node in
            if let replaced = replace(node) { return replaced }
            switch node {
            case .subquery(let inner): return .subquery(select(inner))
            case .exists(let inner): return .exists(select(inner))
            case .inSelect(let operand, let inner, let not):
                let newOperand = expr(operand)
                return .inSelect(newOperand, select(inner), not: not)
            default: return nil
            }
        }
    }
}
