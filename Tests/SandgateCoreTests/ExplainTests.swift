import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateTestSupport
import Testing

@Suite struct ExplainTests {
    @Test("explain shows the SQL, the rules and a quote, and runs and charges nothing")
    func explainsWithoutRunning() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let explanation = try gateway.explain(QueryRequest(
            consumer: "analyst-a", dataset: "retail",
            sql: "SELECT c.city, count(*) AS n FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city")).get()
        #expect(explanation.sql.contains("__sg_tally(count(DISTINCT \"o\".\"__sg_unit\"), 10)"))
        #expect(explanation.sql.contains("WHERE (\"__sg_n\" >= 10)"))
        #expect(explanation.rules.contains { $0.hasPrefix("threshold: groups of orders need at least 10") })
        #expect(explanation.rules.contains("rows of customers are filtered by the policy"))
        #expect(explanation.limits.maxRows == 200)
        #expect(explanation.minimumCostMicros == 1000)
        #expect(explanation.maximumCostMicros == 1000 + 20 * 200 + 500 * 50)
        var records = 0
        try gateway.ledger.records { _ in records += 1; return true }
        #expect(records == 0)
    }

    @Test("explain names only the masks the query reads")
    func masksReadOnly() throws {
        let workspace = try TestWorkspace()
        let explanation = try workspace.gateway().explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT phone FROM customers")).get()
        #expect(explanation.rules.contains("customers.phone is masked (phone_cn)"))
        #expect(!explanation.rules.contains { $0.contains("customers.email") })
    }

    @Test("explain refuses what run refuses, with the same codes", arguments: [
        ("SELECT salary FROM customers", ErrorCode.noSuchColumn), ("SELECT * FROM orders", .aggregateRequired),
        ("PRAGMA table_info(customers)", .notASelect), ("SELECT (", .syntaxError),
    ])
    func refusals(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(gateway.explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: sql)).failureCode == code)
        #expect(gateway.explain(QueryRequest(consumer: "analyst-b", dataset: "retail", sql: "SELECT 1")).failureCode == .notGranted)
        #expect(gateway.explain(QueryRequest(consumer: "nobody", dataset: "retail", sql: "SELECT 1")).failureCode == .authFailed)
    }
}

/// Errors that say what would work: the nearest visible name, and whether a function exists.
@Suite struct SuggestionTests {
    @Test("misspellings get the nearest visible name; unknown functions are no_such_function", arguments: [
        ("SELECT * FROM custmers", ErrorCode.noSuchTable, "did you mean customers?"),
        ("SELECT citty FROM customers", .noSuchColumn, "did you mean city?"),
        ("SELECT c.emial FROM customers c", .noSuchColumn, "did you mean email?"),
        ("SELECT uper(city) FROM customers", .noSuchFunction, "did you mean upper?"),
        ("SELECT channel, median(amount) FROM orders GROUP BY channel", .noSuchFunction, "SQLite has no median()"),
        ("SELECT count(*) FROM orders WHERE lenght(channel) > 3", .noSuchFunction, "did you mean length?"),
        ("SELECT load_extension('x')", .functionNotAllowed, "describe --functions"),
        ("SELECT chanel, count(*) FROM orders GROUP BY chanel", .noSuchColumn, "did you mean channel?"),
        ("SELECT cust.* FROM customers c", .noSuchTable, "tables in this FROM: c"),
        ("SELECT * FROM products", .noSuchTable, "tables here: customers, orders"),
        ("SELECT city FROM customers WHERE city IN main.customers", .noSuchTable, "tables here: customers, orders"),
    ])
    func suggestion(sql: String, code: ErrorCode, hint: String) throws {
        let workspace = try TestWorkspace()
        let error = try #require(try workspace.gateway().query(sql).error)
        #expect(error.code == code, "\(sql) → \(error)")
        #expect(error.hint.contains(hint), "\(sql) → \(error.hint)")
    }

    @Test("a hidden column gets the same answer as an unknown one (suggestions come from visible names)")
    func hiddenNamesAreNotSuggested() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        // `status` is visible, `salary` does not exist; no hidden name is ever offered.
        let error = try #require(gateway.query("SELECT customer_idd FROM customers").error)
        #expect(error.hint.contains("did you mean customer_id?"))
        #expect(!error.hint.contains("order_id"))
    }
}

/// One list of functions: the analyst guide carries exactly what `describe --functions` prints.
@Suite struct FunctionCatalogueTests {
    @Test("the analyst guide's list of functions is the allowlist's")
    func guideMatchesAllowlist() throws {
        let guide = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/analyst-guide.md")
        let text = try String(contentsOf: guide, encoding: .utf8)
        let start = try #require(text.range(of: "<!-- functions:"))
        let blockStart = try #require(text[start.upperBound...].firstIndex(of: "\n"))
        let end = try #require(text.range(of: "<!-- end of functions -->"))
        #expect(String(text[text.index(after: blockStart)..<end.lowerBound]) == FunctionCatalogue.text,
                "regenerate the block with `sandgate describe --functions`")
        #expect(FunctionCatalogue.callable.contains("strftime") && !FunctionCatalogue.callable.contains("load_extension"))
    }

    @Test("a refused function says why; an unknown one says it does not exist", arguments: [
        ("SELECT load_extension('x')", ErrorCode.functionNotAllowed, "reaches files or memory"),
        ("SELECT sqlite_version()", .functionNotAllowed, "describes the server"),
        ("SELECT median(1)", .noSuchFunction, "SQLite has no median()"),
    ])
    func refusedFunctions(sql: String, code: ErrorCode, words: String) throws {
        let workspace = try TestWorkspace()
        let error = try #require(try workspace.gateway().query(sql).error)
        #expect(error.code == code)
        #expect((error.message + " " + error.hint).contains(words), "\(error.message) — \(error.hint)")
        #expect(error.hint.contains("sandgate describe --functions"))
    }
}
