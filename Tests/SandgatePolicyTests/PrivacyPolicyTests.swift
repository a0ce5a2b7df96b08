import Foundation
import SandgatePolicy
import Testing

/// The `privacy:` block and measure `bounds` (issue 10): valid settings load, impossible ones are
/// errors at their `file:line:column`.
@Suite struct PrivacyPolicyTests {
    static func policy(privacy: String, amount: String = "{ role: measure, aggregates: [count, sum, avg], bounds: [0, 5000] }", extra: String = "") -> String {
        """
        source: data.sqlite
        tables:
          orders:
            access: aggregate
            privacy_unit: customer_id
            min_group_size: 10
        \(extra)    privacy:
        \(privacy)
            columns:
              customer_id: { role: join_key }
              amount:      \(amount)
              channel:     { role: dimension }
        """
    }

    static let valid = """
              epsilon_per_query: 0.5
              delta: 1.0e-7
              budget: { epsilon: 10, period: month }
              max_groups_per_unit: 4
              max_rows_per_unit: 5
        """

    /// Problems as `line:column: message` (the file name varies).
    func problems(_ text: String) throws -> [String] {
        let directory = try PolicyDirectory(["retail.yaml": text])
        return directory.load().diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
    }

    @Test("a valid privacy block loads with ε in micro-ε, the period and the bounds")
    func validLoads() throws {
        let directory = try PolicyDirectory(["retail.yaml": Self.policy(privacy: Self.valid)])
        let result = directory.load()
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let table = try #require(result.datasets["retail"]?.table(named: "orders"))
        let privacy = try #require(table.privacy)
        #expect(privacy.epsilonPerQueryMicros == 500_000)
        #expect(privacy.delta == 1e-7)
        #expect(privacy.budgetMicros == 10_000_000 && privacy.period == .month)
        #expect(privacy.maxGroupsPerUnit == 4 && privacy.maxRowsPerUnit == 5)
        #expect(table.column(named: "amount")?.bounds == MeasureBounds(lower: 0, upper: 5000, decimals: 0))
    }

    @Test("impossible settings are errors at their line and column", arguments: [
        ("epsilon_per_query: 0.5", "epsilon_per_query: 0", "8:26: epsilon_per_query must be greater than 0, not 0.0 (ε ≤ 0 would promise a protection no noise can give)"),
        ("epsilon_per_query: 0.5", "epsilon_per_query: -1", "8:26: epsilon_per_query must be greater than 0, not -1.0 (ε ≤ 0 would promise a protection no noise can give)"),
        ("delta: 1.0e-7", "delta: 0.5", "9:14: delta must be above 0 and below 0.001, not 0.5 (δ is the chance that a key held by one person is released)"),
        ("delta: 1.0e-7", "delta: 0", "9:14: delta must be above 0 and below 0.001, not 0.0 (δ is the chance that a key held by one person is released)"),
        ("budget: { epsilon: 10, period: month }", "budget: { epsilon: 0.1, period: month }", "10:26: budget.epsilon is smaller than epsilon_per_query: not even one query could run"),
        ("period: month", "period: week", "10:38: budget.period must be one of day, month, total, not 'week'"),
        ("max_groups_per_unit: 4", "max_groups_per_unit: 0", "11:28: max_groups_per_unit must be between 1 and 1000, not 0"),
        ("max_rows_per_unit: 5", "max_rows_per_unit: '5'", "12:26: max_rows_per_unit must be an integer"),
    ])
    func impossibleSettings(original: String, replacement: String, expected: String) throws {
        let text = Self.policy(privacy: Self.valid.replacingOccurrences(of: original, with: replacement))
        #expect(try problems(text) == [expected])
    }

    @Test("a missing key, sum without bounds, min/max and remainder on a private table are errors")
    func structuralErrors() throws {
        #expect(try problems(Self.policy(privacy: Self.valid.replacingOccurrences(of: "      delta: 1.0e-7\n", with: ""))) == ["7:5: privacy needs 'delta'"])
        #expect(try problems(Self.policy(privacy: Self.valid, amount: "{ role: measure, aggregates: [count, sum, avg] }")) == [
            "15:7: measure 'orders.amount' needs bounds: [lower, upper] for sum, avg on a table with privacy: (the noise is scaled to them)",
        ])
        #expect(try problems(Self.policy(privacy: Self.valid, amount: "{ role: measure, aggregates: [count, max], bounds: [0, 5] }")) == [
            "15:7: max is not allowed on measure 'orders.amount' of a table with privacy: (it releases one individual's value)",
        ])
        #expect(try problems(Self.policy(privacy: Self.valid, extra: "    small_groups: remainder\n")) == [
            "7:19: small_groups: remainder is not available on a table with privacy: (private group selection drops small groups)",
        ])
        #expect(try problems(Self.policy(privacy: Self.valid, amount: "{ role: measure, bounds: [10, 0] }")) == [
            "15:46: the lower bound 10.0 is above the upper bound 0.0",
            "15:7: measure 'orders.amount' needs bounds: [lower, upper] for sum, avg, total on a table with privacy: (the noise is scaled to them)",
        ])
        #expect(try problems(Self.policy(privacy: Self.valid, amount: "{ role: measure, bounds: [0, 1.0e14] }")) == [
            "15:7: bounds of 'orders.amount' × max_groups_per_unit × max_rows_per_unit are too large for exact noise (at most 10^12 grid steps); narrow the bounds or use fewer decimal places",
        ])
        #expect(try problems(Self.policy(privacy: Self.valid, amount: "{ role: dimension, bounds: [0, 1] }")) == [
            "15:39: 'bounds' applies only to columns with role: measure",
        ])
    }

    @Test("a grant's epsilon_budget is read in micro-ε; a negative one is an error")
    func grantBudget() throws {
        let consumers = """
            consumers:
              a:
                key_sha256: \(String(repeating: "a", count: 64))
                grants:
                  retail: { epsilon_budget: 2.5 }
              b:
                key_sha256: \(String(repeating: "b", count: 64))
                grants:
                  retail: { epsilon_budget: -1 }
            """
        let directory = try PolicyDirectory(["retail.yaml": Self.policy(privacy: Self.valid), "consumers.yaml": consumers])
        let result = directory.load()
        #expect(result.consumers.consumers["a"]?.grants["retail"]?.epsilonBudgetMicros == 2_500_000)
        #expect(result.diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" } == [
            "9:33: epsilon_budget must be greater than 0, not -1.0 (ε ≤ 0 would promise a protection no noise can give)",
        ])
    }
}

/// issue 21 item 1: a consumer may not hold a private table and exact access to the same source
/// rows through another dataset.
@Suite struct ExactBesidePrivateTests {
    static let exact = """
        source: data.sqlite
        tables:
          orders:
            access: aggregate
            privacy_unit: customer_id
            min_group_size: 10
            columns:
              customer_id: { role: join_key }
              amount:      { role: measure, aggregates: [count, sum, max] }
        """

    static func consumers(_ grants: [String]) -> String {
        "consumers:\n  a:\n    key_sha256: \(String(repeating: "ab", count: 32))\n    grants:\n"
            + grants.map { "      \($0): {}\n" }.joined()
    }

    @Test("holding both is an error at the grant naming both datasets; one of them alone loads")
    func refused() throws {
        let directory = try PolicyDirectory([
            "exact.yaml": Self.exact, "private.yaml": PrivacyPolicyTests.policy(privacy: PrivacyPolicyTests.valid),
            "consumers.yaml": Self.consumers(["private", "exact"]),
        ])
        let result = directory.load()
        let messages = result.diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
        let expected = "consumer 'a' holds private table private.orders and exact access to the same rows through exact.orders"
        #expect(messages.count == 2 && messages[0].hasPrefix("5:7: \(expected)") && messages[1].hasPrefix("6:7: \(expected)"), "\(messages)")
        // Neither grant takes effect, even merged over a previous version that had neither.
        #expect(result.consumers.consumers["a"]?.grants.isEmpty ?? true)
        for alone in ["private", "exact"] {
            let single = try PolicyDirectory([
                "exact.yaml": Self.exact, "private.yaml": PrivacyPolicyTests.policy(privacy: PrivacyPolicyTests.valid),
                "consumers.yaml": Self.consumers([alone]),
            ])
            #expect(single.load().diagnostics.isEmpty, "\(alone)")
        }
    }

    @Test("a different table or a different source is not the same rows")
    func otherRows() throws {
        let renamed = Self.exact.replacingOccurrences(of: "  orders:", with: "  payments:")
        let directory = try PolicyDirectory([
            "exact.yaml": renamed, "private.yaml": PrivacyPolicyTests.policy(privacy: PrivacyPolicyTests.valid),
            "consumers.yaml": Self.consumers(["private", "exact"]),
        ])
        #expect(directory.load().diagnostics.isEmpty)
    }
}
