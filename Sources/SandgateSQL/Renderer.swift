/// Prints a syntax tree as canonical SQLite SQL: identifiers always double-quoted, every compound
/// expression parenthesised, numbers exactly as written. Executing `render(parse(q))` gives the
/// result of `q`, column names included (unaliased expressions get their source text as alias,
/// which is the name SQLite would have given them).
public enum Renderer {
    public static func render(_ select: Select) -> String {
        var output = ""
        write(select, to: &output)
        return output
    }

    public static func render(_ expr: Expr) -> String {
        var output = ""
        write(expr, to: &output)
        return output
    }

    /// `"name"` with embedded quotes doubled.
    public static func identifier(_ name: String) -> String {
        quoted(name, by: "\"")
    }

    /// `'text'` with embedded quotes doubled.
    public static func string(_ text: String) -> String {
        quoted(text, by: "'")
    }

    /// `text` between two `quote`s with every `quote` inside doubled — by Unicode scalar, never by
    /// Character: Swift's `replacing("'", …)` does not see a quote that a combining mark follows
    /// (`'` + U+0301 is one Character), which left such quotes undoubled and let the rest of a
    /// string literal reach SQLite as SQL (found by the parser fuzzer).
    public static func quoted(_ text: String, by quote: Unicode.Scalar) -> String {
        var output = String.UnicodeScalarView()
        output.append(quote)
        for scalar in text.unicodeScalars {
            output.append(scalar)
            if scalar == quote { output.append(quote) }
        }
        output.append(quote)
        return String(output)
    }

    static func write(_ select: Select, to output: inout String) {
        if let with = select.with {
            output += with.recursive ? "WITH RECURSIVE " : "WITH "
            for (index, table) in with.tables.enumerated() {
                if index > 0 { output += ", " }
                output += identifier(table.name)
                if !table.columns.isEmpty {
                    output += "(" + table.columns.map(identifier).joined(separator: ", ") + ")"
                }
                output += " AS "
                if let materialized = table.materialized { output += materialized ? "MATERIALIZED " : "NOT MATERIALIZED " }
                output += "("
                write(table.select, to: &output)
                output += ")"
            }
            output += " "
        }
        write(select.body, to: &output)
        if !select.orderBy.isEmpty {
            output += " ORDER BY "
            write(select.orderBy, to: &output)
        }
        if let limit = select.limit {
            output += " LIMIT "
            write(limit.count, to: &output)
            if let offset = limit.offset {
                output += " OFFSET "
                write(offset, to: &output)
            }
        }
    }

    static func write(_ body: SelectBody, to output: inout String) {
        switch body {
        case .core(let core):
            write(core, to: &output)
        case .values(let rows):
            output += "VALUES "
            for (index, row) in rows.enumerated() {
                if index > 0 { output += ", " }
                output += "("
                write(row, to: &output)
                output += ")"
            }
        case .compound(let left, let op, let right):
            write(left, to: &output)
            output += " \(op.rawValue) "
            write(right, to: &output)
        }
    }

    static func write(_ core: SelectCore, to output: inout String) {
        output += core.distinct ? "SELECT DISTINCT " : "SELECT "
        for (index, column) in core.columns.enumerated() {
            if index > 0 { output += ", " }
            switch column {
            case .star: output += "*"
            case .tableStar(let table): output += identifier(table) + ".*"
            case .expr(let expr, let alias, let span):
                write(expr, to: &output)
                if let alias {
                    output += " AS " + identifier(alias)
                } else if case .column = expr {
                    // SQLite names a bare column by the column itself.
                } else {
                    output += " AS " + identifier(span)
                }
            }
        }
        if let from = core.from {
            output += " FROM "
            write(from, to: &output)
        }
        if let condition = core.whereClause {
            output += " WHERE "
            write(condition, to: &output)
        }
        if !core.groupBy.isEmpty {
            output += " GROUP BY "
            write(core.groupBy, to: &output)
        }
        if let having = core.having {
            output += " HAVING "
            write(having, to: &output)
        }
        if !core.windows.isEmpty {
            output += " WINDOW "
            for (index, window) in core.windows.enumerated() {
                if index > 0 { output += ", " }
                output += identifier(window.name) + " AS "
                write(window.definition, to: &output)
            }
        }
    }

    static func write(_ item: FromItem, to output: inout String) {
        switch item {
        case .table(let name, let schema, let alias, let hint):
            if let schema { output += identifier(schema) + "." }
            output += identifier(name)
            if let alias { output += " AS " + identifier(alias) }
            switch hint {
            case .indexedBy(let index): output += " INDEXED BY " + identifier(index)
            case .notIndexed: output += " NOT INDEXED"
            case nil: break
            }
        case .tableFunction(let name, let schema, let arguments, let alias):
            if let schema { output += identifier(schema) + "." }
            output += identifier(name) + "("
            write(arguments, to: &output)
            output += ")"
            if let alias { output += " AS " + identifier(alias) }
        case .subquery(let select, let alias):
            output += "("
            write(select, to: &output)
            output += ")"
            if let alias { output += " AS " + identifier(alias) }
        case .join(let left, let op, let right, let constraint):
            write(left, to: &output)
            if op.kind == .comma {
                output += ", "
            } else {
                output += op.natural ? " NATURAL \(op.kind.rawValue) " : " \(op.kind.rawValue) "
            }
            write(right, to: &output)
            switch constraint {
            case .on(let condition):
                output += " ON "
                write(condition, to: &output)
            case .using(let names):
                output += " USING (" + names.map(identifier).joined(separator: ", ") + ")"
            case nil: break
            }
        case .group(let inner):
            output += "("
            write(inner, to: &output)
            output += ")"
        }
    }

    static func write(_ terms: [OrderingTerm], to output: inout String) {
        for (index, term) in terms.enumerated() {
            if index > 0 { output += ", " }
            write(term.expr, to: &output)
            if let descending = term.descending { output += descending ? " DESC" : " ASC" }
            if let nullsFirst = term.nullsFirst { output += nullsFirst ? " NULLS FIRST" : " NULLS LAST" }
        }
    }

    static func write(_ list: [Expr], to output: inout String) {
        for (index, expr) in list.enumerated() {
            if index > 0 { output += ", " }
            write(expr, to: &output)
        }
    }

    static func write(_ definition: WindowDefinition, to output: inout String) {
        output += "("
        var parts: [String] = []
        if let base = definition.base { parts.append(identifier(base)) }
        if !definition.partitionBy.isEmpty {
            var text = "PARTITION BY "
            write(definition.partitionBy, to: &text)
            parts.append(text)
        }
        if !definition.orderBy.isEmpty {
            var text = "ORDER BY "
            write(definition.orderBy, to: &text)
            parts.append(text)
        }
        if let frame = definition.frame {
            var text = frame.unit.rawValue + " "
            if let end = frame.end {
                text += "BETWEEN "
                write(frame.start, to: &text)
                text += " AND "
                write(end, to: &text)
            } else {
                write(frame.start, to: &text)
            }
            if let exclude = frame.exclude { text += " EXCLUDE " + exclude.rawValue }
            parts.append(text)
        }
        output += parts.joined(separator: " ") + ")"
    }

    static func write(_ bound: Frame.Bound, to output: inout String) {
        switch bound {
        case .unboundedPreceding: output += "UNBOUNDED PRECEDING"
        case .unboundedFollowing: output += "UNBOUNDED FOLLOWING"
        case .currentRow: output += "CURRENT ROW"
        case .preceding(let expr):
            write(expr, to: &output)
            output += " PRECEDING"
        case .following(let expr):
            write(expr, to: &output)
            output += " FOLLOWING"
        }
    }

    static func write(_ expr: Expr, to output: inout String) {
        switch expr {
        case .literal(let literal):
            switch literal {
            case .number(let text): output += text
            case .string(let text): output += string(text)
            case .blob(let hex): output += "X'" + hex + "'"
            case .null: output += "NULL"
            case .bool(let value): output += value ? "TRUE" : "FALSE"
            case .currentTime: output += "CURRENT_TIME"
            case .currentDate: output += "CURRENT_DATE"
            case .currentTimestamp: output += "CURRENT_TIMESTAMP"
            }
        case .parameter(let text):
            output += text
        case .column(let reference):
            if let schema = reference.schema { output += identifier(schema) + "." }
            if let table = reference.table { output += identifier(table) + "." }
            output += identifier(reference.column)
        case .unary(let op, let operand):
            output += "(" + op.rawValue + " "
            write(operand, to: &output)
            output += ")"
        case .binary(let op, let left, let right):
            output += "("
            write(left, to: &output)
            output += " " + op.rawValue + " "
            write(right, to: &output)
            output += ")"
        case .distinctFrom(let left, let right, let not):
            output += "("
            write(left, to: &output)
            output += not ? " IS NOT DISTINCT FROM " : " IS DISTINCT FROM "
            write(right, to: &output)
            output += ")"
        case .collate(let operand, let collation):
            output += "("
            write(operand, to: &output)
            output += " COLLATE " + identifier(collation) + ")"
        case .pattern(let operand, let op, let pattern, let escape, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " NOT \(op.rawValue) " : " \(op.rawValue) "
            write(pattern, to: &output)
            if let escape {
                output += " ESCAPE "
                write(escape, to: &output)
            }
            output += ")"
        case .between(let operand, let low, let high, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " NOT BETWEEN " : " BETWEEN "
            write(low, to: &output)
            output += " AND "
            write(high, to: &output)
            output += ")"
        case .inList(let operand, let list, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " NOT IN (" : " IN ("
            write(list, to: &output)
            output += "))"
        case .inSelect(let operand, let select, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " NOT IN (" : " IN ("
            write(select, to: &output)
            output += "))"
        case .inTable(let operand, let schema, let table, let arguments, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " NOT IN " : " IN "
            if let schema { output += identifier(schema) + "." }
            output += identifier(table)
            if let arguments {
                output += "("
                write(arguments, to: &output)
                output += ")"
            }
            output += ")"
        case .isNull(let operand, let not):
            output += "("
            write(operand, to: &output)
            output += not ? " IS NOT NULL)" : " IS NULL)"
        case .exists(let select):
            output += "EXISTS ("
            write(select, to: &output)
            output += ")"
        case .subquery(let select):
            output += "("
            write(select, to: &output)
            output += ")"
        case .caseWhen(let base, let branches, let otherwise):
            output += "CASE"
            if let base {
                output += " "
                write(base, to: &output)
            }
            for branch in branches {
                output += " WHEN "
                write(branch.when, to: &output)
                output += " THEN "
                write(branch.then, to: &output)
            }
            if let otherwise {
                output += " ELSE "
                write(otherwise, to: &output)
            }
            output += " END"
        case .cast(let operand, let type):
            output += "CAST("
            write(operand, to: &output)
            output += " AS " + type + ")"
        case .function(let call):
            output += call.name + "("
            if call.star {
                output += "*"
            } else {
                if call.distinct { output += "DISTINCT " }
                write(call.arguments, to: &output)
            }
            output += ")"
            if let filter = call.filter {
                output += " FILTER (WHERE "
                write(filter, to: &output)
                output += ")"
            }
            switch call.over {
            case .named(let name): output += " OVER " + identifier(name)
            case .definition(let definition):
                output += " OVER "
                write(definition, to: &output)
            case nil: break
            }
        case .row(let list):
            output += "("
            write(list, to: &output)
            output += ")"
        }
    }
}
