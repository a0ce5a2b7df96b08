import Foundation

/// A retail policy whose `orders` table is private (issue 10), for the privacy tests.
public enum PrivateRetail {
    public static func policy(epsilon: String = "1.0", delta: String = "1.0e-5", budget: String = "{ epsilon: 10, period: month }",
                       groups: Int = 2, rows: Int = 5, minGroupSize: Int = 10, bounds: String = "[0, 5000]") -> String {
        """
        dataset: retail
        description: test
        source: ../retail.sqlite
        limits:
          max_rows: 1000
          timeout_ms: 5000
          max_vm_steps: 50000000
          max_result_bytes: 8388608
        pricing:
          currency: CNY
          per_query: 1000
          per_row: 20
          per_million_vm_steps: 500
        tables:
          customers:
            access: rows
            columns:
              customer_id: { role: join_key }
              city:        {}
          orders:
            access: aggregate
            privacy_unit: customer_id
            min_group_size: \(minGroupSize)
            privacy:
              epsilon_per_query: \(epsilon)
              delta: \(delta)
              budget: \(budget)
              max_groups_per_unit: \(groups)
              max_rows_per_unit: \(rows)
            columns:
              customer_id: { role: join_key }
              amount:      { role: measure, aggregates: [count, sum, avg], bounds: \(bounds) }
              channel:     { role: dimension }
              created_at:  { role: dimension }
        """
    }

    public static func workspace(grant: String = "{ max_rows: 200 }", policy: String = PrivateRetail.policy()) throws -> TestWorkspace {
        try TestWorkspace(policy: policy, consumers: TestWorkspace.consumers(grant: grant))
    }
}
