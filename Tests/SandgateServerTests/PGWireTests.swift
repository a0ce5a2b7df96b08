import Foundation
import NIOCore
import SandgateCore
import SandgateServer
import SandgateTestSupport
import Synchronization
import Testing

/// The PostgreSQL front end (DESIGN.md §6) over a real socket, with a hand-written client so
/// that every byte is the test's choice.
@Suite struct PGWireTests {
    @Test("SCRAM login, then a typed result, the usage notice, SELECT n and ReadyForQuery")
    func loginAndQuery() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            let login = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            #expect(login.types.hasPrefix("RR"), "SASLFinal then AuthenticationOk")
            #expect(login.types.hasSuffix("KZ"))
            #expect(login.contains { $0.typeCharacter == "S" && String(decoding: $0.body, as: UTF8.self).hasPrefix("server_version\u{0}15") })

            let answer = try client.query("SELECT city, count(*) AS n, 1.5 AS r FROM customers WHERE city = 'Shanghai' GROUP BY city")
            #expect(answer.types == "TDNCZ")
            #expect(answer.typeOIDs == [25, 20, 701])
            #expect(answer.rows.first?.first == "Shanghai")
            #expect(answer.first { $0.typeCharacter == "C" }.map { String(decoding: $0.body.dropLast(), as: UTF8.self) } == "SELECT 1")
            let notice = try #require(answer.first { $0.typeCharacter == "N" }).fields
            #expect(notice["M"]?.contains("cost") == true && notice["M"]?.contains("query ") == true)
        }
    }

    @Test("a wrong key, an unknown user and a consumer without a verifier all fail the same way, with a hint")
    func failedLogins() async throws {
        try await withServerHarness(workspace: TestWorkspace(consumers: TestWorkspace.consumers())) { harness in
            for (user, key) in [("analyst-a", "wrong"), ("nobody", TestWorkspace.demoKey), ("analyst-b", TestWorkspace.demoKey)] {
                let client = try PGTestClient(port: harness.pgPort)
                let answer = try client.login(user: user, password: key)
                let error = try #require(answer.error, "\(user)")
                #expect(error["C"] == "28P01")
                #expect(error["M"] == "password authentication failed for user \"\(user)\"")
                #expect(error["H"]?.contains("scram_sha256") == true)
                #expect(try client.read() == nil, "the connection is closed")
            }
        }
    }

    @Test("refusals carry SQLSTATE, the sandgate code and its hint; the session goes on")
    func refusals() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            for (sql, state, code) in [
                ("SELECT salary FROM customers", "42703", "no_such_column"),
                ("SELECT * FROM custmers", "42P01", "no_such_table"),
                ("SELECT amount FROM orders", "42501", "aggregate_required"),
                ("SELEC 1", "42601", "syntax_error"),
                ("DELETE FROM customers", "42501", "not_a_select"),
            ] {
                let answer = try client.query(sql)
                let error = try #require(answer.error, "\(sql)")
                #expect(error["C"] == state, "\(sql)")
                #expect(error["M"]?.hasPrefix(code + ": ") == true, "\(sql): \(error["M"] ?? "")")
                #expect(answer.last?.typeCharacter == "Z")
            }
            #expect(try client.query("SELECT 1 AS one").rows == [["1"]])
        }
    }

    @Test("several statements in one string run one by one, each metered; the first error stops the rest")
    func multipleStatements() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            let answer = try client.query("SELECT 1 AS a; SELECT 'x;y' AS b; SELECT nope FROM customers; SELECT 3 AS c")
            #expect(answer.rows == [["1"], ["x;y"]])
            #expect(answer.filter { $0.typeCharacter == "N" }.count == 3, "two results and the refusal are metered")
            #expect(answer.error?["C"] == "42703")
        }
    }

    @Test("extended protocol: binary parameters, Describe, Execute with a row limit and PortalSuspended")
    func extended() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            // Parse "s1" with an int8 parameter, Bind it in binary, Describe the portal, Execute 2 rows at a time.
            try client.send("P", PGTestClient.cString("s1") + PGTestClient.cString("SELECT city FROM customers WHERE length(city) > $1 ORDER BY city LIMIT 3")
                            + PGTestClient.int16(1) + PGTestClient.int32(20))
            try client.send("B", PGTestClient.cString("") + PGTestClient.cString("s1") + PGTestClient.int16(1) + PGTestClient.int16(1)
                            + PGTestClient.int16(1) + PGTestClient.int32(8) + withUnsafeBytes(of: Int64(2).bigEndian) { Array($0) } + PGTestClient.int16(0))
            try client.send("D", [UInt8(ascii: "P")] + PGTestClient.cString(""))
            try client.send("E", PGTestClient.cString("") + PGTestClient.int32(2))
            try client.send("E", PGTestClient.cString("") + PGTestClient.int32(2))
            try client.send("S", [])
            let answer = try client.readUntilReady()
            #expect(answer.types == "12TDDsDNCZ")
            #expect(answer.rows.count == 3)

            // Describe statement and the skip to Sync after an error: PGProtocolStateTests.
        }
    }

    /// The decoder's and the state's answers to each kind of bad bytes are in
    /// PGFrontendDecoderTests and PGProtocolStateTests; these two cases go through the whole
    /// pipeline (a lying length, and a startup that never completes, ended by the login timeout).
    @Test("bad bytes get an ErrorResponse or a closed connection; other connections keep working", arguments: [
        ("huge length", [UInt8(ascii: "Q")] + PGTestClient.int32(0x7FFF_FFFF)),
        ("truncated startup", PGTestClient.int32(20) + PGTestClient.int32(196_608)),
    ])
    func robustness(name: String, bytes: [UInt8]) async throws {
        try await withServerHarness(configure: { $0.loginTimeout = .seconds(2) }) { harness in
            let bad = try PGTestClient(port: harness.pgPort)
            try bad.connection.send(bytes: bytes)
            var closedOrError = false
            for _ in 0..<4 {
                guard let message = try? bad.read() else { closedOrError = true; break }
                if message.typeCharacter == "E" { closedOrError = true; break }
            }
            #expect(closedOrError, "\(name)")
            let good = try PGTestClient(port: harness.pgPort)
            #expect(try good.login(user: "analyst-a", password: TestWorkspace.demoKey).types.hasSuffix("Z"))
            #expect(try good.query("SELECT 1 AS one").rows == [["1"]])
        }
    }

    @Test("CancelRequest with the BackendKeyData stops the running query with 57014")
    func cancel() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            let login = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            let key = try #require(login.first { $0.typeCharacter == "K" })
            try client.send("Q", PGTestClient.cString("SELECT hex(zeroblob(4000000)) LIKE ('%' || hex(zeroblob(498)) || '1%')"))
            // A cancel that arrives before the query began is lost (as in PostgreSQL): wait until
            // the consumer has it in flight, then send one.
            let stats = try harness.authenticated()
            try waitUntil("the query in flight") {
                object(try stats.request(#"{"op":"stats"}"#))["in_flight"] as? Int == 1
            }
            try PGTestClient(port: harness.pgPort).connection.send(bytes: PGTestClient.int32(16) + PGTestClient.int32(80_877_102) + key.body)
            let answer = try client.readUntilReady()
            #expect(answer.error?["C"] == "57014")
            // Cancelled, not stopped by the 2 s time budget (whose message says timeout).
            #expect(answer.error?["M"]?.hasPrefix("cancelled: ") == true, "\(answer.error?["M"] ?? "")")
        }
    }

    @Test("a client that never reads its results is disconnected; others are answered meanwhile")
    func neverReads() async throws {
        try await withServerHarness(configure: { $0.unwritableTimeout = .seconds(1) }) { harness in
            let hog = try PGTestClient(port: harness.pgPort)
            _ = try hog.login(user: "analyst-a", password: TestWorkspace.demoKey)
            for _ in 0..<30 { try hog.send("Q", PGTestClient.cString("SELECT hex(zeroblob(1000000)) AS x")) }
            let other = try PGTestClient(port: harness.pgPort)
            _ = try other.login(user: "analyst-a", password: TestWorkspace.demoKey)
            #expect(try other.query("SELECT 1 AS one").rows == [["1"]])
            try waitUntil("the server closing the hog while the other client stays") { harness.server.connections == 1 }
            #expect(try other.query("SELECT 2 AS two").rows == [["2"]])
        }
    }

    @Test("a client pipelining thousands of Syncs does not stall another client's query")
    func pipelinedSyncs() async throws {
        try await withServerHarness { harness in
            // Each round: 20,000 Syncs in one write, then their 20,000 ReadyForQuery (6 bytes each).
            let count = 20_000
            let syncs = Array([[UInt8]](repeating: [UInt8(ascii: "S"), 0, 0, 0, 4], count: count).joined())
            let flood = Flood(connections: 1, connect: { port in
                let client = try PGTestClient(port: port)
                _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
                return client.connection
            }) { connection in
                try connection.send(bytes: syncs)
                guard try connection.read(count: 6 * count) != nil else { throw LineClient.ClientError(description: "closed") }
            }
            let other = try PGTestClient(port: harness.pgPort)
            _ = try other.login(user: "analyst-a", password: TestWorkspace.demoKey)
            try await flood.run(port: harness.pgPort) {
                try compareWithFlood(flood, count: 20, what: "20,000 pipelined Syncs") {
                    let rows = try other.query("SELECT 1 AS one").rows
                    #expect(rows == [["1"]])
                }
            }
        }
    }

    // MARK: Red-team findings (issue 8), each a test

    @Test("catalog queries: no PRAGMA, no SQLite functions that build large values, no pragma tables", arguments: [
        "pragma pg_catalog.hard_heap_limit = 100000",
        "SELECT length(printf('%.*c', 900000000, 'x')) FROM pg_class LIMIT 1",
        "SELECT sqlite_version() FROM pg_class",
        "SELECT * FROM pragma_compile_options, pg_class",
        "SELECT zeroblob(100000000) FROM pg_class",
    ])
    func catalogRefusals(sql: String) async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            let started = ContinuousClock.now
            let answer = try client.query(sql)
            #expect(answer.error != nil, "\(sql)")
            #expect(ContinuousClock.now - started < .seconds(1))
            // The gateway and its ledger are untouched: a data query over JSON lines still works.
            let json = try harness.authenticated()
            #expect(object(try json.request(#"{"op":"query","dataset":"retail","sql":"SELECT count(*) FROM customers"}"#))["ok"] as? Bool == true)
            #expect(try client.query("SELECT relname FROM pg_catalog.pg_class ORDER BY 1").rows == [["customers"], ["orders"]])
        }
    }

    @Test("portals and prepared statements per connection are capped; held results count against the consumer's unsent bytes")
    func portalCaps() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            try client.send("P", PGTestClient.cString("big") + PGTestClient.cString("SELECT hex(zeroblob(1000000)) AS x") + PGTestClient.int16(0))
            for index in 0..<17 {
                try client.send("B", PGTestClient.cString("p\(index)") + PGTestClient.cString("big") + PGTestClient.int16(0) + PGTestClient.int16(0) + PGTestClient.int16(0))
                try client.send("D", [UInt8(ascii: "P")] + PGTestClient.cString("p\(index)"))
            }
            try client.send("S", [])
            let answer = try client.readUntilReady()
            #expect(answer.error?["C"] == "53400", "\(answer.error ?? [:])")
            // Closing the connection releases what its portals held.
            try client.send("X", [])
            let other = try PGTestClient(port: harness.pgPort)
            _ = try other.login(user: "analyst-a", password: TestWorkspace.demoKey)
            // The close is processed on its own: wait until the consumer may query again.
            try waitUntil("the closed connection's bytes released", interval: .milliseconds(50)) {
                try other.query("SELECT 1 AS one").rows == [["1"]]
            }
        }
    }

    @Test("a consumer revoked while connected loses the catalog too")
    func revokedCatalog() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            #expect(try client.query("SELECT relname FROM pg_class").error == nil)
            try harness.workspace.write("consumers.yaml", TestWorkspace.kateConsumers)
            harness.gateway.reload()
            let answer = try client.query("SELECT relname FROM pg_class")
            #expect(answer.error?["C"] == "28P01")
            #expect(try client.query("SELECT 1 AS one").error?["C"] == "28P01")
        }
    }

    @Test("a portal executed again after its last row answers SELECT 0, with one usage notice in all")
    func reexecutedPortal() async throws {
        try await withServerHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey)
            try client.send("P", PGTestClient.cString("") + PGTestClient.cString("SELECT city FROM customers ORDER BY city LIMIT 3") + PGTestClient.int16(0))
            try client.send("B", PGTestClient.cString("p") + PGTestClient.cString("") + PGTestClient.int16(0) + PGTestClient.int16(0) + PGTestClient.int16(0))
            try client.send("E", PGTestClient.cString("p") + PGTestClient.int32(0))
            try client.send("E", PGTestClient.cString("p") + PGTestClient.int32(0))
            try client.send("S", [])
            let answer = try client.readUntilReady()
            let tags = answer.filter { $0.typeCharacter == "C" }.map { String(decoding: $0.body.dropLast(), as: UTF8.self) }
            #expect(tags == ["SELECT 3", "SELECT 0"])
            #expect(answer.filter { $0.typeCharacter == "N" }.count == 1)
        }
    }
}
