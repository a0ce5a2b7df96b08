/// The syntax tree of one SQLite SELECT statement, as sandgate's parser produces it and its
/// renderer prints it. Every node keeps enough to be rendered back to equivalent SQL.

/// A complete SELECT: optional WITH, a compound body, ORDER BY and LIMIT.
public struct Select: Sendable, Equatable {
    public var with: With?
    public var body: SelectBody
    public var orderBy: [OrderingTerm]
    public var limit: Limit?

    public init(with: With? = nil, body: SelectBody, orderBy: [OrderingTerm] = [], limit: Limit? = nil) {
        self.with = with
        self.body = body
        self.orderBy = orderBy
        self.limit = limit
    }
}

public struct With: Sendable, Equatable {
    public var recursive: Bool
    public var tables: [CommonTable]
}

public struct CommonTable: Sendable, Equatable {
    public var name: String
    public var columns: [String]
    /// nil: unspecified; true: MATERIALIZED; false: NOT MATERIALIZED.
    public var materialized: Bool?
    public var select: Select
}

/// A single SELECT core, a VALUES list, or a compound of two bodies (left-associative).
public indirect enum SelectBody: Sendable, Equatable {
    case core(SelectCore)
    case values([[Expr]])
    case compound(SelectBody, CompoundOperator, SelectBody)
}

public enum CompoundOperator: String, Sendable, Equatable {
    case union = "UNION"
    case unionAll = "UNION ALL"
    case intersect = "INTERSECT"
    case except = "EXCEPT"
}

public struct SelectCore: Sendable, Equatable {
    public var distinct: Bool
    public var columns: [ResultColumn]
    public var from: FromItem?
    public var whereClause: Expr?
    public var groupBy: [Expr]
    public var having: Expr?
    public var windows: [NamedWindow]

    public init(distinct: Bool = false, columns: [ResultColumn], from: FromItem? = nil, whereClause: Expr? = nil,
                groupBy: [Expr] = [], having: Expr? = nil, windows: [NamedWindow] = []) {
        self.distinct = distinct
        self.columns = columns
        self.from = from
        self.whereClause = whereClause
        self.groupBy = groupBy
        self.having = having
        self.windows = windows
    }
}

public enum ResultColumn: Sendable, Equatable {
    case star
    case tableStar(String)
    /// `alias` is the written alias; `span` is the expression's source text, which SQLite uses as
    /// the column name when there is no alias.
    case expr(Expr, alias: String?, span: String)
}

public struct NamedWindow: Sendable, Equatable {
    public var name: String
    public var definition: WindowDefinition
}

public indirect enum FromItem: Sendable, Equatable {
    case table(name: String, schema: String?, alias: String?, indexHint: IndexHint?)
    case tableFunction(name: String, schema: String?, arguments: [Expr], alias: String?)
    case subquery(Select, alias: String?)
    case join(FromItem, JoinOperator, FromItem, JoinConstraint?)
    /// A parenthesised join: `(a JOIN b ON …)`.
    case group(FromItem)
}

public enum IndexHint: Sendable, Equatable {
    case indexedBy(String)
    case notIndexed
}

public struct JoinOperator: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case comma = ","
        case inner = "JOIN"
        case cross = "CROSS JOIN"
        case left = "LEFT JOIN"
        case right = "RIGHT JOIN"
        case full = "FULL JOIN"
    }
    public var kind: Kind
    public var natural: Bool
}

public enum JoinConstraint: Sendable, Equatable {
    case on(Expr)
    case using([String])
}

public struct OrderingTerm: Sendable, Equatable {
    public var expr: Expr
    /// nil: unspecified (ascending).
    public var descending: Bool?
    /// nil: unspecified; true: NULLS FIRST; false: NULLS LAST.
    public var nullsFirst: Bool?
}

/// `LIMIT count [OFFSET offset]`; the `LIMIT offset, count` form is normalised into this.
public struct Limit: Sendable, Equatable {
    public var count: Expr
    public var offset: Expr?
}

public enum Literal: Sendable, Equatable {
    /// The number as written (decimal, real with exponent or hex); rendering keeps the text so
    /// integer-versus-real typing is unchanged.
    case number(String)
    case string(String)
    /// Hex digits of a blob literal.
    case blob(String)
    case null
    case bool(Bool)
    case currentTime
    case currentDate
    case currentTimestamp
}

public struct ColumnReference: Sendable, Equatable {
    public var schema: String?
    public var table: String?
    public var column: String
}

public enum UnaryOperator: String, Sendable, Equatable {
    case negate = "-"
    case plus = "+"
    case bitNot = "~"
    case not = "NOT"
}

public enum BinaryOperator: String, Sendable, Equatable {
    case or = "OR", and = "AND"
    case equal = "=", notEqual = "<>", `is` = "IS", isNot = "IS NOT"
    case less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
    case bitAnd = "&", bitOr = "|", shiftLeft = "<<", shiftRight = ">>"
    case add = "+", subtract = "-", multiply = "*", divide = "/", remainder = "%"
    case concat = "||", extract = "->", extractText = "->>"
}

public enum PatternOperator: String, Sendable, Equatable {
    case like = "LIKE", glob = "GLOB", regexp = "REGEXP", match = "MATCH"
}

public struct CaseBranch: Sendable, Equatable {
    public var when: Expr
    public var then: Expr
}

public struct FunctionCall: Sendable, Equatable {
    public var name: String
    public var distinct: Bool
    /// `count(*)`.
    public var star: Bool
    public var arguments: [Expr]
    public var filter: Expr?
    public var over: WindowReference?
}

public enum WindowReference: Sendable, Equatable {
    case named(String)
    case definition(WindowDefinition)
}

public struct WindowDefinition: Sendable, Equatable {
    public var base: String?
    public var partitionBy: [Expr]
    public var orderBy: [OrderingTerm]
    public var frame: Frame?
}

public struct Frame: Sendable, Equatable {
    public enum Unit: String, Sendable, Equatable { case rows = "ROWS", range = "RANGE", groups = "GROUPS" }
    public enum Bound: Sendable, Equatable {
        case unboundedPreceding
        case preceding(Expr)
        case currentRow
        case following(Expr)
        case unboundedFollowing
    }
    public enum Exclude: String, Sendable, Equatable {
        case noOthers = "NO OTHERS", currentRow = "CURRENT ROW", group = "GROUP", ties = "TIES"
    }
    public var unit: Unit
    public var start: Bound
    /// nil: the single-bound form.
    public var end: Bound?
    public var exclude: Exclude?
}

/// An expression. Parentheses are not kept: the renderer adds them wherever precedence could matter.
public indirect enum Expr: Sendable, Equatable {
    case literal(Literal)
    /// The parameter as written: `?`, `?3`, `:name`, `@name`, `$name`.
    case parameter(String)
    case column(ColumnReference)
    case unary(UnaryOperator, Expr)
    case binary(BinaryOperator, Expr, Expr)
    /// `IS [NOT] DISTINCT FROM`.
    case distinctFrom(Expr, Expr, not: Bool)
    case collate(Expr, String)
    case pattern(Expr, PatternOperator, Expr, escape: Expr?, not: Bool)
    case between(Expr, low: Expr, high: Expr, not: Bool)
    case inList(Expr, [Expr], not: Bool)
    case inSelect(Expr, Select, not: Bool)
    case inTable(Expr, schema: String?, table: String, arguments: [Expr]?, not: Bool)
    /// `ISNULL`, `NOTNULL`, `NOT NULL` postfix forms.
    case isNull(Expr, not: Bool)
    case exists(Select)
    case subquery(Select)
    case caseWhen(base: Expr?, branches: [CaseBranch], otherwise: Expr?)
    case cast(Expr, type: String)
    case function(FunctionCall)
    /// A row value `(a, b, …)`.
    case row([Expr])
}

// Public memberwise initialisers, so that rewriters in other modules can build nodes.
extension With {
    public init(recursive: Bool, tables: [CommonTable], _: Void = ()) { self.recursive = recursive; self.tables = tables }
}
extension CommonTable {
    public init(name: String, columns: [String], materialized: Bool?, select: Select, _: Void = ()) {
        self.name = name; self.columns = columns; self.materialized = materialized; self.select = select
    }
}
extension NamedWindow {
    public init(name: String, definition: WindowDefinition, _: Void = ()) { self.name = name; self.definition = definition }
}
extension JoinOperator {
    public init(kind: Kind, natural: Bool, _: Void = ()) { self.kind = kind; self.natural = natural }
}
extension OrderingTerm {
    public init(expr: Expr, descending: Bool?, nullsFirst: Bool?, _: Void = ()) {
        self.expr = expr; self.descending = descending; self.nullsFirst = nullsFirst
    }
}
extension Limit {
    public init(count: Expr, offset: Expr?, _: Void = ()) { self.count = count; self.offset = offset }
}
extension ColumnReference {
    public init(schema: String?, table: String?, column: String, _: Void = ()) {
        self.schema = schema; self.table = table; self.column = column
    }
}
extension CaseBranch {
    public init(when: Expr, then: Expr, _: Void = ()) { self.when = when; self.then = then }
}
extension FunctionCall {
    public init(name: String, distinct: Bool, star: Bool, arguments: [Expr], filter: Expr?, over: WindowReference?, _: Void = ()) {
        self.name = name; self.distinct = distinct; self.star = star; self.arguments = arguments; self.filter = filter; self.over = over
    }
}
extension WindowDefinition {
    public init(base: String?, partitionBy: [Expr], orderBy: [OrderingTerm], frame: Frame?, _: Void = ()) {
        self.base = base; self.partitionBy = partitionBy; self.orderBy = orderBy; self.frame = frame
    }
}
extension Frame {
    public init(unit: Unit, start: Bound, end: Bound?, exclude: Exclude?, _: Void = ()) {
        self.unit = unit; self.start = start; self.end = end; self.exclude = exclude
    }
}
