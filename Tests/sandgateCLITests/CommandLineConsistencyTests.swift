import Foundation
import Testing

/// One spelling per format, default periods, and a server that says how to use it and what to
/// change when its port is taken (issue 11).
@Suite struct CommandLineConsistencyTests {
    @Test("csv, jsonl and json mean the same in query, usage export and usage invoice")
    func formats() throws {
        let workspace = try CLIWorkspace()
        let query = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "jsonl",
                                      "SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY city LIMIT 2")
        #expect(query.status == 0, "\(query.stderr)")
        let rows = query.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rows.count == 2 && rows.allSatisfy { $0?["city"] is String && $0?["n"] is Int })
        #expect(query.stderr.contains("row(s)"))
        // Today's records, with the period defaulted (first of the month … today).
        let export = try workspace.run("usage", "export", "--format", "json")
        #expect(export.status == 0, "\(export.stderr)")
        let records = try #require(try JSONSerialization.jsonObject(with: Data(export.stdout.utf8)) as? [[String: Any]])
        #expect(records.count == 1 && records.first?["consumer"] as? String == "analyst-a")
        let jsonl = try workspace.run("usage", "export", "--format", "jsonl")
        #expect(jsonl.stdout.split(separator: "\n").count == 1)
        let invoice = try workspace.run("usage", "invoice", "--format", "jsonl")
        #expect(invoice.status == 0, "\(invoice.stderr)")
        let line = try #require(try JSONSerialization.jsonObject(with: Data(invoice.stdout.utf8)) as? [String: Any])
        #expect(line["queries"] as? Int == 1)
        let json = try workspace.run("usage", "invoice", "--format", "json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        #expect(object["from"] as? String == String(today.prefix(8)) + "01" && object["to"] as? String == today)
        #expect(try workspace.run("usage", "invoice").stdout.hasPrefix("consumer,dataset,purpose,currency"))
        let wrong = try workspace.run("usage", "export", "--format", "table")
        #expect(wrong.status == 2 && wrong.stderr.contains("--format must be csv, jsonl, json"))
        let reversed = try workspace.run("usage", "export", "--from", "2026-12-02", "--to", "2026-12-01")
        #expect(reversed.status == 2 && reversed.stderr.contains("is after --to"))
    }

    @Test("serve prints a copy-paste query line with the demo key, and a taken port names --listen")
    func serveMessages() throws {
        let workspace = try CLIWorkspace()
        let serving = try CLI.serve(["--listen", "127.0.0.1:0"], in: workspace.root)
        let server = serving.process
        defer { if server.isRunning { server.terminate() } }
        let banner = serving.banner
        let port = try #require(serving.port)
        let line = try #require(banner.split(separator: "\n").first { $0.contains("SANDGATE_KEY=sg_demo_analyst_a_2026") })
        #expect(line.contains("query --connect 127.0.0.1:\(port) --as analyst-a --dataset retail \"SELECT * FROM customers LIMIT 5\""))
        // The line works as printed (the program path aside).
        let remote = try CLI.run(["query", "--connect", "127.0.0.1:\(port)", "--as", "analyst-a", "--dataset", "retail", "SELECT * FROM customers LIMIT 5"],
                                 in: workspace.root, environment: ["SANDGATE_KEY": "sg_demo_analyst_a_2026"])
        #expect(remote.status == 0, "\(remote.stderr)")
        // Its own state directory: the first server holds this one (ServeLockTests).
        let second = try workspace.run("serve", "--listen", "127.0.0.1:\(port)", "--state", "var-second")
        #expect(second.status == 1)
        #expect(second.stderr.contains("127.0.0.1:\(port) is already in use") && second.stderr.contains("--listen"), "\(second.stderr)")
        server.terminate()
        server.waitUntilExit()
    }
}

/// `describe` in words, and the function list from the allowlist.
@Suite struct DescribeCommandTests {
    @Test("describe shows type, role and mask in words; --functions lists the allowlist")
    func describe() throws {
        let workspace = try CLIWorkspace()
        let output = try workspace.run("describe", "--as", "analyst-a")
        #expect(output.status == 0)
        #expect(output.stdout.contains("    birth_date  TEXT  visible  masked: year only (YYYY-01-01)\n"), "\(output.stdout)")
        #expect(output.stdout.contains("    city  TEXT  visible\n"))
        #expect(output.stdout.contains("    amount  REAL  measure  aggregates: count, sum, avg, min, max\n"))
        let functions = try workspace.run("describe", "--functions")
        #expect(functions.status == 0)
        #expect(functions.stdout.contains("`strftime`") && functions.stdout.contains("`printf`") && !functions.stdout.contains("load_extension"))
    }
}
