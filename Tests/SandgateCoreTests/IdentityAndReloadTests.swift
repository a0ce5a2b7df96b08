import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// issue 12 item 2: one canonical identity, compared as bytes.
@Suite struct IdentityTests {
    static let lookAlikes = ["\u{212A}ate", "Kate", "KATE", "ｋａｔｅ", "ka\u{301}te", "kate\u{200B}", "k\u{0430}te"]

    @Test("look-alike names never authenticate, even with the right key", arguments: lookAlikes)
    func lookAlikesAtAuthentication(name: String) throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        defer { withExtendedLifetime(workspace) {} }
        #expect(gateway.authenticate(consumer: "kate", key: TestWorkspace.demoKey) == "kate")
        #expect(gateway.authenticate(consumer: name, key: TestWorkspace.demoKey) == nil)
    }

    @Test("a look-alike name is refused by the gateway and recorded under its own bounded bytes, not charged to kate", arguments: lookAlikes)
    func lookAlikesAtTheGateway(name: String) throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        defer { withExtendedLifetime(workspace) {} }
        for _ in 0..<5 {
            #expect(gateway.query("SELECT city FROM customers LIMIT 2", as: name).error?.code == .authFailed)
        }
        #expect(gateway.query("SELECT city FROM customers LIMIT 2", as: "kate").error == nil)
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        #expect(records.filter { $0.consumer == "kate" }.count == 1, "only kate's own query is kate's")
        #expect(records.prefix(5).allSatisfy { Array($0.consumer.utf8) == Array(name.utf8) && $0.errorCode == "auth_failed" })
        #expect(try gateway.ledger.totals(consumer: "kate", dataset: "retail", at: gateway.configuration.now()).total.okQueries == 1)
    }

    @Test("a failed login's name is stored cut to 64 bytes")
    func failedLoginNameBounded() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        defer { withExtendedLifetime(workspace) {} }
        gateway.recordAuthenticationFailure(consumer: "a" + String(repeating: "\u{301}", count: 500_000), source: "127.0.0.1")
        var stored: UsageRecord?
        try gateway.ledger.records { stored = $0; return false }
        #expect(try #require(stored).consumer.utf8.count <= UsageRecord.nameLimit)
        #expect(try #require(stored).sql.isEmpty)
    }

    @Test("a 300 KB query is stored cut to 64 KiB by bytes; sql_sha256 is of the full text")
    func longSQLBounded() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        defer { withExtendedLifetime(workspace) {} }
        let sql = "SELECT '" + String(repeating: "王", count: 100_000) + "'"
        let response = gateway.query(sql, as: "kate")
        var stored: UsageRecord?
        try gateway.ledger.records { stored = $0; return false }
        let record = try #require(stored)
        #expect(record.queryID == response.usage.queryID)
        #expect(response.isOK, "\(String(describing: response.error))")
        #expect(record.sql.utf8.count <= UsageRecord.sqlLimit && record.sql.utf8.count > UsageRecord.sqlLimit - 4)
        #expect(record.sqlSHA256 == Gateway.sha256Hex(sql))
        #expect(record.rewrittenSQL.utf8.count <= UsageRecord.sqlLimit)
    }

    @Test("role: operator is known to the gateway")
    func roles() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        defer { withExtendedLifetime(workspace) {} }
        #expect(gateway.role(of: "ops") == .operator)
        #expect(gateway.role(of: "kate") == .consumer)
        #expect(gateway.role(of: "\u{212A}ate") == .consumer)
    }
}

/// issue 12 items 1 and 7: reloads that cannot fail open, and revocations that always apply.
@Suite struct ConsumerReloadTests {
    @Test("revoking a consumer takes effect while another consumer's entry is invalid")
    func revocationWithAnInvalidEntry() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT city FROM customers LIMIT 1", as: "kate").error == nil)
        // kate is removed; ops's entry is broken at the same time.
        try workspace.write("consumers.yaml", """
            consumers:
              ops:
                key_sha256: not-a-hash
                role: operator
                grants: {}
            """)
        let changes = gateway.reload()
        #expect(changes.contains { $0.contains("invalid parts keep their previous version") })
        #expect(gateway.query("SELECT city FROM customers LIMIT 1", as: "kate").error?.code == .authFailed)
        #expect(gateway.authenticate(consumer: "kate", key: TestWorkspace.demoKey) == nil)
        #expect(gateway.authenticate(consumer: "ops", key: TestWorkspace.demoKey) == "ops", "the invalid entry keeps its previous version")
    }

    @Test("red team: revoking a consumer takes effect even when a duplicate key makes the file unparsable", arguments: [
        "consumers:\n  ops:\n    key_sha256: HASH\n    role: operator\n    grants:\n      retail: { max_rows: 200, max_rows: 100 }\n",
        "consumers:\n  ops:\n    key_sha256: HASH\n    grants: {}\n  ops:\n    key_sha256: HASH\n    grants: {}\n",
    ])
    func revocationWithAnUnparsableFile(text: String) throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        #expect(gateway.authenticate(consumer: "kate", key: TestWorkspace.demoKey) == "kate")
        try workspace.write("consumers.yaml", text.replacing("HASH", with: TestWorkspace.demoKeyHash))
        gateway.reload()
        #expect(gateway.authenticate(consumer: "kate", key: TestWorkspace.demoKey) == nil, "kate was removed")
        #expect(gateway.query("SELECT city FROM customers LIMIT 1", as: "kate").error?.code == .authFailed)
        #expect(gateway.authenticate(consumer: "ops", key: TestWorkspace.demoKey) == "ops", "ops keeps its previous version")
    }

    /// The red team's layout: protective keys after others, so a prefix is valid and weaker.
    static let sealedPolicy = """
        dataset: retail
        source: ../retail.sqlite
        tables:
          customers:
            columns:
              city: {}
              phone:
                role: visible
                mask: phone_cn
            row_filter: status = 'active' AND city <> 'Beijing'
        ...
        """

    @Test("red team: once a file closed with '...' is in force, no prefix of its next version is put in force")
    func sealedPrefixes() throws {
        let workspace = try TestWorkspace(policy: Self.sealedPolicy)
        let gateway = try workspace.gateway()
        let protected = gateway.query("SELECT phone, city FROM customers")
        let rows = try #require(protected.result?.rows, "\(String(describing: protected.error))")
        func isProtected(_ row: [SQLValue]) -> Bool {
            guard case .text(let phone) = row[0], case .text(let city) = row[1] else { return false }
            return phone.contains("****") && city != "Beijing"
        }
        #expect(!rows.isEmpty && rows.allSatisfy(isProtected))
        let version = gateway.runtime("retail")?.policy.version
        let bytes = Array(Self.sealedPolicy.utf8)
        for length in stride(from: 1, to: bytes.count - 1, by: 2) {
            try String(decoding: bytes[..<length], as: UTF8.self).write(toFile: workspace.policies + "/retail.yaml", atomically: false, encoding: .utf8)
            gateway.reload()
            #expect(gateway.runtime("retail")?.policy.version == version, "a prefix of \(length) bytes was put in force")
            let now = gateway.query("SELECT phone, city FROM customers").result?.rows ?? []
            #expect(now.count == rows.count && now.allSatisfy(isProtected), "prefix of \(length) bytes changed what is released")
        }
        // The whole file (closed again) reloads as usual.
        try Self.sealedPolicy.replacing("city <> 'Beijing'", with: "city <> 'Shanghai'").write(toFile: workspace.policies + "/retail.yaml", atomically: true, encoding: .utf8)
        #expect(gateway.reload().contains { $0.hasPrefix("retail: policy") })
    }

    @Test("deleting a dataset file does not break the consumer file: its grants are warnings")
    func deletedDatasetGrant() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        try workspace.write("second.yaml", "source: ../retail.sqlite\ntables:\n  customers:\n    columns: { city: {} }\n")
        let withSecond = TestWorkspace.kateConsumers.replacing("daily_rows: 10 }", with: "daily_rows: 10 }\n      second: {}")
        try workspace.write("consumers.yaml", withSecond)
        let gateway = try workspace.gateway()
        #expect(gateway.query("SELECT city FROM customers LIMIT 1", as: "kate", dataset: "second").error == nil)
        try FileManager.default.removeItem(atPath: workspace.policies + "/second.yaml")
        // Now kate is narrowed at the same time: the narrowing must apply.
        try workspace.write("consumers.yaml", withSecond.replacing("max_rows: 5", with: "max_rows: 1"))
        gateway.reload()
        #expect(gateway.diagnostics.isEmpty, "\(gateway.diagnostics)")
        let response = gateway.query("SELECT city FROM customers LIMIT 3", as: "kate")
        #expect(response.result?.rowCount == 1)
    }

    @Test("an edit that empties a grant leaves the previous grant in force, never an unlimited one")
    func emptiedGrant() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.kateConsumers)
        let gateway = try workspace.gateway()
        try workspace.write("consumers.yaml", TestWorkspace.kateConsumers.replacing("retail: { max_rows: 5, daily_queries: 3, daily_rows: 10 }", with: "retail:"))
        gateway.reload()
        let response = gateway.query("SELECT city FROM customers LIMIT 50", as: "kate")
        #expect(response.result?.rowCount == 5)
    }

    @Test("the watcher reloads a changed file only after it stopped changing for the settle interval")
    func settleInterval() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let before = try #require(gateway.runtime("retail")).policy.version
        let settle: Duration = .seconds(1)
        // Polled by hand at chosen instants: the watcher's time is the test's, not the machine's.
        let watcher = PolicyWatcher(gateway: gateway, polling: nil, settle: settle)
        let start = ContinuousClock.now
        // Rewritten every 30 ms for 1.5 s (each version a different size): it never settles, so
        // nothing is reloaded.
        var now = start
        for step in 0..<50 {
            try workspace.write("retail.yaml", TestWorkspace.retailPolicy + "\n# edit \(String(repeating: "x", count: step))\n")
            now = start + .milliseconds(30 * step)
            watcher.poll(at: now)
            #expect(gateway.runtime("retail")?.policy.version == before, "reloaded while still changing (step \(step))")
        }
        watcher.poll(at: now + settle - .milliseconds(1))
        #expect(gateway.runtime("retail")?.policy.version == before, "reloaded before the last version settled")
        watcher.poll(at: now + settle)
        #expect(gateway.runtime("retail")?.policy.version != before, "reloaded once settled")
    }
}
