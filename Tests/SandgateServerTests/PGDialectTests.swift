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

    @Test("catalog routing: only queries that name the catalog or session functions")
    func routing() {
        #expect(PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT * FROM pg_catalog.pg_class")))
        #expect(PGCatalog.isCatalogQuery(PGDialect.tokenize("select version()")))
        #expect(!PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT 'pg_class', version FROM customers")))
        #expect(!PGCatalog.isCatalogQuery(PGDialect.tokenize("SELECT city FROM customers -- pg_catalog")))
    }
}
