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
        let harness = try await ServerHarness()
        let watcher = PolicyWatcher(gateway: harness.gateway, interval: .milliseconds(50), settle: .milliseconds(100))
        defer { watcher.stop() }
        let client = try harness.authenticated()
        let oldMask = /^1\d{2}\*{4}\d{4}$/
        let newMask = /^\*{11}$/
        var sawOld = false, sawNew = false
        var changed = false
        for iteration in 0..<400 {
            if iteration == 50 {
                let policy = TestWorkspace.retailPolicy.replacing("phone:       { mask: phone_cn }", with: "phone:       { mask: redact }")
                try harness.workspace.write("retail.yaml", policy)
                changed = true
            }
            let answer = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT phone FROM customers LIMIT 20"}"#))
            let phones = (answer["rows"] as? [[String]] ?? []).map { $0[0] }
            #expect(phones.count == 20)
            for phone in phones {
                let masked = (try? oldMask.wholeMatch(in: phone)) != nil || (try? newMask.wholeMatch(in: phone)) != nil
                #expect(masked, "unmasked value in iteration \(iteration)")
                if (try? oldMask.wholeMatch(in: phone)) != nil { sawOld = true } else { sawNew = true }
            }
            if changed, sawNew { break }
            usleep(5_000)
        }
        #expect(sawOld && sawNew)
    }

    @Test("an invalid edit keeps the old policy in force and the log names the line")
    func invalidEditKeepsOldPolicy() async throws {
        let harness = try await ServerHarness()
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

    @Test("new and deleted dataset files and consumers.yaml edits take effect without restart")
    func datasetsAndConsumers() async throws {
        let harness = try await ServerHarness()
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

    @Test("a changed source is snapshotted anew and the usage record names the new version")
    func changedSource() async throws {
        let harness = try await ServerHarness()
        let client = try harness.authenticated()
        _ = try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#)
        let before = try #require(harness.gateway.runtime("retail")?.snapshot.sha256)
        usleep(20_000)
        let db = try SQLiteWriter(harness.workspace.source)
        try db.execute("UPDATE customers SET city = 'Lhasa' WHERE customer_id = 3")
        harness.gateway.reload()
        let after = try #require(harness.gateway.runtime("retail")?.snapshot.sha256)
        #expect(before != after)
        _ = try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 2"}"#)
        var versions: [String] = []
        try harness.gateway.ledger.records { versions.append($0.datasetVersion); return true }
        #expect(versions == [before, after])
    }
}

@Suite struct ConcurrencyTests {
    @Test("32 clients × 200 queries: every answer correct, every query recorded exactly once")
    func manyClients() async throws {
        let harness = try await ServerHarness { $0.maxInFlightPerConsumer = 64 }
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

    @Test("a consumer's resource bombs are stopped by budgets while another consumer stays fast")
    func isolation() async throws {
        let policy = TestWorkspace.retailPolicy.replacing("timeout_ms: 2000", with: "timeout_ms: 500")
        let workspace = try TestWorkspace(policy: policy, consumers: TestWorkspace.consumers().replacing("grants: {}", with: "grants:\n      retail: {}"))
        let harness = try await ServerHarness(workspace: workspace) { $0.workers = 4 }
        let port = harness.port
        let bomber = Task.detached {
            let client = try LineClient(host: "127.0.0.1", port: port)
            _ = try client.request(#"{"op":"auth","consumer":"analyst-b","key":"\#(TestWorkspace.demoKey)"}"#)
            var codes: [String] = []
            for _ in 0..<4 {
                codes.append(errorCode(try client.request(#"{"op":"query","dataset":"retail","sql":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}"#)) ?? "ok")
            }
            return codes
        }
        let client = try harness.authenticated()
        var slowest = 0.0
        for _ in 0..<40 {
            let started = Date()
            let answer = object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT city FROM customers WHERE customer_id IS NOT NULL LIMIT 1"}"#))
            #expect(answer["ok"] as? Bool == true)
            slowest = max(slowest, Date().timeIntervalSince(started))
        }
        let codes = try await bomber.value
        #expect(codes.allSatisfy { $0 == "timeout" || $0 == "budget_exceeded" })
        #expect(slowest < 0.4, "slowest simple query \(slowest) s")
    }
}

@Suite struct LimitTests {
    @Test("connections beyond the limit are refused with unavailable")
    func connectionLimit() async throws {
        let harness = try await ServerHarness { $0.maxConnections = 2 }
        let first = try harness.client(), second = try harness.client()
        #expect(object(try first.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
        #expect(object(try second.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
        let third = try harness.client()
        #expect(errorCode(try third.readLine() ?? "") == "unavailable")
        #expect(try third.readLine() == nil)
    }

    @Test("an idle connection is closed")
    func idleTimeout() async throws {
        let harness = try await ServerHarness { $0.idleTimeout = .milliseconds(300) }
        let client = try harness.client()
        usleep(800_000)
        #expect((try? client.readLine()) == nil)
    }

    @Test("a client that never reads its responses is disconnected and holds no worker")
    func slowReader() async throws {
        let harness = try await ServerHarness { $0.unwritableTimeout = .milliseconds(500) }
        let client = try harness.authenticated()
        let line = #"{"op":"query","dataset":"retail","sql":"SELECT name, phone, email, id_card, city FROM customers"}"# + "\n"
        // Keep sending without reading until the server gives up on us.
        var closed = false
        for _ in 0..<2000 {
            do { try client.send(bytes: Array(line.utf8)) } catch { closed = true; break }
        }
        let deadline = Date().addingTimeInterval(10)
        while harness.server.connections > 0, Date() < deadline { usleep(50_000) }
        #expect(harness.server.connections == 0 || closed)
        let other = try harness.authenticated()
        #expect(object(try other.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
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
        let harness = try await ServerHarness { $0.maxConnectionsPerAddress = 3 }
        let clients = try (0..<3).map { _ in try harness.client() }
        for client in clients { #expect(object(try client.request(#"{"op":"ping"}"#))["ok"] as? Bool == true) }
        let fourth = try harness.client()
        #expect(errorCode(try fourth.readLine() ?? "") == "unavailable")
    }
}
