import Foundation
import SandgateCore
import SandgateFixtures

/// A temporary policies + state directory around a generated retail fixture; removed on deinit.
public final class TestWorkspace {
    public let root: String
    public var policies: String { root + "/Policies" }
    public var state: String { root + "/var" }
    public var source: String { root + "/retail.sqlite" }

    /// One generated fixture per test process, copied into each workspace.
    public static let sharedFixture: String = {
        let path = NSTemporaryDirectory() + "sandgate-core-fixture-\(ProcessInfo.processInfo.processIdentifier).sqlite"
        try! RetailFixture.generate(customers: 400, path: path)
        return path
    }()

    /// The key of analyst-a and analyst-b in test workspaces.
    public static let demoKey = "test-key-analyst-a"
    /// SHA-256 of `demoKey`.
    public static let demoKeyHash = "1db41e4d7854a958fd3c87aadce961438b497de04445012a4bbf470fe583b1eb"
    /// SCRAM-SHA-256 verifier of `demoKey` (PostgreSQL-protocol logins).
    public static let demoKeySCRAM = "SCRAM-SHA-256$4096:ixPPTNTCNAClCLpVTdwpkw==$N0adHfg0Abqx+nLkeT4lWFaqidvSNvJFsLFBiSIOGWQ=:IQG7Hn4OMssKAfzk6UWOfQn0B4YVKjcLRCGT9zfwG0g="

    public static let retailPolicy = """
        dataset: retail
        description: test
        owner: retail-data-office
        source: ../retail.sqlite
        limits:
          max_rows: 1000
          timeout_ms: 2000
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
            row_filter: "status = 'active'"
            columns:
              customer_id: { role: join_key }
              name:        { mask: { pattern: '^(.).*$', replace: '$1**' } }
              phone:       { mask: phone_cn }
              id_card:     { mask: id_card_cn }
              email:       { mask: email }
              city:        {}
              birth_date:  { mask: year }
              status:      {}
          orders:
            access: aggregate
            privacy_unit: customer_id
            min_group_size: 10
            columns:
              customer_id: { role: join_key }
              amount:      { role: measure, aggregates: [count, sum, avg, min, max] }
              channel:     { role: dimension }
              created_at:  { role: dimension }
        """

    public static func consumers(grant: String = "{ max_rows: 200 }") -> String {
        """
        consumers:
          analyst-a:
            key_sha256: \(demoKeyHash)
            scram_sha256: "\(demoKeySCRAM)"
            grants:
              retail: \(grant)
          analyst-b:
            key_sha256: \(demoKeyHash)
            grants: {}
        """
    }

    /// The test policy with purposes, per-consumer tokens and a holder share of 80% (issue 13).
    public static let purposePolicy = retailPolicy
        .replacingOccurrences(of: "description: test\n", with: """
            description: test
            tokens: per_consumer
            purposes:
              credit_risk: Scoring the credit risk of applicants
              public_health_research: Aggregate studies approved by the ethics board

            """)
        .replacingOccurrences(of: "  per_million_vm_steps: 500\n", with: "  per_million_vm_steps: 500\n  holder_share: 0.80\n")

    /// For `purposePolicy`: analyst-a may use credit_risk (with `creditRiskLimit`) and
    /// `marketing`, which the dataset does not list; analyst-b may use public_health_research.
    public static func purposeConsumers(creditRiskLimit: String = "{ max_rows: 5 }") -> String {
        """
        consumers:
          analyst-a:
            key_sha256: \(demoKeyHash)
            scram_sha256: "\(demoKeySCRAM)"
            grants:
              retail:
                max_rows: 200
                purposes:
                  credit_risk: \(creditRiskLimit)
                  marketing: {}
          analyst-b:
            key_sha256: \(demoKeyHash)
            scram_sha256: "\(demoKeySCRAM)"
            grants:
              retail: { max_rows: 200, purposes: [public_health_research] }
        """
    }

    /// `kate` (3 queries, 10 rows a day, 5 rows a query) and `ops` (role: operator), both with
    /// the demo key: for quota, identity and role tests.
    public static let kateConsumers = """
        consumers:
          kate:
            key_sha256: \(demoKeyHash)
            scram_sha256: "\(demoKeySCRAM)"
            grants:
              retail: { max_rows: 5, daily_queries: 3, daily_rows: 10 }
          ops:
            key_sha256: \(demoKeyHash)
            role: operator
            grants:
              retail: {}
        """

    public init(policy: String = TestWorkspace.retailPolicy, consumers: String = TestWorkspace.consumers()) throws {
        root = NSTemporaryDirectory() + "sandgate-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/Policies", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.sharedFixture, toPath: source)
        try write("retail.yaml", policy)
        try write("consumers.yaml", consumers)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }

    public func write(_ name: String, _ text: String) throws {
        try text.write(toFile: policies + "/" + name, atomically: true, encoding: .utf8)
    }

    public func gateway(now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1_000_000) }) throws -> Gateway {
        try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: state, poolSize: 2, now: now))
    }
}

extension Gateway {
    /// Runs `sql` as analyst-a on retail.
    public func query(_ sql: String, as consumer: String = "analyst-a", dataset: String = "retail", parameters: QueryParameters = .none) -> QueryResponse {
        run(QueryRequest(consumer: consumer, dataset: dataset, sql: sql, parameters: parameters))
    }
}
