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
