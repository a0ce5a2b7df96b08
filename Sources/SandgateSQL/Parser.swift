/// A recursive-descent parser for SQLite's SELECT dialect with SQLite's operator precedence.
///
/// Statements other than SELECT are recognised by their first keyword and refused with
/// `.notASelect`. Nesting deeper than `maximumDepth` is refused with `.tooDeep`, so the parser's
/// stack and time stay bounded on adversarial input.
public struct Parser {
    private let tokens: [Token]
    private let source: [UInt8]
    private var index = 0
    private var depth = 0
    private let maximumDepth: Int

    /// Parses exactly one SELECT statement (a trailing `;` is allowed).
    public static func parseSelect(_ sql: String, maximumDepth: Int = 200) throws(SQLSyntaxError) -> Select {
        var parser = try Parser(sql, maximumDepth: maximumDepth)
        return try parser.parseStatement()
    }

    /// Parses one expression (for policy row filters).
    public static func parseExpression(_ sql: String, maximumDepth: Int = 200) throws(SQLSyntaxError) -> Expr {
        var parser = try Parser(sql, maximumDepth: maximumDepth)
        let expr = try parser.parseExpr()
        if let extra = parser.peek { throw parser.unexpected(extra, expected: "the end of the expression") }
        return expr
    }

    /// Tokenizes `sql`; lexical errors become syntax errors with their position.
    init(_ sql: String, maximumDepth: Int) throws(SQLSyntaxError) {
        do {
            tokens = try Lexer.tokenize(sql)
        } catch {
            throw SQLSyntaxError(.syntax, error.message, at: error.position)
        }
        source = Array(sql.utf8)
        self.maximumDepth = maximumDepth
    }

    // MARK: Statement

    static let otherStatements: Set<String> = [
        "PRAGMA", "ATTACH", "DETACH", "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "VACUUM",
        "ANALYZE", "REINDEX", "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "EXPLAIN", "UPSERT",
    ]

    mutating func parseStatement() throws(SQLSyntaxError) -> Select {
        guard let first = peek else { throw SQLSyntaxError(.syntax, "the query is empty", at: nil) }
        if first.kind == .word, Self.otherStatements.contains(first.value.uppercased()) {
            throw SQLSyntaxError(.notASelect(keyword: first.value.uppercased()), "only SELECT statements are allowed, not \(first.value.uppercased())", at: first.position)
        }
        let select = try parseSelect()
        while accept(symbol: ";") {}
        if let extra = peek {
            if extra.kind == .word, Self.otherStatements.contains(extra.value.uppercased()) || extra.isWord("SELECT") || extra.isWord("WITH") {
                throw SQLSyntaxError(.notASelect(keyword: extra.value.uppercased()), "only one statement per request is allowed", at: extra.position)
            }
            throw unexpected(extra, expected: "the end of the statement")
        }
        return select
    }

    // MARK: Token helpers

    var peek: Token? { index < tokens.count ? tokens[index] : nil }

    func peek(_ ahead: Int) -> Token? {
        index + ahead < tokens.count ? tokens[index + ahead] : nil
    }

    func isKeyword(_ word: String, ahead: Int = 0) -> Bool { peek(ahead)?.isWord(word) == true }

    func isSymbol(_ symbol: String, ahead: Int = 0) -> Bool { peek(ahead)?.isSymbol(symbol) == true }

    mutating func accept(_ word: String) -> Bool {
        guard isKeyword(word) else { return false }
        index += 1
        return true
    }

    mutating func accept(symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        index += 1
        return true
    }

    mutating func expect(_ word: String) throws(SQLSyntaxError) {
        guard accept(word) else { throw unexpected(peek, expected: word) }
    }

    mutating func expect(symbol: String) throws(SQLSyntaxError) {
        guard accept(symbol: symbol) else { throw unexpected(peek, expected: "'\(symbol)'") }
    }

    func unexpected(_ token: Token?, expected: String) -> SQLSyntaxError {
        guard let token else {
            return SQLSyntaxError(.syntax, "incomplete query: expected \(expected) at the end", at: tokens.last.map(endPosition))
        }
        let shown = token.kind == .string ? "'\(token.value)'" : token.value
        return SQLSyntaxError(.syntax, "syntax error near \"\(shown)\": expected \(expected)", at: token.position)
    }

    private func endPosition(_ token: Token) -> SourcePosition {
        SourcePosition(offset: token.position.offset + token.length, line: token.position.line, column: token.position.column + token.length)
    }

    mutating func enter() throws(SQLSyntaxError) {
        depth += 1
        if depth > maximumDepth {
            throw SQLSyntaxError(.tooDeep, "the query is nested too deeply (more than \(maximumDepth) levels)", at: peek?.position)
        }
    }

    mutating func leave() { depth -= 1 }

    /// Left-associative chains (`a + b + c …`, `… UNION …`, joins) are parsed by loops but build
    /// trees as tall as the chain is long; each link counts as a level, so that every tree the
    /// parser returns can be walked recursively (checker, renderer) within the depth limit.
    mutating func link(_ links: inout Int) throws(SQLSyntaxError) {
        try enter()
        links += 1
    }

    /// Words that end an expression or a list, so they cannot be a bare alias or identifier.
    static let reserved: Set<String> = [
        "ADD", "ALL", "ALTER", "AND", "AS", "AUTOINCREMENT", "BETWEEN", "CASE", "CHECK", "COLLATE", "COMMIT",
        "CONSTRAINT", "CREATE", "CROSS", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "DEFAULT",
        "DEFERRABLE", "DELETE", "DISTINCT", "DROP", "ELSE", "ESCAPE", "EXCEPT", "EXISTS", "FOREIGN", "FROM",
        "FULL", "GLOB", "GROUP", "HAVING", "IN", "INDEX", "INDEXED", "INNER", "INSERT", "INTERSECT", "INTO", "IS",
        "ISNULL", "JOIN", "LEFT", "LIKE", "LIMIT", "MATCH", "NATURAL", "NOT", "NOTHING", "NOTNULL", "NULL", "ON",
        "OR", "ORDER", "OUTER", "PRIMARY", "REFERENCES", "REGEXP", "RETURNING", "RIGHT", "ROLLBACK", "SELECT",
        "SET", "TABLE", "THEN", "TO", "TRANSACTION", "UNION", "UNIQUE", "UPDATE", "USING", "VALUES", "WHEN",
        "WHERE", "WINDOW", "OFFSET", "FILTER", "OVER",
    ]

    /// Reserved words SQLite still accepts as a column name where an expression starts.
    static let columnWords: Set<String> = [
        "CROSS", "FULL", "GLOB", "INDEXED", "INNER", "LEFT", "LIKE", "MATCH", "NATURAL", "OUTER", "REGEXP", "RIGHT",
        "WINDOW", "OFFSET", "FILTER", "OVER",
    ]

    /// An identifier: a quoted one, or a word that is not reserved.
    mutating func identifier(_ what: String) throws(SQLSyntaxError) -> String {
        guard let token = peek else { throw unexpected(nil, expected: what) }
        if token.kind == .quotedIdentifier || (token.kind == .word && !Self.reserved.contains(token.value.uppercased())) {
            index += 1
            return token.value
        }
        throw unexpected(token, expected: what)
    }

    var atIdentifier: Bool {
        guard let token = peek else { return false }
        return token.kind == .quotedIdentifier || (token.kind == .word && !Self.reserved.contains(token.value.uppercased()))
    }

    // MARK: SELECT

    mutating func parseSelect() throws(SQLSyntaxError) -> Select {
        try enter()
        defer { leave() }
        var with: With?
        if accept("WITH") {
            let recursive = accept("RECURSIVE")
            var tables: [CommonTable] = []
            repeat {
                tables.append(try parseCommonTable())
            } while accept(symbol: ",")
            with = With(recursive: recursive, tables: tables)
        }
        let body = try parseCompound()
        var orderBy: [OrderingTerm] = []
        if accept("ORDER") {
            try expect("BY")
            orderBy = try parseOrderingTerms()
        }
        var limit: Limit?
        if accept("LIMIT") {
            let first = try parseExpr()
            if accept("OFFSET") {
                limit = Limit(count: first, offset: try parseExpr())
            } else if accept(symbol: ",") {
                limit = Limit(count: try parseExpr(), offset: first)
            } else {
                limit = Limit(count: first, offset: nil)
            }
        }
        return Select(with: with, body: body, orderBy: orderBy, limit: limit)
    }

    mutating func parseCommonTable() throws(SQLSyntaxError) -> CommonTable {
        let name = try identifier("a common table name")
        var columns: [String] = []
        if accept(symbol: "(") {
            repeat { columns.append(try identifier("a column name")) } while accept(symbol: ",")
            try expect(symbol: ")")
        }
        try expect("AS")
        var materialized: Bool?
        if accept("MATERIALIZED") {
            materialized = true
        } else if isKeyword("NOT"), isKeyword("MATERIALIZED", ahead: 1) {
            index += 2
            materialized = false
        }
        try expect(symbol: "(")
        let select = try parseSelect()
        try expect(symbol: ")")
        return CommonTable(name: name, columns: columns, materialized: materialized, select: select)
    }

    mutating func parseCompound() throws(SQLSyntaxError) -> SelectBody {
        var body = try parseSimpleBody()
        var links = 0
        defer { depth -= links }
        while true {
            let op: CompoundOperator
            if accept("UNION") {
                op = accept("ALL") ? .unionAll : .union
            } else if accept("INTERSECT") {
                op = .intersect
            } else if accept("EXCEPT") {
                op = .except
            } else {
                return body
            }
            try link(&links)
            body = .compound(body, op, try parseSimpleBody())
        }
    }

    mutating func parseSimpleBody() throws(SQLSyntaxError) -> SelectBody {
        if accept("VALUES") {
            var rows: [[Expr]] = []
            repeat {
                try expect(symbol: "(")
                rows.append(try parseExprList())
                try expect(symbol: ")")
            } while accept(symbol: ",")
            return .values(rows)
        }
        guard accept("SELECT") else { throw unexpected(peek, expected: "SELECT") }
        var core = SelectCore(columns: [])
        if accept("DISTINCT") {
            core.distinct = true
        } else {
            _ = accept("ALL")
        }
        repeat { core.columns.append(try parseResultColumn()) } while accept(symbol: ",")
        if accept("FROM") { core.from = try parseFrom() }
        if accept("WHERE") { core.whereClause = try parseExpr() }
        if accept("GROUP") {
            try expect("BY")
            core.groupBy = try parseExprList()
        }
        if accept("HAVING") { core.having = try parseExpr() }
        if accept("WINDOW") {
            repeat {
                let name = try identifier("a window name")
                try expect("AS")
                core.windows.append(NamedWindow(name: name, definition: try parseWindowDefinition()))
            } while accept(symbol: ",")
        }
        return .core(core)
    }

    mutating func parseResultColumn() throws(SQLSyntaxError) -> ResultColumn {
        if accept(symbol: "*") { return .star }
        if atIdentifier, isSymbol(".", ahead: 1), isSymbol("*", ahead: 2) {
            let table = try identifier("a table name")
            index += 2
            return .tableStar(table)
        }
        let start = peek?.position.offset ?? 0
        let expr = try parseExpr()
        let end = index > 0 ? tokens[index - 1].position.offset + tokens[index - 1].length : start
        let span = String(decoding: source[start..<max(start, end)], as: UTF8.self)
        return .expr(expr, alias: try parseAlias(), span: span)
    }

    /// `AS name`, `AS 'name'` or a bare name.
    mutating func parseAlias() throws(SQLSyntaxError) -> String? {
        if accept("AS") {
            if let token = peek, token.kind == .string {
                index += 1
                return token.value
            }
            return try identifier("an alias")
        }
        if atIdentifier { return try identifier("an alias") }
        if let token = peek, token.kind == .string {
            index += 1
            return token.value
        }
        return nil
    }

    // MARK: FROM

    mutating func parseFrom() throws(SQLSyntaxError) -> FromItem {
        var left = try parseTableOrSubquery()
        var links = 0
        defer { depth -= links }
        while let op = try parseJoinOperator() {
            try link(&links)
            let right = try parseTableOrSubquery()
            var constraint: JoinConstraint?
            if accept("ON") {
                constraint = .on(try parseExpr())
            } else if accept("USING") {
                try expect(symbol: "(")
                var names: [String] = []
                repeat { names.append(try identifier("a column name")) } while accept(symbol: ",")
                try expect(symbol: ")")
                constraint = .using(names)
            }
            left = .join(left, op, right, constraint)
        }
        return left
    }

    mutating func parseJoinOperator() throws(SQLSyntaxError) -> JoinOperator? {
        if accept(symbol: ",") { return JoinOperator(kind: .comma, natural: false) }
        let start = index
        let natural = accept("NATURAL")
        var kind: JoinOperator.Kind?
        if accept("LEFT") {
            _ = accept("OUTER")
            kind = .left
        } else if accept("RIGHT") {
            _ = accept("OUTER")
            kind = .right
        } else if accept("FULL") {
            _ = accept("OUTER")
            kind = .full
        } else if accept("INNER") {
            kind = .inner
        } else if accept("CROSS") {
            kind = .cross
        }
        if accept("JOIN") { return JoinOperator(kind: kind ?? .inner, natural: natural) }
        if natural || kind != nil { throw unexpected(peek, expected: "JOIN") }
        index = start
        return nil
    }

    mutating func parseTableOrSubquery() throws(SQLSyntaxError) -> FromItem {
        try enter()
        defer { leave() }
        if accept(symbol: "(") {
            if isKeyword("SELECT") || isKeyword("WITH") || isKeyword("VALUES") {
                let select = try parseSelect()
                try expect(symbol: ")")
                return .subquery(select, alias: try parseAlias())
            }
            let inner = try parseFrom()
            try expect(symbol: ")")
            if case .join = inner { return .group(inner) }
            // `(t)` or `(t) AS x`: a parenthesised single table.
            if let alias = try parseAlias() {
                switch inner {
                case .table(let name, let schema, nil, let hint): return .table(name: name, schema: schema, alias: alias, indexHint: hint)
                case .subquery(let select, nil): return .subquery(select, alias: alias)
                default: return .group(inner)
                }
            }
            return .group(inner)
        }
        var name = try identifier("a table name")
        var schema: String?
        if accept(symbol: ".") {
            schema = name
            name = try identifier("a table name")
        }
        if accept(symbol: "(") {
            let arguments = isSymbol(")") ? [] : try parseExprList()
            try expect(symbol: ")")
            return .tableFunction(name: name, schema: schema, arguments: arguments, alias: try parseAlias())
        }
        let alias = try parseAlias()
        var hint: IndexHint?
        if accept("INDEXED") {
            try expect("BY")
            hint = .indexedBy(try identifier("an index name"))
        } else if isKeyword("NOT"), isKeyword("INDEXED", ahead: 1) {
            index += 2
            hint = .notIndexed
        }
        return .table(name: name, schema: schema, alias: alias, indexHint: hint)
    }

    // MARK: ORDER BY and windows

    mutating func parseOrderingTerms() throws(SQLSyntaxError) -> [OrderingTerm] {
        var terms: [OrderingTerm] = []
        repeat {
            let expr = try parseExpr()
            var descending: Bool?
            if accept("ASC") { descending = false } else if accept("DESC") { descending = true }
            var nullsFirst: Bool?
            if accept("NULLS") {
                if accept("FIRST") { nullsFirst = true } else {
                    try expect("LAST")
                    nullsFirst = false
                }
            }
            terms.append(OrderingTerm(expr: expr, descending: descending, nullsFirst: nullsFirst))
        } while accept(symbol: ",")
        return terms
    }

    mutating func parseWindowDefinition() throws(SQLSyntaxError) -> WindowDefinition {
        try expect(symbol: "(")
        var definition = WindowDefinition(base: nil, partitionBy: [], orderBy: [], frame: nil)
        if atIdentifier, !["PARTITION", "ORDER", "RANGE", "ROWS", "GROUPS"].contains(peek?.value.uppercased() ?? "") {
            definition.base = try identifier("a window name")
        }
        if accept("PARTITION") {
            try expect("BY")
            definition.partitionBy = try parseExprList()
        }
        if accept("ORDER") {
            try expect("BY")
            definition.orderBy = try parseOrderingTerms()
        }
        if let unit = [("RANGE", Frame.Unit.range), ("ROWS", .rows), ("GROUPS", .groups)].first(where: { isKeyword($0.0) }) {
            index += 1
            var frame: Frame
            if accept("BETWEEN") {
                let start = try parseFrameBound()
                try expect("AND")
                frame = Frame(unit: unit.1, start: start, end: try parseFrameBound(), exclude: nil)
            } else {
                frame = Frame(unit: unit.1, start: try parseFrameBound(), end: nil, exclude: nil)
            }
            if accept("EXCLUDE") {
                if accept("NO") {
                    try expect("OTHERS")
                    frame.exclude = .noOthers
                } else if accept("CURRENT") {
                    try expect("ROW")
                    frame.exclude = .currentRow
                } else if accept("GROUP") {
                    frame.exclude = .group
                } else {
                    try expect("TIES")
                    frame.exclude = .ties
                }
            }
            definition.frame = frame
        }
        try expect(symbol: ")")
        return definition
    }

    mutating func parseFrameBound() throws(SQLSyntaxError) -> Frame.Bound {
        if accept("UNBOUNDED") {
            if accept("PRECEDING") { return .unboundedPreceding }
            try expect("FOLLOWING")
            return .unboundedFollowing
        }
        if isKeyword("CURRENT"), isKeyword("ROW", ahead: 1) {
            index += 2
            return .currentRow
        }
        let expr = try parseExpr()
        if accept("PRECEDING") { return .preceding(expr) }
        try expect("FOLLOWING")
        return .following(expr)
    }

    // MARK: Expressions (SQLite's precedence, lowest first)

    mutating func parseExprList() throws(SQLSyntaxError) -> [Expr] {
        var list: [Expr] = []
        repeat { list.append(try parseExpr()) } while accept(symbol: ",")
        return list
    }

    public mutating func parseExpr() throws(SQLSyntaxError) -> Expr {
        try enter()
        defer { leave() }
        var left = try parseAnd()
        var links = 0
        defer { depth -= links }
        while accept("OR") {
            try link(&links)
            left = .binary(.or, left, try parseAnd())
        }
        return left
    }

    mutating func parseAnd() throws(SQLSyntaxError) -> Expr {
        var left = try parseNot()
        var links = 0
        defer { depth -= links }
        while accept("AND") {
            try link(&links)
            left = .binary(.and, left, try parseNot())
        }
        return left
    }

    mutating func parseNot() throws(SQLSyntaxError) -> Expr {
        if accept("NOT") {
            try enter()
            defer { leave() }
            return .unary(.not, try parseNot())
        }
        return try parseEquality()
    }

    mutating func parseEquality() throws(SQLSyntaxError) -> Expr {
        var left = try parseRelational()
        var links = 0
        defer { depth -= links }
        while true {
            if links > 0 || isEqualityOperator { try link(&links) }
            if accept(symbol: "=") || accept(symbol: "==") {
                left = .binary(.equal, left, try parseRelational())
            } else if accept(symbol: "!=") || accept(symbol: "<>") {
                left = .binary(.notEqual, left, try parseRelational())
            } else if accept("IS") {
                let not = accept("NOT")
                if accept("DISTINCT") {
                    try expect("FROM")
                    left = .distinctFrom(left, try parseRelational(), not: not)
                } else {
                    left = .binary(not ? .isNot : .is, left, try parseRelational())
                }
            } else if accept("ISNULL") {
                left = .isNull(left, not: false)
            } else if accept("NOTNULL") {
                left = .isNull(left, not: true)
            } else if isKeyword("NOT"), isKeyword("NULL", ahead: 1) {
                index += 2
                left = .isNull(left, not: true)
            } else if let (not, kind) = peekNegatable() {
                index += not ? 2 : 1
                switch kind {
                case "IN": left = try parseIn(left, not: not)
                case "BETWEEN":
                    let low = try parseRelational()
                    try expect("AND")
                    left = .between(left, low: low, high: try parseRelational(), not: not)
                default:
                    let op = PatternOperator(rawValue: kind) ?? .like
                    let pattern = try parseRelational()
                    let escape = accept("ESCAPE") ? try parseRelational() : nil
                    left = .pattern(left, op, pattern, escape: escape, not: not)
                }
            } else {
                return left
            }
        }
    }

    /// An operator of the equality level at the cursor (it will extend the chain).
    var isEqualityOperator: Bool {
        guard let token = peek else { return false }
        if token.kind == .symbol { return ["=", "==", "!=", "<>"].contains(token.value) }
        return token.isWord("IS") || token.isWord("ISNULL") || token.isWord("NOTNULL") || peekNegatable() != nil
            || (token.isWord("NOT") && isKeyword("NULL", ahead: 1))
    }

    /// `[NOT] IN|BETWEEN|LIKE|GLOB|REGEXP|MATCH` at the cursor.
    func peekNegatable() -> (Bool, String)? {
        let words = ["IN", "BETWEEN", "LIKE", "GLOB", "REGEXP", "MATCH"]
        if isKeyword("NOT"), let next = peek(1), next.kind == .word, words.contains(next.value.uppercased()) {
            return (true, next.value.uppercased())
        }
        if let token = peek, token.kind == .word, words.contains(token.value.uppercased()) {
            return (false, token.value.uppercased())
        }
        return nil
    }

    mutating func parseIn(_ left: Expr, not: Bool) throws(SQLSyntaxError) -> Expr {
        if accept(symbol: "(") {
            if isKeyword("SELECT") || isKeyword("WITH") || isKeyword("VALUES") {
                let select = try parseSelect()
                try expect(symbol: ")")
                return .inSelect(left, select, not: not)
            }
            let list = isSymbol(")") ? [] : try parseExprList()
            try expect(symbol: ")")
            return .inList(left, list, not: not)
        }
        var table = try identifier("a list, subquery or table after IN")
        var schema: String?
        if accept(symbol: ".") {
            schema = table
            table = try identifier("a table name")
        }
        var arguments: [Expr]?
        if accept(symbol: "(") {
            arguments = isSymbol(")") ? [] : try parseExprList()
            try expect(symbol: ")")
        }
        return .inTable(left, schema: schema, table: table, arguments: arguments, not: not)
    }

    /// The left-associative binary levels above equality, lowest first (SQLite's precedence).
    static let binaryLevels: [[(symbol: String, op: BinaryOperator)]] = [
        [("<", .less), ("<=", .lessEqual), (">", .greater), (">=", .greaterEqual)],
        [("&", .bitAnd), ("|", .bitOr), ("<<", .shiftLeft), (">>", .shiftRight)],
        [("+", .add), ("-", .subtract)],
        [("*", .multiply), ("/", .divide), ("%", .remainder)],
        [("||", .concat), ("->", .extract), ("->>", .extractText)],
    ]

    mutating func parseRelational() throws(SQLSyntaxError) -> Expr {
        try parseBinary(level: 0)
    }

    mutating func parseBinary(level: Int) throws(SQLSyntaxError) -> Expr {
        guard level < Self.binaryLevels.count else { return try parseCollate() }
        var left = try parseBinary(level: level + 1)
        var links = 0
        defer { depth -= links }
        while let token = peek, token.kind == .symbol, let entry = Self.binaryLevels[level].first(where: { $0.symbol == token.value }) {
            index += 1
            try link(&links)
            left = .binary(entry.op, left, try parseBinary(level: level + 1))
        }
        return left
    }

    mutating func parseCollate() throws(SQLSyntaxError) -> Expr {
        var expr = try parseUnary()
        var links = 0
        defer { depth -= links }
        while accept("COLLATE") {
            try link(&links)
            expr = .collate(expr, try identifier("a collation name"))
        }
        return expr
    }

    mutating func parseUnary() throws(SQLSyntaxError) -> Expr {
        // `a = NOT b`: NOT as an operand binds everything above its own precedence, as in SQLite.
        if isKeyword("NOT"), !isKeyword("NULL", ahead: 1) {
            index += 1
            try enter()
            defer { leave() }
            return .unary(.not, try parseNot())
        }
        let op: UnaryOperator
        if accept(symbol: "-") { op = .negate } else if accept(symbol: "+") { op = .plus }
        else if accept(symbol: "~") { op = .bitNot } else { return try parsePrimary() }
        try enter()
        defer { leave() }
        return .unary(op, try parseUnary())
    }

    mutating func parsePrimary() throws(SQLSyntaxError) -> Expr {
        guard let token = peek else { throw unexpected(nil, expected: "an expression") }
        switch token.kind {
        case .number:
            index += 1
            return .literal(.number(token.value))
        case .string:
            index += 1
            return .literal(.string(token.value))
        case .blob:
            index += 1
            return .literal(.blob(token.value))
        case .parameter:
            index += 1
            return .parameter(token.value)
        case .symbol:
            guard token.isSymbol("(") else { throw unexpected(token, expected: "an expression") }
            index += 1
            try enter()
            defer { leave() }
            if isKeyword("SELECT") || isKeyword("WITH") || isKeyword("VALUES") {
                let select = try parseSelect()
                try expect(symbol: ")")
                return .subquery(select)
            }
            let list = try parseExprList()
            try expect(symbol: ")")
            return list.count == 1 ? list[0] : .row(list)
        case .quotedIdentifier:
            return try parseNameExpression()
        case .word:
            switch token.value.uppercased() {
            case "NULL": index += 1; return .literal(.null)
            case "CURRENT_TIME": index += 1; return .literal(.currentTime)
            case "CURRENT_DATE": index += 1; return .literal(.currentDate)
            case "CURRENT_TIMESTAMP": index += 1; return .literal(.currentTimestamp)
            case "TRUE" where !isSymbol(".", ahead: 1) && !isSymbol("(", ahead: 1):
                index += 1
                return .literal(.bool(true))
            case "FALSE" where !isSymbol(".", ahead: 1) && !isSymbol("(", ahead: 1):
                index += 1
                return .literal(.bool(false))
            case "CAST" where isSymbol("(", ahead: 1):
                index += 2
                let expr = try parseExpr()
                try expect("AS")
                let type = try parseTypeName()
                try expect(symbol: ")")
                return .cast(expr, type: type)
            case "CASE":
                index += 1
                return try parseCase()
            case "EXISTS":
                index += 1
                try expect(symbol: "(")
                let select = try parseSelect()
                try expect(symbol: ")")
                return .exists(select)
            case "RAISE":
                throw SQLSyntaxError(.syntax, "RAISE is only allowed in triggers", at: token.position)
            default:
                return try parseNameExpression()
            }
        }
    }

    /// A column reference (`c`, `t.c`, `s.t.c`) or a function call.
    mutating func parseNameExpression() throws(SQLSyntaxError) -> Expr {
        guard let first = peek else { throw unexpected(nil, expected: "an expression") }
        // A reserved word is not a function name (`SELECT SELECT (x)` is not a call of SELECT);
        // the ones SQLite accepts as column names (`like(…)`, `glob(…)`) are.
        let callable = !Self.reserved.contains(first.value.uppercased()) || Self.columnWords.contains(first.value.uppercased())
        if first.kind == .word, callable, isSymbol("(", ahead: 1) {
            index += 2
            return try parseFunctionCall(name: first.value)
        }
        if first.kind == .word, Self.reserved.contains(first.value.uppercased()), !Self.columnWords.contains(first.value.uppercased()) {
            throw unexpected(first, expected: "an expression")
        }
        index += 1
        let name = first.value
        guard accept(symbol: ".") else { return .column(ColumnReference(schema: nil, table: nil, column: name)) }
        let second = try identifier("a column name")
        guard accept(symbol: ".") else { return .column(ColumnReference(schema: nil, table: name, column: second)) }
        let third = try identifier("a column name")
        return .column(ColumnReference(schema: name, table: second, column: third))
    }

    mutating func parseFunctionCall(name: String) throws(SQLSyntaxError) -> Expr {
        try enter()
        defer { leave() }
        var call = FunctionCall(name: name, distinct: false, star: false, arguments: [], filter: nil, over: nil)
        if accept(symbol: "*") {
            call.star = true
        } else if !isSymbol(")") {
            if accept("DISTINCT") { call.distinct = true } else { _ = accept("ALL") }
            call.arguments = try parseExprList()
            if isKeyword("ORDER") {
                throw SQLSyntaxError(.syntax, "ORDER BY inside an aggregate is not supported", at: peek?.position)
            }
        }
        try expect(symbol: ")")
        if isKeyword("FILTER"), isSymbol("(", ahead: 1) {
            index += 2
            try expect("WHERE")
            call.filter = try parseExpr()
            try expect(symbol: ")")
        }
        if accept("OVER") {
            if isSymbol("(") {
                call.over = .definition(try parseWindowDefinition())
            } else {
                call.over = .named(try identifier("a window name"))
            }
        }
        return .function(call)
    }

    mutating func parseCase() throws(SQLSyntaxError) -> Expr {
        try enter()
        defer { leave() }
        let base = isKeyword("WHEN") ? nil : try parseExpr()
        var branches: [CaseBranch] = []
        while accept("WHEN") {
            let when = try parseExpr()
            try expect("THEN")
            branches.append(CaseBranch(when: when, then: try parseExpr()))
        }
        guard !branches.isEmpty else { throw unexpected(peek, expected: "WHEN") }
        let otherwise = accept("ELSE") ? try parseExpr() : nil
        try expect("END")
        return .caseWhen(base: base, branches: branches, otherwise: otherwise)
    }

    /// A type name: words, optionally with `(n)` or `(n, m)` (signed numbers).
    mutating func parseTypeName() throws(SQLSyntaxError) -> String {
        var words: [String] = []
        while let token = peek, token.kind == .word || token.kind == .quotedIdentifier, !token.isWord("AS") {
            guard token.value.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }) else {
                throw unexpected(token, expected: "a type name")
            }
            words.append(token.value)
            index += 1
        }
        guard !words.isEmpty else { throw unexpected(peek, expected: "a type name") }
        var text = words.joined(separator: " ")
        if accept(symbol: "(") {
            var numbers: [String] = []
            repeat {
                var sign = ""
                if accept(symbol: "-") { sign = "-" } else if accept(symbol: "+") { sign = "+" }
                guard let number = peek, number.kind == .number else { throw unexpected(peek, expected: "a number") }
                index += 1
                numbers.append(sign + number.value)
            } while accept(symbol: ",")
            try expect(symbol: ")")
            text += "(" + numbers.joined(separator: ", ") + ")"
        }
        return text
    }
}
