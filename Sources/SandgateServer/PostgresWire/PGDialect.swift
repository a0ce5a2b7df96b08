import Foundation
import SandgateSQL

/// PostgreSQL spellings that analysts and client libraries type, turned into SQLite's where SQLite
/// has an equivalent. Works on tokens (strings, identifiers and comments are never rewritten
/// inside); the result still goes through sandgate's own parser and checker, so a translation
/// can never widen what a query may do.
enum PGDialect {
    struct Token: Equatable {
        enum Kind { case word, quotedIdentifier, string, number, parameter, symbol, space, comment }
        var kind: Kind
        var text: String

        var upper: String { kind == .word ? text.uppercased() : text }
        var isSpace: Bool { kind == .space || kind == .comment }
    }

    /// Splits SQL into tokens; `E'…'` strings become plain SQL strings with their escapes applied.
    static func tokenize(_ sql: String) -> [Token] {
        let s = Array(sql.unicodeScalars)
        var tokens: [Token] = []
        var i = 0
        func text(_ from: Int, _ to: Int) -> String { String(String.UnicodeScalarView(s[from..<to])) }
        while i < s.count {
            let c = s[i]
            let start = i
            if c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0C}" {
                while i < s.count, [" ", "\t", "\n", "\r", "\u{0C}"].contains(s[i]) { i += 1 }
                tokens.append(Token(kind: .space, text: text(start, i)))
            } else if c == "-", i + 1 < s.count, s[i + 1] == "-" {
                while i < s.count, s[i] != "\n" { i += 1 }
                tokens.append(Token(kind: .comment, text: text(start, i)))
            } else if c == "/", i + 1 < s.count, s[i + 1] == "*" {
                i += 2
                var depth = 1
                while i < s.count, depth > 0 {
                    if s[i] == "*", i + 1 < s.count, s[i + 1] == "/" { depth -= 1; i += 2 } else if s[i] == "/", i + 1 < s.count, s[i + 1] == "*" { depth += 1; i += 2 } else { i += 1 }
                }
                tokens.append(Token(kind: .comment, text: text(start, min(i, s.count))))
            } else if (c == "E" || c == "e"), i + 1 < s.count, s[i + 1] == "'" {
                i += 2
                var value = String.UnicodeScalarView()
                while i < s.count {
                    if s[i] == "\\", i + 1 < s.count {
                        let next = s[i + 1]
                        /// Up to `limit` digits of `radix` after the escape letter (octal: from the first digit).
                        func code(from start: Int, radix: UInt32, limit: Int) -> (Unicode.Scalar?, Int) {
                            var value: UInt32 = 0, end = start
                            while end < s.count, end - start < limit, let digit = UInt32(String(s[end]), radix: Int(radix)) {
                                value = value * radix + digit
                                end += 1
                            }
                            return (end > start ? Unicode.Scalar(value) : nil, end)
                        }
                        switch next {
                        case "n": value.append("\n"); i += 2
                        case "t": value.append("\t"); i += 2
                        case "r": value.append("\r"); i += 2
                        case "b": value.append("\u{08}"); i += 2
                        case "f": value.append("\u{0C}"); i += 2
                        case "x", "u", "U":
                            let (scalar, end) = code(from: i + 2, radix: 16, limit: next == "x" ? 2 : next == "u" ? 4 : 8)
                            if let scalar, scalar.value != 0 { value.append(scalar); i = end } else { value.append(next); i += 2 }
                        case "0"..."7":
                            let (scalar, end) = code(from: i + 1, radix: 8, limit: 3)
                            if let scalar, scalar.value != 0 { value.append(scalar); i = end } else { value.append(next); i += 2 }
                        default: value.append(next); i += 2
                        }
                    } else if s[i] == "'" {
                        if i + 1 < s.count, s[i + 1] == "'" { value.append("'"); i += 2 } else { i += 1; break }
                    } else {
                        value.append(s[i]); i += 1
                    }
                }
                tokens.append(Token(kind: .string, text: "'" + String(value).replacingOccurrences(of: "'", with: "''") + "'"))
            } else if c == "'" {
                i += 1
                while i < s.count {
                    if s[i] == "'" {
                        if i + 1 < s.count, s[i + 1] == "'" { i += 2 } else { i += 1; break }
                    } else { i += 1 }
                }
                tokens.append(Token(kind: .string, text: text(start, i)))
            } else if c == "\"" {
                i += 1
                while i < s.count {
                    if s[i] == "\"" {
                        if i + 1 < s.count, s[i + 1] == "\"" { i += 2 } else { i += 1; break }
                    } else { i += 1 }
                }
                tokens.append(Token(kind: .quotedIdentifier, text: text(start, i)))
            } else if c == "$", i + 1 < s.count, s[i + 1].properties.numericType != nil || ("0"..."9").contains(s[i + 1]) {
                i += 1
                while i < s.count, ("0"..."9").contains(s[i]) { i += 1 }
                tokens.append(Token(kind: .parameter, text: text(start, i)))
            } else if c.properties.isAlphabetic || c == "_" {
                while i < s.count, s[i].properties.isAlphabetic || s[i] == "_" || ("0"..."9").contains(s[i]) || s[i] == "$" { i += 1 }
                tokens.append(Token(kind: .word, text: text(start, i)))
            } else if ("0"..."9").contains(c) || (c == "." && i + 1 < s.count && ("0"..."9").contains(s[i + 1])) {
                while i < s.count, ("0"..."9").contains(s[i]) || s[i] == "." || s[i] == "e" || s[i] == "E"
                    || ((s[i] == "+" || s[i] == "-") && (s[i - 1] == "e" || s[i - 1] == "E")) { i += 1 }
                tokens.append(Token(kind: .number, text: text(start, i)))
            } else {
                // Operators: PostgreSQL's multi-character ones that matter here.
                for op in ["::", "!~*", "!~", "~*", "<>", "!=", "<=", ">=", "||"] where text(i, min(s.count, i + op.unicodeScalars.count)) == op {
                    i += op.unicodeScalars.count
                    break
                }
                if i == start { i += 1 }
                tokens.append(Token(kind: .symbol, text: text(start, i)))
            }
        }
        return tokens
    }

    static func render(_ tokens: [Token]) -> String { tokens.map(\.text).joined() }

    /// Splits a simple-query string into statements at semicolons outside strings and comments.
    static func statements(_ sql: String) -> [String] {
        statementTokens(sql).map(render)
    }

    /// The statements' tokens (the simple-query path classifies them without tokenizing again).
    static func statementTokens(_ sql: String) -> [[Token]] {
        var statements: [[Token]] = []
        var current: [Token] = []
        for token in tokenize(sql) {
            if token.kind == .symbol, token.text == ";" {
                statements.append(current)
                current = []
            } else {
                current.append(token)
            }
        }
        statements.append(current)
        return statements.filter { !$0.allSatisfy { $0.kind == .space } }
    }

    /// The index of the token that starts the primary expression ending at `end` (a literal, a
    /// name chain such as `a.b`, or a parenthesised group with the function name before it).
    static func primaryStart(_ tokens: [Token], end: Int) -> Int {
        var index = end
        while index > 0, tokens[index].isSpace { index -= 1 }
        if tokens[index].text == ")" {
            var depth = 0
            while index >= 0 {
                if tokens[index].text == ")" { depth += 1 } else if tokens[index].text == "(" {
                    depth -= 1
                    if depth == 0 { break }
                }
                index -= 1
            }
            var before = index - 1
            while before >= 0, tokens[before].isSpace { before -= 1 }
            if before >= 0, tokens[before].kind == .word || tokens[before].kind == .quotedIdentifier,
               !["AND", "OR", "NOT", "IN", "SELECT", "WHERE", "ON", "WHEN", "THEN", "ELSE", "BY", "AS", "IS", "ANY", "ALL", "EXISTS"].contains(tokens[before].upper) {
                index = before
            }
        }
        // Name chains: a.b.c
        while index >= 2, tokens[index - 1].text == ".", tokens[index - 2].kind == .word || tokens[index - 2].kind == .quotedIdentifier {
            index -= 2
        }
        return max(index, 0)
    }

    /// `x::type` → `CAST(x AS type)` (SQLite's names) or a catalog lookup for reg* types (date
    /// and timestamp casts keep the operand: SQLite's dates are ISO text already); `ILIKE` →
    /// `LIKE` (SQLite's LIKE ignores ASCII case), `LIMIT ALL` → no limit. `now()` is not
    /// translated: the sandbox refuses the current time (answers depend on the data only).
    static func translate(_ tokens: [Token], catalog: Bool = false) -> [Token] {
        var out: [Token] = []
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            if token.kind == .symbol, token.text == "::", !out.isEmpty {
                // The target type: words, dots, brackets and parenthesised sizes.
                var next = index + 1
                while next < tokens.count, tokens[next].isSpace { next += 1 }
                var typeWords: [String] = []
                while next < tokens.count, tokens[next].kind == .word || tokens[next].kind == .quotedIdentifier {
                    typeWords.append(tokens[next].text.lowercased().trimmingCharacters(in: "\""))
                    next += 1
                    // A schema-qualified name (pg_catalog.regtype).
                    if next + 1 < tokens.count, tokens[next].text == ".", tokens[next + 1].kind == .word || tokens[next + 1].kind == .quotedIdentifier {
                        next += 1
                        continue
                    }
                    // "double precision", "character varying", "timestamp without time zone"
                    var look = next
                    while look < tokens.count, tokens[look].isSpace { look += 1 }
                    if look < tokens.count, ["PRECISION", "VARYING", "WITHOUT", "WITH", "TIME", "ZONE"].contains(tokens[look].upper) { next = look } else { break }
                }
                var look = next
                while look < tokens.count, tokens[look].isSpace { look += 1 }
                if look < tokens.count, tokens[look].text == "(" {
                    while look < tokens.count, tokens[look].text != ")" { look += 1 }
                    next = look + 1
                }
                if next < tokens.count, tokens[next].text == "[" { next = min(tokens.count, next + 2) }
                let type = typeWords.last ?? ""
                let start = primaryStart(out, end: out.count - 1)
                let operand = Array(out[start...])
                out.removeSubrange(start...)
                let operandText = render(operand)
                if catalog, operand.count == 1, operand[0].text.hasPrefix("sg_reg"), ["text", "varchar", "name"].contains(type),
                   let open = operand[0].text.firstIndex(of: "(") {
                    // reg*::text is the object's name.
                    let call = operand[0].text
                    out.append(Token(kind: .word, text: call[..<open] + "_name" + call[open...]))
                } else if let function = catalog ? Self.catalogCast[type] : nil {
                    out.append(Token(kind: .word, text: "\(function)(\(operandText))"))
                } else if let sqlite = Self.castTypes[type] {
                    out.append(Token(kind: .word, text: "CAST(\(operandText) AS \(sqlite))"))
                } else {
                    // No SQLite equivalent that would not change the value: keep the operand.
                    out.append(contentsOf: operand)
                }
                index = next
                continue
            }
            if token.kind == .word {
                switch token.upper {
                case "ILIKE":
                    out.append(Token(kind: .word, text: "LIKE"))
                    index += 1
                    continue
                case "ALL" where out.last(where: { !$0.isSpace })?.upper == "LIMIT":
                    // LIMIT ALL: no limit.
                    out.append(Token(kind: .number, text: "-1"))
                    index += 1
                    continue
                default: break
                }
            }
            out.append(token)
            index += 1
        }
        return out
    }

    /// PostgreSQL type names → SQLite CAST types that give the same value.
    static let castTypes: [String: String] = [
        "int": "INTEGER", "int2": "INTEGER", "int4": "INTEGER", "int8": "INTEGER", "integer": "INTEGER", "bigint": "INTEGER",
        "smallint": "INTEGER", "oid": "INTEGER", "numeric": "NUMERIC", "decimal": "NUMERIC", "float": "REAL", "float4": "REAL",
        "float8": "REAL", "real": "REAL", "precision": "REAL", "text": "TEXT", "varchar": "TEXT", "varying": "TEXT",
        "char": "TEXT", "character": "TEXT", "name": "TEXT", "bpchar": "TEXT", "bytea": "BLOB", "boolean": "INTEGER", "bool": "INTEGER",
    ]

    /// Catalog-only casts: names looked up in the emulated catalog.
    static let catalogCast: [String: String] = ["regclass": "sg_regclass", "regtype": "sg_regtype", "regproc": "sg_regproc", "regnamespace": "sg_regnamespace"]
}

extension String {
    func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.first == character { text = text.dropFirst() }
        while text.last == character { text = text.dropLast() }
        return String(text)
    }
}

extension PGDialect {
    /// Catalog queries: on top of `translate`, PostgreSQL's regex operators (`~`, `!~`, `~*`,
    /// `OPERATOR(pg_catalog.~)`), `COLLATE pg_catalog.default`, `= ANY(ARRAY[…])`, schema-qualified
    /// function names, `reg*` casts and the session's name words.
    /// `~`, `!~`, `~*`, `!~*` as SQLite's REGEXP and MATCH operators (PGCatalog defines both).
    static func regexOperator(_ token: Token) -> Token? {
        guard token.kind == .symbol else { return nil }
        switch token.text {
        case "~": return Token(kind: .word, text: " REGEXP ")
        case "!~": return Token(kind: .word, text: " NOT REGEXP ")
        case "~*": return Token(kind: .word, text: " MATCH ")
        case "!~*": return Token(kind: .word, text: " NOT MATCH ")
        default: return nil
        }
    }

    /// PostgreSQL functions with a SQLite aggregate of the same meaning.
    static let catalogFunctionNames = ["json_build_object": "json_object", "jsonb_build_object": "json_object", "string_agg": "group_concat", "array_agg": "group_concat", "bool_or": "max", "bool_and": "min"]

    /// A catalog query in SQLite's spelling: each rewrite rule of `CatalogRewriter` in turn at
    /// every token, then `translate` with the catalog's casts.
    static func catalogSQL(_ sql: String, consumer: String, dataset: String) -> String {
        var rewriter = CatalogRewriter(tokens: tokenize(sql), consumer: consumer, dataset: dataset)
        return render(translate(rewriter.rewrite(), catalog: true))
    }

    /// The index of the token that closes the bracket opened at `open` — `(` with `)`, `[` with
    /// `]` — counting nested pairs of that kind. Strings, quoted identifiers and comments are
    /// single tokens, so a bracket inside them never counts. nil when `open` is not an opening
    /// bracket or the tokens end before it is closed (unbalanced input: the caller decides).
    static func matchingClose(_ tokens: [Token], from open: Int) -> Int? {
        guard open >= 0, open < tokens.count, tokens[open].kind == .symbol else { return nil }
        let closing: String
        switch tokens[open].text {
        case "(": closing = ")"
        case "[": closing = "]"
        default: return nil
        }
        let opening = tokens[open].text
        var depth = 0
        for index in open..<tokens.count where tokens[index].kind == .symbol {
            if tokens[index].text == opening {
                depth += 1
            } else if tokens[index].text == closing {
                depth -= 1
                if depth == 0 { return index }
            }
        }
        return nil
    }
}

/// The rewrite rules of catalog queries, one function each, applied in this order at every
/// token; a rule that matches consumes its tokens and appends its spelling to `out`. Brackets
/// are found by `PGDialect.matchingClose`; an unbalanced one consumes the rest of the query (the
/// catalog then refuses what is left, never crashes on it).
struct CatalogRewriter {
    typealias Token = PGDialect.Token

    let tokens: [Token]
    let consumer: String
    let dataset: String
    private(set) var out: [Token] = []
    private var index = 0

    init(tokens: [Token], consumer: String, dataset: String) {
        self.tokens = tokens
        self.consumer = consumer
        self.dataset = dataset
    }

    mutating func rewrite() -> [Token] {
        while index < tokens.count {
            if operatorCall() || arraySubquery() || arraySubscript() || setReturningFunction() || renamedFunction() || collate()
                || qualifiedFunction() || sessionWord() || anyArray() || regexOperator() { continue }
            out.append(tokens[index])
            index += 1
        }
        return out
    }

    /// The first token at or after `from` that is not space or a comment.
    private func nextIndex(_ from: Int) -> Int {
        var next = from
        while next < tokens.count, tokens[next].isSpace { next += 1 }
        return next
    }

    /// Whether a `(` follows the current token (after space).
    private var callFollows: Bool {
        let next = nextIndex(index + 1)
        return next < tokens.count && tokens[next].text == "("
    }

    private var token: Token { tokens[index] }
    private var previous: Token? { out.last(where: { !$0.isSpace }) }

    /// The close of the bracket at `open`, or the end of the query when it is unbalanced.
    private func close(_ open: Int) -> Int { PGDialect.matchingClose(tokens, from: open) ?? tokens.count }

    /// `OPERATOR(pg_catalog.~)` → `~` (as REGEXP).
    private mutating func operatorCall() -> Bool {
        guard token.upper == "OPERATOR", callFollows else { return false }
        let open = nextIndex(index + 1), end = close(open)
        let inner = tokens[(open + 1)..<end].filter { !$0.isSpace }
        if let op = inner.last { out.append(PGDialect.regexOperator(op) ?? op) }
        index = end + 1
        return true
    }

    /// `ARRAY(SELECT …)` → `(SELECT …)`: the first element (the emulated catalog's arrays are
    /// empty or single).
    private mutating func arraySubquery() -> Bool {
        guard token.upper == "ARRAY", callFollows else { return false }
        index += 1
        return true
    }

    /// Array subscripts `x[i]` and slices are dropped: the emulated catalog has no arrays.
    private mutating func arraySubscript() -> Bool {
        guard token.text == "[", let previous, previous.kind == .word || previous.kind == .quotedIdentifier || previous.text == ")",
              previous.upper != "ARRAY" else { return false }
        index = close(index) + 1
        return true
    }

    /// Set-returning functions in FROM: one row (the catalog tables they index are empty).
    private mutating func setReturningFunction() -> Bool {
        guard token.kind == .word, ["generate_series", "unnest", "generate_subscripts"].contains(token.text.lowercased()), callFollows,
              previous.map({ $0.upper == "FROM" || $0.text == "," || $0.upper == "JOIN" }) == true else { return false }
        let end = close(nextIndex(index + 1))
        out.append(Token(kind: .word, text: "(SELECT NULL AS value)"))
        index = end + 1
        return true
    }

    /// PostgreSQL functions with a SQLite aggregate of the same meaning.
    private mutating func renamedFunction() -> Bool {
        guard token.kind == .word, let renamed = PGDialect.catalogFunctionNames[token.text.lowercased()], callFollows else { return false }
        out.append(Token(kind: .word, text: renamed))
        index += 1
        return true
    }

    /// `COLLATE pg_catalog.default` / `COLLATE "C"` are dropped.
    private mutating func collate() -> Bool {
        guard token.upper == "COLLATE" else { return false }
        var next = nextIndex(index + 1)
        while next < tokens.count, tokens[next].kind == .word || tokens[next].kind == .quotedIdentifier || tokens[next].text == "." { next += 1 }
        index = next
        return true
    }

    /// `pg_catalog.fn(` → `fn(`.
    private mutating func qualifiedFunction() -> Bool {
        guard token.kind == .word, token.text.lowercased() == "pg_catalog", index + 2 < tokens.count, tokens[index + 1].text == ".",
              nextIndex(index + 3) < tokens.count, tokens[nextIndex(index + 3)].text == "(" else { return false }
        index += 2
        return true
    }

    /// `current_user` and friends as the session's values (`AS user` stays a column name).
    private mutating func sessionWord() -> Bool {
        guard token.kind == .word, out.last?.text != ".", !callFollows else { return false }
        let value: String
        switch token.text.lowercased() {
        case "current_user", "session_user", "user", "current_role":
            guard token.text.lowercased() != "user" || previous?.upper != "AS" else { return false }
            value = Renderer.string(consumer)
        case "current_catalog": value = Renderer.string(dataset)
        case "current_schema": value = "'public'"
        default: return false
        }
        out.append(Token(kind: .string, text: value))
        index += 1
        return true
    }

    /// `= ANY (ARRAY[…])` / `= ANY ('{…}')` → `IN (…)`; `<> ALL (…)` → `NOT IN (…)`.
    private mutating func anyArray() -> Bool {
        guard token.kind == .word, token.upper == "ANY" || token.upper == "ALL",
              let comparison = out.lastIndex(where: { !$0.isSpace }), ["=", "<>", "!="].contains(out[comparison].text), callFollows else { return false }
        let negate = out[comparison].text != "="
        out.removeSubrange(comparison...)
        out.append(Token(kind: .space, text: " "))
        out.append(Token(kind: .word, text: negate ? "NOT IN" : "IN"))
        let open = nextIndex(index + 1), end = close(open)
        out.append(Token(kind: .symbol, text: "("))
        out.append(contentsOf: PGDialect.translate(Self.arrayElements(tokens[(open + 1)..<end]), catalog: true))
        out.append(Token(kind: .symbol, text: ")"))
        index = end + 1
        return true
    }

    /// The elements of `ARRAY[…]` or of a `'{r,p}'` literal, as a list of values.
    private static func arrayElements(_ tokens: ArraySlice<Token>) -> [Token] {
        var inner: [Token] = []
        for piece in tokens {
            if piece.upper == "ARRAY" || piece.text == "[" || piece.text == "]" { continue }
            if piece.kind == .string, piece.text.hasPrefix("'{"), piece.text.hasSuffix("}'") {
                // '{r,p}' array literal → 'r','p'
                let body = piece.text.dropFirst(2).dropLast(2)
                inner.append(Token(kind: .string, text: body.split(separator: ",").map { Renderer.string(String($0).trimmingCharacters(in: "\"")) }.joined(separator: ",")))
                continue
            }
            inner.append(piece)
        }
        return inner
    }

    /// `~`, `!~`, `~*`, `!~*` as REGEXP and MATCH.
    private mutating func regexOperator() -> Bool {
        guard let op = PGDialect.regexOperator(token) else { return false }
        out.append(op)
        index += 1
        return true
    }
}
