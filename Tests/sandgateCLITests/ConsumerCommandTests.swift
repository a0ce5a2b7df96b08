import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `sandgate consumer add | grant | revoke | list | rotate-key`: text edits of consumers.yaml that
/// keep the operator's comments and layout, refuse bad input without writing, and reach a running
/// gateway within a second.
@Suite struct ConsumerCommandTests {
    /// A file with comments in every place an operator puts them.
    static let commented = """
        # Who may query what. Reviewed by the data office every quarter.
        consumers:
          # The demo analyst.
          analyst-a:
            key_sha256: 6bb56d625fcacc9ddaccb061059da36258626a722718ab67ee8ff0ca2657dd2a
            grants:
              retail: { max_rows: 200, daily_queries: 1000 }   # agreed 2026-10
          # Finance: no grants until the contract is signed.
          finance:
            key_sha256: 1db41e4d7854a958fd3c87aadce961438b497de04445012a4bbf470fe583b1eb   # rotated 2026-11
            grants: {}   # nothing yet

        # Nothing below this line.
        ...

        """

    static func workspace(_ consumers: String = commented) throws -> CLIWorkspace {
        let workspace = try CLIWorkspace()
        try consumers.write(toFile: workspace.root + "/Policies/consumers.yaml", atomically: true, encoding: .utf8)
        return workspace
    }

    static func text(_ workspace: CLIWorkspace) throws -> String {
        try String(contentsOfFile: workspace.root + "/Policies/consumers.yaml", encoding: .utf8)
    }

    @Test("grant then revoke gives back the file byte for byte; every comment survives each step")
    func roundTrip() throws {
        let workspace = try Self.workspace()
        let comments = Self.commented.split(separator: "\n").compactMap { line in line.firstIndex(of: "#").map { String(line[$0...]) } }
        let granted = try workspace.run("consumer", "grant", "finance", "retail", "--max-rows", "50", "--daily-rows", "500")
        #expect(granted.status == 0, "\(granted.stderr)")
        let afterGrant = try Self.text(workspace)
        #expect(afterGrant.contains("""
                grants:   # nothing yet
                  retail: { max_rows: 50, daily_rows: 500 }
            """), "\(afterGrant)")
        for comment in comments { #expect(afterGrant.contains(comment), "lost: \(comment)") }
        #expect(try workspace.run("policy", "check").status == 0)
        // Changing one limit keeps the others (and the comment after the grant).
        #expect(try workspace.run("consumer", "grant", "analyst-a", "retail", "--daily-queries", "10").status == 0)
        #expect(try Self.text(workspace).contains("      retail: { max_rows: 200, daily_queries: 10 }   # agreed 2026-10"))
        #expect(try workspace.run("consumer", "grant", "analyst-a", "retail", "--daily-queries", "1000").status == 0)
        let revoked = try workspace.run("consumer", "revoke", "finance", "retail")
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(try Self.text(workspace) == Self.commented)
    }

    @Test("grant --purpose writes the grant's purposes; a later change of limits keeps them; purposes with limits are left to the editor")
    func grantPurposes() throws {
        let workspace = try Self.workspace()
        let granted = try workspace.run("consumer", "grant", "analyst-a", "retail", "--purpose", "credit_risk", "--purpose", "public_health_research")
        #expect(granted.status == 0, "\(granted.stderr)")
        #expect(try Self.text(workspace).contains("      retail: { max_rows: 200, daily_queries: 1000, purposes: [credit_risk, public_health_research] }   # agreed 2026-10"))
        #expect(try workspace.run("consumer", "grant", "analyst-a", "retail", "--max-rows", "20").status == 0)
        #expect(try Self.text(workspace).contains("      retail: { max_rows: 20, daily_queries: 1000, purposes: [credit_risk, public_health_research] }"))
        #expect(try workspace.run("policy", "check").status == 0)
        let bad = try workspace.run("consumer", "grant", "analyst-a", "retail", "--purpose", "Credit Risk")
        #expect(bad.status == 2 && bad.stderr.contains("is not a purpose name"))
        try workspace.edit("Policies/consumers.yaml", replacing: "purposes: [credit_risk, public_health_research]", with: "purposes: { credit_risk: { max_rows: 5 } }")
        let mapped = try workspace.run("consumer", "grant", "analyst-a", "retail", "--max-rows", "30")
        #expect(mapped.status != 0 && mapped.stderr.contains("lists purposes with limits; edit consumers.yaml by hand"), "\(mapped.stderr)")
    }

    @Test("add, rotate-key and revoke --all edit only their own lines")
    func addRotateRemove() throws {
        let workspace = try Self.workspace()
        let added = try workspace.run("consumer", "add", "carol", "--grant", "retail", "--daily-queries", "5")
        #expect(added.status == 0, "\(added.stderr)")
        let key = try #require(added.stdout.firstMatch(of: /sg_[0-9a-f]{64}/).map { String($0.0) })
        var text = try Self.text(workspace)
        #expect(!text.contains(key))
        #expect(text.contains("    grants: {}   # nothing yet\n  carol:\n    key_sha256: "), "\(text)")
        // The key's SCRAM verifier for PostgreSQL logins is written beside its hash.
        #expect(text.contains(try Regex(#"  carol:\n    key_sha256: [0-9a-f]{64}\n    scram_sha256: "SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"\n"#)), "\(text)")
        #expect(text.contains("      retail: { daily_queries: 5 }\n\n# Nothing below this line.\n...\n"), "\(text)")
        let rotated = try workspace.run("consumer", "rotate-key", "finance")
        #expect(rotated.status == 0)
        let newKey = try #require(rotated.stdout.firstMatch(of: /sg_[0-9a-f]{64}/).map { String($0.0) })
        text = try Self.text(workspace)
        #expect(!text.contains(newKey) && !text.contains("1db41e4d7854a958"))
        // Rotation writes the new key's verifier (the old one would keep the old key working over pgwire).
        #expect(text.contains(try Regex(#"  finance:\n    key_sha256: [0-9a-f]{64}   # rotated 2026-11\n    scram_sha256: "SCRAM-SHA-256\$"#)), "\(text)")
        #expect(text.contains("   # rotated 2026-11\n"))
        #expect(try workspace.run("consumer", "revoke", "carol", "--all").status == 0)
        #expect(try workspace.run("consumer", "revoke", "finance", "--all").status == 0)
        text = try Self.text(workspace)
        #expect(text.hasPrefix("# Who may query what. Reviewed by the data office every quarter.\nconsumers:\n  # The demo analyst.\n  analyst-a:"))
        #expect(text.hasSuffix("      retail: { max_rows: 200, daily_queries: 1000 }   # agreed 2026-10\n\n# Nothing below this line.\n...\n"), "\(text)")
        #expect(try workspace.run("policy", "check").status == 0)
    }

    @Test("bad input is refused and nothing is written", arguments: [
        (["grant", "nobody", "retail"], Int32(1), "no consumer named 'nobody'"),
        (["grant", "finance", "nowhere"], 1, "no policy file for dataset 'nowhere'"),
        (["revoke", "finance", "retail"], 1, "has no grant for dataset 'retail'"),
        (["grant", "finance", "retail", "--max-rows", "0"], 1, "max_rows must be between 1"),
        (["grant", "finance", "retail", "--max-rows=-4"], 2, "must not be negative"),
        (["add", "analyst-a", "--grant", "retail"], 1, "exists already"),
        (["add", "Bad", "--grant", "retail"], 2, "a-z, 0-9"),
        (["rotate-key", "nobody"], 1, "no consumer named 'nobody'"),
        (["revoke", "finance"], 2, "--all"),
        (["grant", "finance", "retail: {}\n  evil"], 2, "is not a valid name"),
    ])
    func refused(arguments: [String], status: Int32, message: String) throws {
        let workspace = try Self.workspace()
        let output = try CLI.run(["consumer"] + arguments, in: workspace.root)
        #expect(output.status == status, "\(output.stderr)")
        #expect(output.stderr.contains(message), "\(output.stderr)")
        #expect(try Self.text(workspace) == Self.commented)
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.root + "/Policies").allSatisfy { !$0.hasSuffix(".tmp") })
    }

    @Test("a layout the editor cannot change safely is refused, not reformatted")
    func flowEntryRefused() throws {
        let flow = Self.commented.replacingOccurrences(
            of: "  finance:\n    key_sha256: 1db41e4d7854a958fd3c87aadce961438b497de04445012a4bbf470fe583b1eb   # rotated 2026-11\n    grants: {}   # nothing yet\n",
            with: "  finance: { key_sha256: 1db41e4d7854a958fd3c87aadce961438b497de04445012a4bbf470fe583b1eb, grants: {} }\n")
        #expect(flow != Self.commented)
        let workspace = try Self.workspace(flow)
        let output = try workspace.run("consumer", "grant", "finance", "retail")
        #expect(output.status == 1)
        #expect(output.stderr.contains("flow style"), "\(output.stderr)")
        #expect(try Self.text(workspace) == flow)
        // Other entries of the same file can still be edited.
        #expect(try workspace.run("consumer", "grant", "analyst-a", "retail", "--max-rows", "20").status == 0)
    }

    @Test("a consumers.yaml with problems is not edited")
    func brokenFileNotEdited() throws {
        let broken = Self.commented.replacingOccurrences(of: "daily_queries: 1000", with: "daily_queries: lots")
        let workspace = try Self.workspace(broken)
        let output = try workspace.run("consumer", "grant", "finance", "retail")
        #expect(output.status == 1)
        #expect(output.stderr.contains("has problems") && output.stderr.contains("daily_queries must be an integer"))
        #expect(try Self.text(workspace) == broken)
    }

    @Test("commands run at the same time lose no edit")
    func concurrentEdits() throws {
        let workspace = try Self.workspace()
        let processes = try (0..<8).map { index -> Process in
            let process = Process()
            process.executableURL = CLI.binary
            process.arguments = ["consumer", "add", "user\(index)", "--grant", "retail"]
            process.currentDirectoryURL = URL(fileURLWithPath: workspace.root)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        for process in processes { process.waitUntilExit() }
        #expect(processes.allSatisfy { $0.terminationStatus == 0 })
        let text = try Self.text(workspace)
        for index in 0..<8 { #expect(text.contains("  user\(index):\n"), "user\(index) lost") }
        #expect(try workspace.run("policy", "check").status == 0)
    }

    @Test("list shows each consumer's grants and today's usage")
    func list() throws {
        let workspace = try Self.workspace()
        _ = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT city FROM customers LIMIT 3")
        let output = try workspace.run("consumer", "list")
        #expect(output.status == 0)
        #expect(output.stdout.contains("analyst-a\n  retail: max_rows 200; today 1/1000 queries, 3 rows\n"), "\(output.stdout)")
        #expect(output.stdout.contains("finance\n  no grants\n"))
        // Listing never creates ledger files (a new key would break the ledger's chain).
        try FileManager.default.removeItem(atPath: workspace.root + "/var/usage.key")
        #expect(try workspace.run("consumer", "list").status == 0)
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/var/usage.key"))
        let empty = try Self.workspace()
        #expect(try empty.run("consumer", "list").stdout.contains("today 0/1000 queries"))
        #expect(!FileManager.default.fileExists(atPath: empty.root + "/var/usage.sqlite"))
    }

    @Test("a running server picks up a grant, a revocation and a new key without a restart")
    func runningServer() throws {
        let workspace = try Self.workspace()
        let serving = try CLI.serve(["--listen", "127.0.0.1:0"], in: workspace.root)
        let server = serving.process
        defer { if server.isRunning { server.terminate() } }
        let port = try #require(serving.port.flatMap { UInt16(exactly: $0) })
        let rotated = try workspace.run("consumer", "rotate-key", "finance")
        let key = try #require(rotated.stdout.firstMatch(of: /sg_[0-9a-f]{64}/).map { String($0.0) })
        // The new key works once the rotation is in force, and finance has no grant yet.
        #expect(try Self.waitUntil { try LineSession(port: port).query(consumer: "finance", key: key).contains("not_granted") } != nil)

        #expect(try workspace.run("consumer", "grant", "finance", "retail").status == 0)
        let granted = try Self.waitUntil { try LineSession(port: port).query(consumer: "finance", key: key).contains("\"ok\":true") }
        // How long it took is a figure, not a threshold (a loaded machine stretches it).
        let grantDelay = try #require(granted)
        print("grant in force after \(grantDelay)")

        #expect(try workspace.run("consumer", "revoke", "finance", "retail").status == 0)
        let revoked = try #require(try Self.waitUntil { try LineSession(port: port).query(consumer: "finance", key: key).contains("not_granted") })
        print("revocation in force after \(revoked)")
        server.terminate()
        server.waitUntilExit()
    }

    /// Polls `condition` every 20 ms for up to 5 s; the time it took, or nil.
    static func waitUntil(_ condition: () throws -> Bool) throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(5) {
            if try condition() { return ContinuousClock.now - start }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return nil
    }
}

/// One JSON-lines connection: auth, then one query; the query's response line (or the auth
/// failure).
struct LineSession {
    let descriptor: Int32

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(descriptor); throw CLIError("cannot connect") }
    }

    func query(consumer: String, key: String) throws -> String {
        defer { close(descriptor) }
        let auth = try exchange("{\"op\":\"auth\",\"consumer\":\"\(consumer)\",\"key\":\"\(key)\"}")
        guard auth.contains("\"ok\":true") else { return auth }
        return try exchange("{\"id\":1,\"op\":\"query\",\"dataset\":\"retail\",\"sql\":\"SELECT 1\"}")
    }

    private func exchange(_ line: String) throws -> String {
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw CLIError("send") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !response.contains(UInt8(ascii: "\n")) {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw CLIError("recv") }
            response += buffer[0..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }
}
