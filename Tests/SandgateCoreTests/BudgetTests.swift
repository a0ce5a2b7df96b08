import Foundation
@testable import SandgateCore
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Invariant 6: every query is bounded, and the gateway keeps serving afterwards.
@Suite struct BudgetTests {
    @Test("resource bombs stop with a budget error and the gateway keeps serving", arguments: [
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
        "SELECT count(*) FROM customers a, customers b, customers c",
        "SELECT a.city FROM customers a, customers b, customers c ORDER BY random()",
    ])
    func bombsAreStopped(sql: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query(sql)
        let code = try #require(response.error?.code)
        #expect(code == .budgetExceeded || code == .timeout)
        #expect(response.usage.vmSteps > 0)
        #expect(gateway.query("SELECT count(*) FROM customers").isOK)
    }

    @Test("very long operator chains and compounds are refused cleanly, never overflowing a stack", arguments: [
        "SELECT " + String(repeating: "1 + ", count: 60_000) + "1",
        "SELECT 1 WHERE " + String(repeating: "1 AND ", count: 60_000) + "1",
        "SELECT 1 WHERE " + String(repeating: "1 = ", count: 60_000) + "1",
        String(repeating: "SELECT 1 UNION ALL ", count: 20_000) + "SELECT 1",
        "SELECT 1 FROM " + String(repeating: "customers, ", count: 20_000) + "customers",
        "SELECT 'a' " + String(repeating: "COLLATE nocase ", count: 30_000),
    ])
    func longChains(sql: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query(sql)
        #expect(response.error?.code == .requestTooLarge)
        #expect(gateway.query("SELECT count(*) FROM customers").isOK)
    }

    @Test("an empty text value, first or later, comes back as an empty string")
    func emptyText() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT '', 'x', ''").result?.rows == [[.text(""), .text("x"), .text("")]])
        #expect(gateway.query("SELECT x'' AS b").result?.rows == [[.blob([])]])
    }

    @Test("the step budget stops a query before the timeout")
    func stepBudget() throws {
        let policy = TestWorkspace.retailPolicy.replacing("max_vm_steps: 50000000", with: "max_vm_steps: 100000")
        let workspace = try TestWorkspace(policy: policy)
        let response = try workspace.gateway().query("SELECT count(*) FROM customers a, customers b")
        #expect(response.error?.code == .budgetExceeded)
        #expect(response.usage.vmSteps >= 100_000)
    }

    @Test("the time budget stops a query")
    func timeBudget() throws {
        let policy = TestWorkspace.retailPolicy.replacing("timeout_ms: 2000", with: "timeout_ms: 50")
            .replacing("max_vm_steps: 50000000", with: "max_vm_steps: 1000000000000")
        let workspace = try TestWorkspace(policy: policy)
        let started = Date()
        let response = try workspace.gateway().query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c")
        #expect(response.error?.code == .timeout)
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test("max_rows truncates and says so")
    func maxRowsTruncates() throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT city FROM customers")
        #expect(response.result?.rowCount == 200)
        #expect(response.truncated)
        #expect(response.truncatedBy == "max_rows")
        let small = try workspace.gateway().query("SELECT city FROM customers LIMIT 3")
        #expect(small.result?.rowCount == 3)
        #expect(!small.truncated)
    }

    @Test("max_result_bytes refuses an oversized result")
    func resultBytes() throws {
        let policy = TestWorkspace.retailPolicy.replacing("max_result_bytes: 8388608", with: "max_result_bytes: 2048")
        let workspace = try TestWorkspace(policy: policy)
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT email, id_card, phone FROM customers").error?.code == .resultTooLarge)
        #expect(gateway.query("SELECT city FROM customers LIMIT 2").isOK)
    }

    @Test("a grant lowers the dataset's limits but never raises them")
    func grantsOnlyLower() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ max_rows: 5000 }"))
        let response = try workspace.gateway().query("SELECT city FROM customers")
        #expect(response.result?.rowCount == min(1000, TestData.shared.activeCount))
    }
}

/// Parameters are bound, never pasted into SQL.
@Suite struct ParameterTests {
    @Test func positionalAndNamed() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let byCity = gateway.query("SELECT count(*) FROM customers WHERE city = ?", parameters: .positional([.text("Shanghai")]))
        #expect(byCity.isOK)
        let named = gateway.query("SELECT count(*) FROM customers WHERE city = :city", parameters: .named(["city": .text("Shanghai")]))
        #expect(named.result?.rows == byCity.result?.rows)
        let injection = gateway.query("SELECT count(*) FROM customers WHERE city = ?", parameters: .positional([.text("x' OR '1'='1")]))
        #expect(injection.result?.rows == [[.integer(0)]])
    }

    @Test("missing, extra or mismatched parameters are bad requests", arguments: [
        ("SELECT ?", QueryParameters.none),
        ("SELECT ?", .positional([])),
        ("SELECT ?", .positional([.integer(1), .integer(2)])),
        ("SELECT :a", .positional([.integer(1)])),
        ("SELECT :a", .named(["b": .integer(1)])),
        ("SELECT :a", .named(["a": .integer(1), "b": .integer(2)])),
        ("SELECT ?", .named(["a": .integer(1)])),
    ])
    func mismatches(sql: String, parameters: QueryParameters) throws {
        let workspace = try TestWorkspace()
        #expect(try workspace.gateway().query(sql, parameters: parameters).error?.code == .badRequest)
    }
}
