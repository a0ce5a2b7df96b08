import Foundation
import SandgateCore
import SandgateLedger
import SandgateLedgerPostgres
import SandgateTestSupport
import Synchronization
import Testing

/// Several gateway nodes sharing one PostgreSQL ledger (DESIGN.md §10): quotas are exact across
/// nodes, each node's chain verifies, and the merged invoice is the sum of all records.
@Suite(.needsPostgres) struct ClusterQuotaTests {
    @Test("3 gateway nodes × 32 clients racing for the last 10 queries of a quota get exactly 10")
    func lastTenQueries() throws {
        let server = try PostgresTestServer.shared()
        let url = try server.makeDatabase()
        let key = try privateKeyPath()
        let workspaces = try (0..<3).map { _ in try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_queries: 15 }")) }
        let nodes = try workspaces.enumerated().map { index, workspace in
            try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: workspace.policies, stateDirectory: workspace.state, poolSize: 2,
                ledger: { () throws(LedgerError) in try PostgresLedgerStore(url: url, nodeID: "node-\(index)", keyPath: key) }))
        }
        // 5 of the 15 are used before the race, on different nodes.
        for index in 0..<5 { #expect(nodes[index % 3].query("SELECT \(index)").isOK) }
        let ok = Atomic<Int>(0)
        let otherCodes = Mutex<[String]>([])
        concurrently(96) { index in
            let response = nodes[index % 3].query("SELECT city, count(*) AS n FROM customers GROUP BY city")
            if response.isOK {
                ok.add(1, ordering: .relaxed)
            } else if response.error?.code != .quotaExceeded {
                otherCodes.withLock { $0.append(response.error?.code.rawValue ?? "?") }
            }
        }
        #expect(ok.load(ordering: .relaxed) == 10)
        #expect(otherCodes.withLock { $0 } == [])
        for node in nodes { #expect(try node.ledger.verify() == nil) }
        var records: [UsageRecord] = []
        try nodes[0].ledger.records { records.append($0); return true }
        #expect(records.count == 5 + 96)
        #expect(Set(records.map(\.nodeID)) == ["node-0", "node-1", "node-2"])
        #expect(records.filter { $0.status == .ok }.count == 15)
        let lines = Invoice.lines(from: records)
        #expect(lines.count == 1)
        #expect(lines.first?.queries == 15)
        #expect(lines.first?.refused == 86)
        #expect(lines.first?.costMicros == records.reduce(0) { $0 + $1.costMicros })
    }

    /// PostgreSQL stops (like a crash) under a running gateway: queries get `unavailable` and no
    /// result; quota holds cannot be taken either. Once it is back the same gateway serves again
    /// without a restart, and every released result has its record.
    @Test("PostgreSQL down: unavailable and nothing released; service resumes by itself")
    func ledgerDown() throws {
        let server = try PostgresTestServer.makePrivate()
        defer { server.destroy() }
        let url = try server.makeDatabase()
        let key = try privateKeyPath()
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_queries: 100 }"))
        let gateway = try Gateway(configuration: GatewayConfiguration(
            policiesDirectory: workspace.policies, stateDirectory: workspace.state, poolSize: 2,
            ledger: { () throws(LedgerError) in try PostgresLedgerStore(url: url, nodeID: "n", keyPath: key) }))
        let before = gateway.query("SELECT city FROM customers LIMIT 2")
        #expect(before.isOK)
        server.stop()
        let during = gateway.query("SELECT city FROM customers LIMIT 2")
        #expect(during.error?.code == .unavailable && during.result == nil)
        let done = DispatchSemaphore(value: 0)
        let asynchronous = Mutex<QueryResponse?>(nil)
        gateway.run(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT 1")) { response in
            asynchronous.withLock { $0 = response }
            done.signal()
        }
        done.wait()
        #expect(asynchronous.withLock { $0?.error?.code } == .unavailable)
        try server.start()
        let after = gateway.query("SELECT city FROM customers LIMIT 2")
        #expect(after.isOK, "\(String(describing: after.error))")
        var ids: Set<String> = []
        try gateway.ledger.records { ids.insert($0.queryID); return true }
        #expect(ids.contains(before.usage.queryID) && ids.contains(after.usage.queryID))
        #expect(try gateway.ledger.verify() == nil)
    }
}

/// A ledger key path in a directory of its own: a PostgreSQL node keeps its checkpoint beside
/// the key, so tests sharing the temporary directory would read each other's.
func privateKeyPath() throws -> String {
    let directory = NSTemporaryDirectory() + "sandgate-pg-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory + "/usage.key"
}
