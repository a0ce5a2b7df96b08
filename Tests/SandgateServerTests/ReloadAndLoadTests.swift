import Foundation
import NIOCore
import SandgateCore
import SandgateLedger
import SandgateServer
import SandgateSQLite
import SandgateTestSupport
import Synchronization
import Testing

@Suite struct HotReloadTests {
    @Test("changing a mask while a client queries in a loop: every answer is masked by the old or the new policy")
    func maskChangeUnderLoad() async throws {
        try await withServerHarness { harness in
            let watcher = PolicyWatcher(gateway: harness.gateway, interval: .milliseconds(50), settle: .milliseconds(100))
            // Outside a ServiceGroup, and without a task: this test blocks its thread on sockets.
            let polling = watcher.startPolling()
            defer { polling?.stop() }
            let client = try harness.authenticated()
            enum Mask { case old, new }
            /// The one mask every phone of an answer carries (a query runs under one policy).
            func mask() throws -> Mask? {
                let answer = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT phone FROM customers LIMIT 20"}"#))
                let phones = (answer["rows"] as? [[String]] ?? []).map { $0[0] }
                #expect(phones.count == 20)
                if phones.allSatisfy({ $0.wholeMatch(of: /1\d{2}\*{4}\d{4}/) != nil }) { return .old }
                if phones.allSatisfy({ $0.wholeMatch(of: /\*{11}/) != nil }) { return .new }
                Issue.record("an answer not masked by one policy: \(phones)")
                return nil
            }
            for _ in 0..<50 { #expect(try mask() == .old) }
            try harness.workspace.write("retail.yaml", TestWorkspace.retailPolicy.replacing("phone:       { mask: phone_cn }", with: "phone:       { mask: redact }"))
            // Until the watcher reloads, answers keep the old mask; once one has the new, all do.
            try waitUntil("the watcher putting the new mask in force", interval: .zero) {
                let seen = try mask()
                #expect(seen != nil)
                return seen == .new
            }
            for _ in 0..<20 { #expect(try mask() == .new) }
        }
    }

    @Test("an invalid edit keeps the old policy in force and the log names the line")
    func invalidEditKeepsOldPolicy() async throws {
        try await withServerHarness { harness in
            let client = try harness.authenticated()
            let before = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT phone FROM customers LIMIT 1"}"#))
            // Try to unmask the phone with a broken file: the mask must stay.
            try harness.workspace.write("retail.yaml", TestWorkspace.retailPolicy
                .replacing("phone:       { mask: phone_cn }", with: "phone:       {}\n      bogus: [")
            )
            let changes = harness.gateway.reload()
            #expect(changes.contains { $0.contains("invalid edit ignored") })
            let after = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT phone FROM customers LIMIT 1"}"#))
            #expect((after["rows"] as? [[String]]) == (before["rows"] as? [[String]]))
            #expect(harness.logs.all.contains { $0.contains("retail.yaml:") && $0.contains("policy problem") })
            // A data-level problem (unknown column) is refused the same way.
            try harness.workspace.write("retail.yaml", TestWorkspace.retailPolicy.replacing("city:        {}", with: "cityy:       {}"))
            harness.gateway.reload()
            #expect(object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT city FROM customers LIMIT 1"}"#))["ok"] as? Bool == true)
        }
    }

    @Test("new and deleted dataset files and consumers.yaml edits take effect without restart")
    func datasetsAndConsumers() async throws {
        try await withServerHarness { harness in
            try harness.workspace.write("second.yaml", "source: ../retail.sqlite\ntables:\n  customers:\n    columns: { city: {} }\n")
            try harness.workspace.write("consumers.yaml", TestWorkspace.consumers(grant: "{}").replacing("retail: {}", with: "retail: {}\n      second: {}"))
            harness.gateway.reload()
            let client = try harness.authenticated()
            #expect(object(try client.request(#"{"op":"query","dataset":"second","sql":"SELECT city FROM customers LIMIT 1"}"#))["ok"] as? Bool == true)
            try FileManager.default.removeItem(atPath: harness.workspace.policies + "/second.yaml")
            harness.gateway.reload()
            #expect(errorCode(try client.request(#"{"op":"query","dataset":"second","sql":"SELECT 1"}"#)) == "unknown_dataset")
            // A broken consumers.yaml keeps the previous grants.
            try harness.workspace.write("consumers.yaml", "consumers:\n  analyst-a: [\n")
            harness.gateway.reload()
            #expect(object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#))["ok"] as? Bool == true)
        }
    }

    @Test("a changed source is snapshotted anew and the usage record names the new version")
    func changedSource() async throws {
        try await withServerHarness { harness in
            let client = try harness.authenticated()
            _ = try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#)
            let before = try #require(harness.gateway.runtime("retail")?.snapshot.sha256)
            let db = try SQLiteWriter(harness.workspace.source)
            try db.execute("UPDATE customers SET city = 'Lhasa' WHERE customer_id = 3")
            // An mtime of its own, as a holder's edit a moment later would have (a write within the
            // file system's timestamp tick of the copy could keep the old one).
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_000_000_000)], ofItemAtPath: harness.workspace.source)
            harness.gateway.reload()
            let after = try #require(harness.gateway.runtime("retail")?.snapshot.sha256)
            #expect(before != after)
            _ = try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 2"}"#)
            var versions: [String] = []
            try harness.gateway.ledger.records { versions.append($0.datasetVersion); return true }
            #expect(versions == [before, after])
        }
    }
}

@Suite struct ConcurrencyTests {
    @Test("32 clients × 200 queries: every answer correct, every query recorded exactly once")
    func manyClients() async throws {
        try await withServerHarness(configure: { $0.maxInFlightPerConsumer = 64 }) { harness in
            let port = harness.port
            let failures = SharedCounter()
            await withTaskGroup(of: Void.self) { group in
                for clientIndex in 0..<32 {
                    group.addTask {
                        do {
                            let client = try LineClient(host: "127.0.0.1", port: port)
                            _ = try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(TestWorkspace.demoKey)"}"#)
                            for query in 0..<200 {
                                let value = clientIndex * 1000 + query
                                let answer = object(try client.request(#"{"id":\#(value),"op":"query","dataset":"retail","sql":"SELECT ? + 0, count(*) > 0 FROM customers WHERE city = 'Shanghai'","params":[\#(value)]}"#))
                                if answer["id"] as? Int != value || (answer["rows"] as? [[Int]]) != [[value, 1]] {
                                    failures.add()
                                }
                            }
                        } catch {
                            failures.add()
                        }
                    }
                }
            }
            #expect(failures.value == 0)
            var ids = Set<String>()
            var count = 0
            try harness.gateway.ledger.records { record in
                count += 1
                ids.insert(record.queryID)
                return true
            }
            #expect(count == 6400)
            #expect(ids.count == 6400)
            #expect(try harness.gateway.ledger.verify() == nil)
        }
    }

    @Test("a consumer's resource bombs are stopped by budgets while another consumer stays fast")
    func isolation() async throws {
        // Steps that never run out first, so the time budget is what stops each bomb.
        let policy = TestWorkspace.retailPolicy.replacing("timeout_ms: 2000", with: "timeout_ms: 500")
            .replacing("max_vm_steps: 50000000", with: "max_vm_steps: 1000000000000")
        let workspace = try TestWorkspace(policy: policy, consumers: TestWorkspace.consumers().replacing("grants: {}", with: "grants:\n      retail: {}"))
        try await withServerHarness(workspace: workspace, configure: { $0.workers = 4 }) { harness in
            let port = harness.port
            let bombing = Atomic<Bool>(true)
            let bomber = Task.detached {
                defer { bombing.store(false, ordering: .relaxed) }
                let client = try LineClient(host: "127.0.0.1", port: port)
                _ = try client.request(#"{"op":"auth","consumer":"analyst-b","key":"\#(TestWorkspace.demoKey)"}"#)
                var answers: [(code: String, took: Duration)] = []
                for _ in 0..<4 {
                    let started = ContinuousClock.now
                    let line = try client.request(#"{"op":"query","dataset":"retail","sql":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}"#)
                    answers.append((errorCode(line) ?? "ok", ContinuousClock.now - started))
                }
                return answers
            }
            let client = try harness.authenticated()
            // Simple queries while the bombs run (at least 40).
            var latencies: [Duration] = []
            while latencies.count < 40 || bombing.load(ordering: .relaxed) && latencies.count < 10_000 {
                let started = ContinuousClock.now
                let answer = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT city FROM customers WHERE customer_id IS NOT NULL LIMIT 1"}"#))
                #expect(answer["ok"] as? Bool == true)
                latencies.append(ContinuousClock.now - started)
            }
            let bombs = try await bomber.value
            #expect(bombs.map(\.code) == ["timeout", "timeout", "timeout", "timeout"])
            // Same-run baseline: a simple query that waited for a bomb's worker would take about
            // as long as a bomb; one on a free worker takes a small part of it.
            let simple = latencies.sorted()[latencies.count / 2], bomb = bombs.map(\.took).sorted()[bombs.count / 2]
            #expect(simple * 5 < bomb, "simple query p50 \(simple), bomb p50 \(bomb)")
        }
    }
}

@Suite struct LimitTests {
    @Test("connections beyond the limit are refused with unavailable")
    func connectionLimit() async throws {
        try await withServerHarness(configure: { $0.maxConnections = 2 }) { harness in
            let first = try harness.client(), second = try harness.client()
            #expect(object(try first.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
            #expect(object(try second.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
            let third = try harness.client()
            #expect(errorCode(try third.readLine() ?? "") == "unavailable")
            #expect(try third.readLine() == nil)
        }
    }

    @Test("an idle connection is closed")
    func idleTimeout() async throws {
        try await withServerHarness(configure: { $0.idleTimeout = .milliseconds(300) }) { harness in
            let client = try harness.client()
            // The read waits for the server's close (the client's own timeout is 30 s).
            #expect(try client.readLine() == nil)
        }
    }

    @Test("a client that never reads its responses is disconnected and holds no worker")
    func slowReader() async throws {
        try await withServerHarness(configure: { $0.unwritableTimeout = .milliseconds(500) }) { harness in
            let client = try harness.authenticated()
            let line = #"{"op":"query","dataset":"retail","sql":"SELECT name, phone, email, id_card, city FROM customers"}"# + "\n"
            // Keep sending without reading until the server gives up on us.
            for _ in 0..<2000 {
                guard (try? client.send(bytes: Array(line.utf8))) != nil else { break }
            }
            try waitUntil("the server closing the connection that does not read") { harness.server.connections == 0 }
            let other = try harness.authenticated()
            #expect(object(try other.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#))["ok"] as? Bool == true)
        }
    }
}

/// Writes to a source file (as a data holder would).
struct SQLiteWriter {
    let connection: Connection
    init(_ path: String) throws { connection = try Connection(path: path, mode: .readWrite) }
    func execute(_ sql: String) throws { try connection.execute(sql) }
}

/// A counter shared by concurrent test tasks.
final class SharedCounter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

@Suite struct AddressLimitTests {
    @Test("one address cannot take every connection slot")
    func perAddressLimit() async throws {
        try await withServerHarness(configure: { $0.maxConnectionsPerAddress = 3 }) { harness in
            let clients = try (0..<3).map { _ in try harness.client() }
            for client in clients { #expect(object(try client.request(#"{"op":"ping"}"#))["ok"] as? Bool == true) }
            let fourth = try harness.client()
            #expect(errorCode(try fourth.readLine() ?? "") == "unavailable")
        }
    }
}
