import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Issue 10: queries on a table with `privacy:` are answered with bounded contributions, exact
/// discrete noise and private group selection, and pay ε from the consumer's budget.
@Suite struct PrivateQueryTests {
    @Test("a private GROUP BY releases noisy counts and sums with their 95% half-widths")
    func groupByChannel() throws {
        let workspace = try PrivateRetail.workspace()
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT channel, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM orders GROUP BY channel ORDER BY channel")
        let result = try #require(response.result, "\(String(describing: response.error))")
        print(result.rows, response.usage.noise)
        #expect(result.rowCount > 0)
        #expect(response.usage.epsilonMicros == 1_000_000)
        #expect(response.usage.noise.map(\.column) == ["n", "total", "mean"])
    }
}
