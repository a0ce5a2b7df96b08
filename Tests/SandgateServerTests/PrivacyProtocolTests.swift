import Foundation
import SandgateCore
import SandgateServer
import SandgateTestSupport
import Testing

/// Issue 10 over real sockets: a private answer carries its ε and 95% half-widths in JSON lines
/// and in the pgwire notice; `quota` shows the ε left; the refusal when it is spent.
@Suite struct PrivacyProtocolTests {
    @Test("JSON lines: usage.epsilon and usage.noise, the quota op's ε, privacy_budget_exhausted with the refresh")
    func jsonLines() async throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 2, period: day }"))
        try await withServerHarness(workspace: workspace) { harness in
            let client = try harness.authenticated()
            let query = object(try client.request(#"{"id":1,"op":"query","dataset":"retail","sql":"SELECT channel, count(*) AS n FROM orders GROUP BY channel"}"#))
            let usage = try #require(query["usage"] as? [String: Any], "\(query)")
            #expect(usage["epsilon"] as? Int == 1)
            // All of the aggregates' half of ε on count(*): scale 2·5/0.5 = 20.
            #expect((usage["noise"] as? [String: Any])?["n"] as? Int == Int(LaplaceScale(numerator: 20, denominator: 1)!.halfWidth()))
            let again = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT channel, count(*) AS n FROM orders GROUP BY channel"}"#))
            #expect((again["usage"] as? [String: Any])?["epsilon"] as? Int == 0)
            #expect((again["rows"] as? [[Any]])?.count == (query["rows"] as? [[Any]])?.count)
            let quota = try #require((object(try client.request(#"{"op":"quota","dataset":"retail"}"#))["quotas"] as? [[String: Any]])?.first)
            #expect(quota["epsilon_budget"] as? Int == 2 && quota["epsilon_spent"] as? Int == 1 && quota["epsilon_left"] as? Int == 1)
            #expect(quota["epsilon_period"] as? String == "day" && quota["epsilon_refresh"] as? String == "at 00:00 UTC")
            _ = try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT count(*) AS n FROM orders"}"#)
            let refused = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT count(*) AS n FROM orders WHERE channel <> 'x'"}"#))
            let error = try #require(refused["error"] as? [String: Any])
            #expect(error["code"] as? String == "privacy_budget_exhausted")
            #expect(error["hint"] as? String == "remaining epsilon 0; the budget refreshes at 00:00 UTC; repeating an earlier query costs nothing")
        }
    }

    @Test("pgwire: the notice after a private result names the ε spent and each column's 95% half-width; the refusal is SQLSTATE 53400")
    func pgwireNotice() async throws {
        let workspace = try PrivateRetail.workspace(policy: PrivateRetail.policy(budget: "{ epsilon: 1, period: month }"))
        try await withServerHarness(workspace: workspace) { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            let answer = try client.query("SELECT channel, sum(amount) AS total FROM orders GROUP BY channel")
            let notice = try #require(answer.first { $0.typeCharacter == "N" }).fields
            let width = LaplaceScale(numerator: 2 * (5 * 5000 + 1) * 2, denominator: 1)!.halfWidth()
            #expect(notice["M"]?.contains("; differential privacy: epsilon 1 spent, 95% interval half-widths total ±\(width)") == true, "\(notice)")
            let refused = try client.query("SELECT count(*) AS n FROM orders")
            let error = try #require(refused.first { $0.typeCharacter == "E" }).fields
            #expect(error["C"] == "53400")
            #expect(error["M"]?.contains("privacy_budget_exhausted") == true)
        }
    }
}
