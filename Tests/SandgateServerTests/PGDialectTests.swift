@testable import SandgateServer
import Testing

/// PostgreSQL spellings turned into SQLite's; strings and comments are never rewritten.
@Suite struct PGDialectTests {
    static func analyst(_ sql: String) -> String { PGDialect.render(PGDialect.translate(PGDialect.tokenize(sql))) }

    @Test("analyst spellings", arguments: [
        ("SELECT amount::int FROM t", "SELECT CAST(amount AS INTEGER) FROM t"),
        ("SELECT (a + b)::float8, '1'::bigint", "SELECT CAST((a + b) AS REAL), CAST('1' AS INTEGER)"),
        ("SELECT x::double precision", "SELECT CAST(x AS REAL)"),
        ("SELECT t.c::text FROM t", "SELECT CAST(t.c AS TEXT) FROM t"),
        ("SELECT lower(city)::varchar(20) FROM t", "SELECT CAST(lower(city) AS TEXT) FROM t"),
        ("SELECT d::date FROM t", "SELECT d FROM t"),
        ("SELECT * FROM t WHERE city ILIKE 'sh%'", "SELECT * FROM t WHERE city LIKE 'sh%'"),
        ("SELECT * FROM t WHERE city NOT ILIKE 'sh%'", "SELECT * FROM t WHERE city NOT LIKE 'sh%'"),
        ("SELECT * FROM t LIMIT ALL", "SELECT * FROM t LIMIT -1"),
        ("SELECT now()", "SELECT now()"),
        ("SELECT E'\\x41\\101\\u00e9\\U0001F600'", "SELECT 'AA\u{e9}\u{1F600}'"),
        ("SELECT E'it\\'s\\n'", "SELECT 'it''s\n'"),
        ("SELECT 'a::b ILIKE now()' -- x::int", "SELECT 'a::b ILIKE now()' -- x::int"),
        ("SELECT \"Odd\"\"Name\"::text", "SELECT CAST(\"Odd\"\"Name\" AS TEXT)"),
        ("SELECT $1::int8", "SELECT CAST($1 AS INTEGER)"),
    ])
    func analystSpellings(input: String, output: String) {
        #expect(Self.analyst(input) == output)
    }

    @Test("simple-query strings split at semicolons outside strings, identifiers and comments")
    func statements() {
        #expect(PGDialect.statements("SELECT 1; SELECT ';'; /* ; */ SELECT \";\" ;") == ["SELECT 1", " SELECT ';'", " /* ; */ SELECT \";\" "])
        #expect(PGDialect.statements("  ;  ; ").isEmpty)
        #expect(PGDialect.statements("SELECT 1 -- ; no split") == ["SELECT 1 -- ; no split"])
    }

    @Test("catalog spellings: regex operators, OPERATOR(), COLLATE, ANY(ARRAY[]), reg* casts, session words")
    func catalog() {
        let sql = PGDialect.catalogSQL(
            "SELECT c.oid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND c.relkind = ANY (ARRAY['r','p']) AND n.nspname !~ '^pg_' AND pg_catalog.pg_table_is_visible(c.oid) AND owner = current_user",
            consumer: "kate", dataset: "retail")
        #expect(sql == "SELECT sg_regclass_name(c.oid) FROM pg_catalog.pg_class c WHERE c.relname  REGEXP  '^(t)$'  AND c.relkind  IN('r','p') AND n.nspname  NOT REGEXP  '^pg_' AND pg_table_is_visible(c.oid) AND owner = 'kate'")
    }

    /// The text from the first bracket to its match, nil when there is none.
    static func bracketed(_ sql: String) -> String? {
        let tokens = PGDialect.tokenize(sql)
        guard let open = tokens.firstIndex(where: { $0.text == "(" || $0.text == "[" }),
              let close = PGDialect.matchingClose(tokens, from: open) else { return nil }
        return PGDialect.render(Array(tokens[open...close]))
    }

    @Test("the bracket matcher: nested pairs, brackets inside strings, identifiers and comments do not count", arguments: [
        ("f(a, (b), c) + 1", "(a, (b), c)"),
        ("x[1][2]", "[1]"),
        ("a[b[1]] + 2", "[b[1]]"),
        ("f(')', \"a)\", /* ) */ b) tail", "(')', \"a)\", /* ) */ b)"),
        ("f(a, -- )\n b) c", "(a, -- )\n b)"),
        ("f(E'\\)', x)", "(')', x)"),
    ])
    func matcher(sql: String, expected: String) {
        #expect(Self.bracketed(sql) == expected)
    }

    @Test("the bracket matcher on unbalanced input: no match, never a crash", arguments: ["f((a)", "f(a]", "x[1", "f(')'", "("])
    func matcherUnbalanced(sql: String) {
        #expect(Self.bracketed(sql) == nil)
    }

    @Test("the bracket matcher from a token that is not an opening bracket, or outside the tokens: no match", arguments: [-1, 1, 3, 99])
    func matcherNotABracket(index: Int) {
        #expect(PGDialect.matchingClose(PGDialect.tokenize("a ) b"), from: index) == nil)
    }

    @Test("catalog rewrites with an unbalanced bracket consume the rest of the query", arguments: [
        ("SELECT * FROM generate_series(1, (2", "SELECT * FROM (SELECT NULL AS value)"),
        ("SELECT x[1 FROM pg_class", "SELECT x"),
        ("SELECT 1 WHERE a = ANY (ARRAY['r', 'p'", "SELECT 1 WHERE a  IN('r', 'p')"),
        ("SELECT a OPERATOR(pg_catalog.~ 'x'", "SELECT a 'x'"),
    ])
    func catalogUnbalanced(sql: String, expected: String) {
        #expect(PGDialect.catalogSQL(sql, consumer: "kate", dataset: "retail") == expected)
    }

    @Test("catalog rewrites, one rule each", arguments: [
        ("SELECT string_agg(relname, ',') FROM pg_class", "SELECT group_concat(relname, ',') FROM pg_class"),
        ("SELECT * FROM pg_class, unnest(x) AS u", "SELECT * FROM pg_class, (SELECT NULL AS value) AS u"),
        ("SELECT ARRAY(SELECT 1)", "SELECT (SELECT 1)"),
        ("SELECT relname COLLATE \"C\" FROM pg_class", "SELECT relname  FROM pg_class"),
        ("SELECT current_catalog, current_schema, 1 AS user", "SELECT 'retail', 'public', 1 AS user"),
        ("SELECT 1 WHERE a <> ALL ('{x,\"y\"}')", "SELECT 1 WHERE a  NOT IN('x','y')"),
        ("SELECT (c.conkey)[1] FROM pg_constraint c", "SELECT (c.conkey) FROM pg_constraint c"),
    ])
    func catalogRules(sql: String, expected: String) {
        #expect(PGDialect.catalogSQL(sql, consumer: "kate", dataset: "retail") == expected)
    }

    @Test("catalog routing: only queries that name the catalog or session functions")
    func routing() {
        #expect(PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT * FROM pg_catalog.pg_class")))
        #expect(PGCatalog.isCatalogQuery(PGDialect.tokenize("select version()")))
        #expect(!PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT 'pg_class', version FROM customers")))
        #expect(!PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT city FROM customers -- pg_catalog")))
    }
}
