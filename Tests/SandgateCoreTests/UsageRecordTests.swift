import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateTestSupport
import Synchronization
import Testing

/// DESIGN.md §7: one record per request, refusals included, with counts that match the result.
@Suite struct UsageRecordTests {
    @Test("every request leaves exactly one matching record")
    func everyRequestIsRecorded() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let requests: [(String, String, String)] = [
            ("analyst-a", "retail", "SELECT city, count(*) AS n FROM customers GROUP BY city"),
            ("analyst-a", "retail", "SELECT name, phone FROM customers LIMIT 7"),
            ("analyst-a", "retail", "SELECT salary FROM customers"),
            ("analyst-a", "retail", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"),
            ("analyst-b", "retail", "SELECT 1"),
            ("nobody", "retail", "SELECT 1"),
            ("analyst-a", "nowhere", "SELECT 1"),
        ]
        var responses: [QueryResponse] = []
        for (consumer, dataset, sql) in requests {
            responses.append(gateway.run(QueryRequest(consumer: consumer, dataset: dataset, sql: sql)))
        }
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        #expect(records.count == requests.count)
        for (record, response) in zip(records, responses) {
            #expect(record.queryID == response.usage.queryID)
            #expect(record.seq == response.usage.seq)
            #expect(record.rows == Int64(response.usage.rows))
            #expect(record.cells == Int64(response.usage.cells))
            #expect(record.bytes == Int64(response.usage.bytes))
            #expect(record.costMicros == response.usage.costMicros)
            #expect(record.vmSteps == response.usage.vmSteps)
            if let result = response.result {
                #expect(record.status == .ok)
                #expect(Int(record.rows) == result.rowCount)
                #expect(Int(record.cells) == result.rowCount * result.columns.count)
            }
        }
        #expect(records[0].status == .ok && records[0].costMicros == 1000 + 20 * records[0].rows + 500)
        #expect(records[1].maskedCells >= 14)
        #expect(records[2].status == .refused && records[2].errorCode == "no_such_column" && records[2].costMicros == 0)
        #expect(records[3].status == .failed && records[3].costMicros > 0)
        #expect(records[4].errorCode == "not_granted")
        #expect(records[5].errorCode == "auth_failed")
        #expect(records[6].errorCode == "unknown_dataset")
        #expect(records.allSatisfy { $0.sqlSHA256.count == 64 })
        let runtime = try #require(gateway.runtime("retail"))
        #expect(records[0].policyVersion == runtime.policy.version)
        #expect(records[0].datasetVersion == runtime.snapshot.sha256)
        #expect(try gateway.ledger.verify() == nil)
    }

    @Test("daily quotas refuse and truncate")
    func quotas() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_queries: 3, daily_rows: 50 }"))
        let gateway = try workspace.gateway()
        let first = gateway.query("SELECT city FROM customers")
        #expect(first.result?.rowCount == 50)
        #expect(first.truncatedBy == "daily_rows")
        #expect(gateway.query("SELECT city FROM customers").error?.code == .quotaExceeded)
        #expect(gateway.query("SELECT 1").error?.code == .quotaExceeded)
    }

    @Test("the daily query quota counts successful queries of the UTC day")
    func dailyQueries() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_queries: 2 }"))
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT 1").isOK)
        #expect(gateway.query("SELECT 2").isOK)
        #expect(gateway.query("SELECT 3").error?.code == .quotaExceeded)
        // Tomorrow the quota is fresh.
        let tomorrow = try workspace.gateway(now: { Int64(Date().timeIntervalSince1970 * 1_000_000) + 86_400_000_000 })
        #expect(tomorrow.query("SELECT 4").isOK)
    }
}

@Suite struct ConcurrentQuotaTests {
    @Test("concurrent requests cannot together pass the daily query quota")
    func concurrentQueries() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_queries: 5 }"))
        let gateway = try workspace.gateway()
        let outcomes = Outcomes()
        DispatchQueue.concurrentPerform(iterations: 24) { index in
            outcomes.add(gateway.query("SELECT \(index)").error?.code)
        }
        #expect(outcomes.ok == 5)
        #expect(outcomes.codes.allSatisfy { $0 == .quotaExceeded })
    }

    @Test("concurrent requests share the daily row quota")
    func concurrentRows() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.consumers(grant: "{ daily_rows: 100 }"))
        let gateway = try workspace.gateway()
        let rows = RowCounter()
        DispatchQueue.concurrentPerform(iterations: 12) { _ in
            rows.add(gateway.query("SELECT city FROM customers LIMIT 30").result?.rowCount ?? 0)
        }
        #expect(rows.total == 100)
    }
}

final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var ok = 0
    private(set) var codes: [ErrorCode] = []
    func add(_ code: ErrorCode?) {
        lock.lock(); defer { lock.unlock() }
        if let code { codes.append(code) } else { ok += 1 }
    }
}

final class RowCounter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var total = 0
    func add(_ rows: Int) { lock.lock(); total += rows; lock.unlock() }
}

/// The ledger seam: the gateway works through `LedgerStore`, and with a store that cannot make a
/// record durable, no result is released (DESIGN.md §2.1: no usage record, no result).
@Suite struct LedgerSeamTests {
    /// A store whose every append fails (a full disk, a lost database connection).
    final class FailingStore: LedgerStore, @unchecked Sendable {
        let nodeID = "test"
        let anchorFailure: String? = nil
        let pendingCount = 0
        func append(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion) { completion(.failure(LedgerError(.store, "disk full"))) }
        func reserve(_ request: QuotaRequest) throws(LedgerError) -> QuotaDecision { throw LedgerError(.store, "disk full") }
        func release(_ hold: QuotaHold) {}
        func receipt(queryID: String) throws(LedgerError) -> Receipt? { nil }
        func totals(consumer: String, dataset: String, at time: Int64) throws(LedgerError) -> UsageTotals { throw LedgerError(.store, "disk full") }
        func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError) {}
        func verify() throws(LedgerError) -> LedgerProblem? { nil }
        func sync() {}
        func close() {}
    }

    @Test("a record that cannot be written withholds the result, through either run")
    func noRecordNoResult() throws {
        let workspace = try TestWorkspace()
        let gateway = try Gateway(configuration: GatewayConfiguration(
            policiesDirectory: workspace.policies, stateDirectory: workspace.state, poolSize: 1, ledger: { FailingStore() }))
        let blocking = gateway.query("SELECT city FROM customers LIMIT 3")
        #expect(blocking.error?.code == .unavailable)
        #expect(blocking.result == nil)
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<QueryResponse?>(nil)
        gateway.run(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT city FROM customers LIMIT 3")) { response in
            box.withLock { $0 = response }
            done.signal()
        }
        done.wait()
        let completed = try #require(box.withLock { $0 })
        #expect(completed.error?.code == .unavailable && completed.result == nil)
        // Red team: the meters of a withheld result are figures about the data; none are given.
        for response in [blocking, completed] {
            let usage = response.usage
            #expect(usage.rows == 0 && usage.cells == 0 && usage.bytes == 0 && usage.vmSteps == 0 && usage.costMicros == 0
                    && usage.maskedCells == 0 && usage.seq == 0 && !usage.queryID.isEmpty, "\(usage)")
        }
    }
}
