import Foundation
import SandgateSQLite
import Testing

/// Runs the built `sandgate` binary and compares its output and exit codes (DESIGN.md §4).
struct CLI {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var binary: URL {
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("sandgate"),
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("sandgate"),
            packageRoot.appendingPathComponent(".build/debug/sandgate"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[2]
    }

    struct Output {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func run(_ arguments: [String], in directory: String, environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var env = ProcessInfo.processInfo.environment
        env["SANDGATE_KEY"] = nil
        for (name, value) in environment { env[name] = value }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}

extension CLI {
    /// A `sandgate serve` running in `directory`, its banner as printed (read until "Ctrl-C", or
    /// until the process closes its output) and the JSON-lines port the banner names.
    struct Server {
        let process: Process
        let banner: String
        var port: Int? { banner.firstMatch(of: /127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) } }
    }

    /// Starts `sandgate serve` with `arguments` and waits for its banner. The caller stops it.
    static func serve(_ arguments: [String], in directory: String) throws -> Server {
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var banner = ""
        while !banner.contains("Ctrl-C") {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            banner += String(decoding: chunk, as: UTF8.self)
        }
        return Server(process: process, banner: banner)
    }
}

/// A scratch directory with the shipped demo policies and a small generated fixture.
final class CLIWorkspace {
    let root: String

    /// `rows`: customers in the fixture (the shipped policy tests need the demo's 5000).
    init(rows: Int = 300) throws {
        root = NSTemporaryDirectory() + "sandgate-cli-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/Fixtures", withIntermediateDirectories: true)
        try fm.copyItem(atPath: CLI.packageRoot.appendingPathComponent("Policies").path, toPath: root + "/Policies")
        let generated = try CLI.run(["fixtures", "generate", "--rows", String(rows), "--out", "Fixtures/retail.sqlite"], in: root)
        guard generated.status == 0 else { throw CLIError(generated.stderr) }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func run(_ arguments: String...) throws -> CLI.Output { try CLI.run(arguments, in: root) }

    /// Rewrites a file of the workspace by replacing `old` (which must occur) with `new`.
    func edit(_ path: String, replacing old: String, with new: String) throws {
        let url = URL(fileURLWithPath: root + "/" + path)
        let text = try String(contentsOf: url, encoding: .utf8)
        guard text.contains(old) else { throw CLIError("\(path) has no '\(old)'") }
        try text.replacingOccurrences(of: old, with: new).write(to: url, atomically: true, encoding: .utf8)
    }
}

struct CLIError: Error { let message: String; init(_ message: String) { self.message = message } }

@Suite struct CLITests {
    @Test("a query prints the §5 response object and exits 0")
    func queryJSON() throws {
        let workspace = try CLIWorkspace()
        let output = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "json",
                                       "SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY n DESC")
        #expect(output.status == 0, "\(output.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        #expect(object["columns"] as? [String] == ["city", "n"])
        #expect((object["rows"] as? [[Any]])?.isEmpty == false)
        #expect(object["truncated"] as? Bool == false)
        let usage = try #require(object["usage"] as? [String: Any])
        for key in ["query_id", "rows", "cells", "bytes", "masked_cells", "suppressed_groups", "vm_steps", "elapsed_ms", "cost_micros", "currency"] {
            #expect(usage[key] != nil, "usage.\(key)")
        }
    }

    @Test("a refused query exits 1 with the code on stderr and ok:false in JSON")
    func refusal() throws {
        let workspace = try CLIWorkspace()
        let json = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "json", "SELECT salary FROM customers")
        #expect(json.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == false)
        #expect((object["error"] as? [String: Any])?["code"] as? String == "no_such_column")
        let table = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "PRAGMA table_info(customers)")
        #expect(table.status == 1)
        #expect(table.stderr.contains("not_a_select"))
    }

    @Test("table and csv formats")
    func formats() throws {
        let workspace = try CLIWorkspace()
        let table = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT name, phone FROM customers LIMIT 2")
        #expect(table.status == 0)
        #expect(table.stdout.contains("| name"))
        #expect(table.stdout.contains("****"))
        let csv = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "csv", "SELECT city FROM customers LIMIT 2")
        #expect(csv.stdout.hasPrefix("city\r\n"))
        #expect(csv.stdout.components(separatedBy: "\r\n").count == 4)
    }

    @Test("bad usage exits 2", arguments: [
        ["query"], ["query", "--dataset", "retail", "SELECT 1"], ["nonsense"], ["fixtures", "generate", "--rows", "0", "--out", "x.sqlite"],
        ["fixtures", "generate", "--rows", "abc", "--out", "x.sqlite"], ["usage", "export", "--from", "yesterday", "--to", "2026-01-01", "--format", "csv"],
        ["usage", "export", "--from", "2026-01-01", "--to", "2026-01-01", "--format", "xml"],
        ["query", "--dataset", "retail", "--as", "analyst-a", "--format", "yaml", "SELECT 1"],
    ])
    func badUsage(arguments: [String]) throws {
        let workspace = try CLIWorkspace()
        let output = try CLI.run(arguments, in: workspace.root)
        #expect(output.status == 2, "\(arguments): \(output.stderr)")
    }

    @Test("--help exits 0")
    func help() throws {
        let output = try CLI.run(["--help"], in: NSTemporaryDirectory())
        #expect(output.status == 0)
        #expect(output.stdout.contains("query"))
    }

    @Test("policy check prints file:line:column and exits 1 on a broken policy")
    func policyCheck() throws {
        let workspace = try CLIWorkspace()
        #expect(try workspace.run("policy", "check").status == 0)
        let path = workspace.root + "/Policies/retail.yaml"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacing("phone:       { mask: phone_cn }", with: "phone:       { mask: phone_xx }")
        text = text.replacing("city:        {}", with: "cityy:       {}")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let output = try workspace.run("policy", "check", "Policies")
        #expect(output.status == 1)
        #expect(output.stdout.contains("retail.yaml:24:28: unknown mask preset 'phone_xx'"), "\(output.stdout)")
        // The data check runs only on a structurally valid policy; fix the preset to see it.
        try text.replacing("phone_xx", with: "phone_cn").write(toFile: path, atomically: true, encoding: .utf8)
        let second = try workspace.run("policy", "check")
        #expect(second.stdout.contains("retail.yaml:27:7: column 'cityy' does not exist in table 'customers'"), "\(second.stdout)")
    }

    @Test("usage export writes CSV and JSONL; verify checks the chain")
    func usageExport() throws {
        let workspace = try CLIWorkspace()
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT 1")
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT nope FROM customers")
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        let csv = try workspace.run("usage", "export", "--from", today, "--to", today, "--format", "csv")
        #expect(csv.status == 0)
        let lines = csv.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("node_id,seq,query_id,started_at,finished_at,consumer,dataset"))
        let jsonl = try workspace.run("usage", "export", "--from", today, "--to", today, "--consumer", "analyst-a", "--format", "jsonl", "--out", "usage.jsonl")
        #expect(jsonl.status == 0)
        let exported = try String(contentsOfFile: workspace.root + "/usage.jsonl", encoding: .utf8)
        #expect(exported.split(separator: "\n").count == 2)
        #expect(try workspace.run("usage", "verify").stdout.contains("ok"))
    }

    @Test("explain prints the SQL that would run and charges nothing")
    func explain() throws {
        let workspace = try CLIWorkspace()
        let output = try workspace.run("explain", "--dataset", "retail", "--as", "analyst-a", "SELECT channel, count(*) FROM orders GROUP BY channel")
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("SQL that would run"))
        #expect(output.stdout.contains("__sg_tally(count(DISTINCT \"orders\".\"__sg_unit\"), 10)"))
        let refused = try workspace.run("explain", "--dataset", "retail", "--as", "analyst-a", "--format", "json", "SELECT * FROM orders")
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("\"code\":\"aggregate_required\""))
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        let usage = try workspace.run("usage", "export", "--from", today, "--to", today, "--format", "csv")
        #expect(usage.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 1)
    }

    @Test("serve answers a remote query like the local command, and stops cleanly on SIGTERM")
    func serveAndRemoteQuery() throws {
        let workspace = try CLIWorkspace()
        let serving = try CLI.serve(["--listen", "127.0.0.1:0"], in: workspace.root)
        let server = serving.process
        defer { if server.isRunning { server.terminate() } }
        // The banner names the port that was bound.
        let port = try #require(serving.port)
        let sql = "SELECT name, phone, city FROM customers ORDER BY city LIMIT 5"
        let local = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "csv", sql)
        let remote = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--dataset", "retail", "--as", "analyst-a", "--format", "csv", sql],
                                 in: workspace.root, environment: ["SANDGATE_KEY": "sg_demo_analyst_a_2026"])
        #expect(remote.status == 0, "\(remote.stderr)")
        #expect(remote.stdout == local.stdout)
        // Remote parity: the table, the usage line (VM steps, withheld groups, truncation), doubles
        // to the last digit, and refusals with their hints are what the local command prints.
        func normalized(_ text: String) -> String {
            text.replacing(/query [0-9a-f]{32}/, with: "query Q").replacing(/[0-9.]+ ms/, with: "T ms")
        }
        for sql in ["SELECT c.city, count(*) AS n, avg(o.amount) AS a FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY n DESC",
                    "SELECT name, birth_date FROM customers", "SELECT salary FROM customers"] {
            let here = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", sql)
            let there = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--dataset", "retail", "--as", "analyst-a", sql],
                                    in: workspace.root, environment: ["SANDGATE_KEY": "sg_demo_analyst_a_2026"])
            #expect(normalized(there.stdout) == normalized(here.stdout), "\(sql)")
            #expect(there.stderr == here.stderr && there.status == here.status, "\(sql)")
        }
        let refused = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--dataset", "retail", "--as", "analyst-a", "SELECT salary FROM customers"],
                                  in: workspace.root, environment: ["SANDGATE_KEY": "sg_demo_analyst_a_2026"])
        #expect(refused.status == 1 && refused.stderr.contains("no_such_column") && refused.stderr.contains("hint: columns here"))
        let wrongKey = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--dataset", "retail", "--as", "analyst-a", "SELECT 1"],
                                   in: workspace.root, environment: ["SANDGATE_KEY": "nope"])
        #expect(wrongKey.status == 1 && wrongKey.stderr.contains("auth_failed"))
        let noKey = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--dataset", "retail", "--as", "analyst-a", "SELECT 1"], in: workspace.root)
        #expect(noKey.status == 2)
        server.terminate()
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
    }

    @Test("consumer add prints a key once, stores only its hash, and the key works")
    func consumerAdd() throws {
        let workspace = try CLIWorkspace()
        let added = try workspace.run("consumer", "add", "analyst-c", "--grant", "retail", "--max-rows", "5")
        #expect(added.status == 0, "\(added.stderr)")
        let key = try #require(added.stdout.firstMatch(of: /sg_[0-9a-f]{64}/).map { String($0.0) })
        let file = try String(contentsOfFile: workspace.root + "/Policies/consumers.yaml", encoding: .utf8)
        #expect(!file.contains(key))
        #expect(file.contains("analyst-c:"))
        #expect(try workspace.run("policy", "check").status == 0)
        #expect(try workspace.run("consumer", "add", "analyst-c", "--grant", "retail").status == 1)
        #expect(try workspace.run("consumer", "add", "analyst-d", "--grant", "nowhere").status == 1)
        #expect(try workspace.run("consumer", "add", "bad name!", "--grant", "retail").status == 2)
        let rows = try workspace.run("query", "--dataset", "retail", "--as", "analyst-c", "--format", "csv", "SELECT city FROM customers")
        #expect(rows.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 6)
    }

    @Test("consumer add refuses look-alike names (Kelvin sign, fullwidth, combining, upper case)", arguments: [
        "\u{212A}ate", "ｋａｔｅ", "ka\u{301}te", "Kate", "KATE",
    ])
    func consumerAddLookAlikes(name: String) throws {
        let workspace = try CLIWorkspace()
        let output = try workspace.run("consumer", "add", name, "--grant", "retail")
        #expect(output.status == 2, "\(output.stderr)")
        #expect(output.stderr.contains("a-z, 0-9"))
        let text = try String(contentsOfFile: workspace.root + "/Policies/consumers.yaml", encoding: .utf8)
        #expect(!text.contains(name))
    }

    @Test("policy check prints warnings and still exits 0; truncating the ledger fails usage verify")
    func warningsAndTruncation() throws {
        let workspace = try CLIWorkspace()
        let check = try workspace.run("policy", "check")
        #expect(check.status == 0)
        #expect(check.stdout.contains("retail.yaml:37:67: warning: min on measure 'orders.amount' releases one individual's value"), "\(check.stdout)")
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT 1")
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT 2")
        #expect(try workspace.run("usage", "verify").status == 0)
        try Connection(path: workspace.root + "/var/usage.sqlite", mode: .readWrite).execute("DELETE FROM usage WHERE seq = 2")
        let verify = try workspace.run("usage", "verify")
        #expect(verify.status == 1 && verify.stderr.contains("truncated"), "\(verify.stderr)")
        // Without its key the ledger cannot verify, and verify does not make a new one.
        try FileManager.default.removeItem(atPath: workspace.root + "/var/usage.key")
        let keyless = try workspace.run("usage", "verify")
        #expect(keyless.status == 1 && keyless.stderr.contains("key"), "\(keyless.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/var/usage.key"))
    }

    @Test("usage invoice sums the period per consumer × dataset and refuses a tampered ledger")
    func invoice() throws {
        let workspace = try CLIWorkspace()
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT city FROM customers LIMIT 3")
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT city FROM customers LIMIT 2")
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT salary FROM customers")
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        let csv = try workspace.run("usage", "invoice", "--from", today, "--to", today, "--format", "csv")
        #expect(csv.status == 0, "\(csv.stderr)")
        let lines = csv.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.first == "consumer,dataset,purpose,currency,queries,refused,failed,rows,vm_steps,cost_micros,epsilon_micros")
        #expect(lines.count == 2)
        #expect(lines[1].hasPrefix("analyst-a,retail,,CNY,2,1,0,5,"))
        let json = try workspace.run("usage", "invoice", "--from", today, "--to", today, "--format", "json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let line = try #require((object["lines"] as? [[String: Any]])?.first)
        // + per_mib for each query's few result bytes, rounded up to 1 micro-unit.
        #expect(line["cost_micros"] as? Int == 2 * 1000 + 5 * 20 + 2 * 500 + 2 * 1)
        // Red team: the charges of a dataset no longer published (or a wrong --policies) stay billed.
        try FileManager.default.moveItem(atPath: workspace.root + "/Policies/retail.yaml", toPath: workspace.root + "/retail.yaml.unpublished")
        let unpublished = try workspace.run("usage", "invoice", "--from", today, "--to", today, "--format", "csv")
        #expect(unpublished.status == 0 && unpublished.stdout.contains("analyst-a,retail,,CNY,2,1,0,5,"), "\(unpublished.stdout) \(unpublished.stderr)")
        let elsewhere = try workspace.run("usage", "invoice", "--from", today, "--to", today, "--format", "csv", "--policies", "does-not-exist")
        #expect(elsewhere.stdout.contains("analyst-a,retail,,CNY,2,1,0,5,"), "\(elsewhere.stdout) \(elsewhere.stderr)")
        // Tamper with the ledger: no invoice.
        try Connection(path: workspace.root + "/var/usage.sqlite", mode: .readWrite).execute("UPDATE usage SET cost_micros = 0 WHERE seq = 1")
        let refused = try workspace.run("usage", "invoice", "--from", today, "--to", today, "--format", "csv")
        #expect(refused.status == 1 && refused.stderr.contains("seq 1"))
    }

    @Test("describe shows the consumer's view only")
    func describe() throws {
        let workspace = try CLIWorkspace()
        let output = try workspace.run("describe", "--dataset", "retail", "--as", "analyst-a")
        #expect(output.status == 0)
        #expect(output.stdout.contains("phone"))
        #expect(output.stdout.contains("max_rows 200"))
        #expect(!output.stdout.contains("salary"))
        #expect(!output.stdout.contains("status = 'active'"))
    }
}
