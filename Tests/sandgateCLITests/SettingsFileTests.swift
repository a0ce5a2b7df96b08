import Foundation
import SandgateLedgerPostgres
import SandgateTestSupport
import Testing

/// `sandgate.yaml` beside the policies names the shared ledger for every command (issue 9).
@Suite struct SettingsFileTests {
    @Test("a broken sandgate.yaml is an error with file:line:column, never a silent fallback to the local ledger")
    func brokenSettings() throws {
        let workspace = try CLIWorkspace()
        try "ledger: mysql://somewhere/db\n".write(toFile: workspace.root + "/Policies/sandgate.yaml", atomically: true, encoding: .utf8)
        let check = try workspace.run("policy", "check")
        #expect(check.status != 0)
        #expect(check.stdout.contains("Policies/sandgate.yaml:1:9: ledger must be postgres://"), "\(check.stdout)")
        let query = try workspace.run("query", "--as", "analyst-a", "--dataset", "retail", "SELECT count(*) FROM customers")
        #expect(query.status != 0 && query.stderr.contains("sandgate.yaml:1:9"), "\(query.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/var/usage.sqlite"))
        try "ledgr: postgres://u@h:1/d\n".write(toFile: workspace.root + "/Policies/sandgate.yaml", atomically: true, encoding: .utf8)
        let typo = try workspace.run("policy", "check")
        #expect(typo.stdout.contains("sandgate.yaml:1:1: unknown key 'ledgr'") && typo.stdout.contains("did you mean 'ledger'?"), "\(typo.stdout)")
        // It is not a dataset policy: removing it leaves a clean check.
        try FileManager.default.removeItem(atPath: workspace.root + "/Policies/sandgate.yaml")
        #expect(try workspace.run("policy", "check").status == 0)
    }

    @Test("--node-id with the SQLite ledger is bad usage, not silently ignored")
    func nodeIDNeedsSharedLedger() throws {
        let workspace = try CLIWorkspace()
        let query = try CLI.run(["query", "--as", "analyst-a", "--dataset", "retail", "--node-id", "cli-1", "SELECT count(*) FROM customers"],
                                in: workspace.root)
        #expect(query.status == 2, "\(query.stdout) \(query.stderr)")
        #expect(query.stderr.contains("--node-id applies to a PostgreSQL ledger") && query.stderr.contains("has its own node id"), "\(query.stderr)")
        #expect(try workspace.run("usage", "export", "--node-id", "x").status == 2)
        #expect(try workspace.run("query", "--as", "analyst-a", "--dataset", "retail", "SELECT count(*) FROM customers").status == 0)
    }

    @Test("a ledger URL with a query string or a fragment is refused, never connected without its options",
          arguments: ["?sslmode=require", "?options=-c%20search_path%3Dx", "#x", "?"])
    func ledgerURLOptions(suffix: String) throws {
        let workspace = try CLIWorkspace()
        let url = "postgres://sandgate@127.0.0.1:1/ledger" + suffix
        let flag = try workspace.run("usage", "verify", "--ledger", url)
        #expect(flag.status == 2 && flag.stderr.contains("with no ?query or #fragment"), "\(flag.stderr)")
        try "ledger: \(url)\n".write(toFile: workspace.root + "/Policies/sandgate.yaml", atomically: true, encoding: .utf8)
        let check = try workspace.run("policy", "check")
        #expect(check.status != 0 && check.stdout.contains("sandgate.yaml:1:9: ledger must be postgres://user@host:port/database, with no ?query or #fragment"),
                "\(check.stdout)")
        let query = try workspace.run("usage", "verify")
        #expect(query.status != 0 && query.stderr.contains("sandgate.yaml:1:9"), "\(query.stderr)")
    }

    @Test("ledger: in sandgate.yaml sends query, export and verify to the PostgreSQL ledger; --ledger still wins", .needsPostgres)
    func sharedLedgerFromSettings() throws {
        let server = try PostgresTestServer.shared()
        let workspace = try CLIWorkspace()
        let url = "postgres://sandgate@127.0.0.1:\(server.port)/\(try server.makeDatabase().database)"
        try "# shared by every node\nledger: \(url)\n...\n".write(toFile: workspace.root + "/Policies/sandgate.yaml", atomically: true, encoding: .utf8)
        #expect(try workspace.run("policy", "check").status == 0)
        let query = try CLI.run(["query", "--as", "analyst-a", "--dataset", "retail", "--node-id", "cli-1", "SELECT count(*) FROM customers"],
                                in: workspace.root, environment: ["SANDGATE_KEY": "sg_demo_analyst_a_2026"])
        #expect(query.status == 0, "\(query.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/var/usage.sqlite"))
        let export = try workspace.run("usage", "export", "--format", "jsonl")
        #expect(export.status == 0 && export.stdout.contains("\"node_id\":\"cli-1\""), "\(export.stdout) \(export.stderr)")
        let verify = try workspace.run("usage", "verify")
        #expect(verify.status == 0 && verify.stdout.contains("every node's keyed hash chain"), "\(verify.stdout) \(verify.stderr)")
        // Archives: never into the open month (its records count against quotas); up to its first day they may.
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        let refused = try workspace.run("usage", "archive", "--before", today, "--out", "a.sqlite")
        let firstOfMonth = String(today.prefix(8)) + "01"
        if today != firstOfMonth {
            #expect(refused.status != 0 && refused.stderr.contains("current month"), "\(refused.stderr)")
        }
        let archived = try workspace.run("usage", "archive", "--before", firstOfMonth, "--out", "b.sqlite")
        #expect(archived.status == 0 && archived.stdout.contains("nothing to move"), "\(archived.stdout) \(archived.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/b.sqlite"))
        // --ledger beats the file: the same export against an empty database finds nothing.
        let other = "postgres://sandgate@127.0.0.1:\(server.port)/\(try server.makeDatabase().database)"
        let empty = try workspace.run("usage", "export", "--format", "jsonl", "--ledger", other)
        #expect(empty.status == 0 && empty.stdout.isEmpty, "\(empty.stdout) \(empty.stderr)")
    }
}

@Suite struct ServeLockTests {
    /// Red team (issue 10): two servers on one state directory kept separate quota and ε holds
    /// and overspent a budget by half. The second one now refuses to start.
    @Test("a second serve on the same state directory refuses to start and names the problem")
    func secondServerRefused() throws {
        let workspace = try CLIWorkspace()
        let serving = try CLI.serve(["--listen", "127.0.0.1:0", "--workers", "1"], in: workspace.root)
        let first = serving.process
        defer { first.interrupt(); first.waitUntilExit() }
        #expect(serving.banner.contains("JSON lines"))
        let second = try workspace.run("serve", "--listen", "127.0.0.1:0", "--workers", "1")
        #expect(second.status != 0 && second.stderr.contains("another `sandgate serve` is using the state directory"), "\(second.stderr)")
    }
}
