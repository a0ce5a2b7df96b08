import Foundation
import Testing

/// `--out` and standard output: a write error is a clear error with exit 1 (never a trap, never
/// exit 0), nothing but a regular file is replaced, and no `.partial` file is left behind.
@Suite struct OutputFileTests {
    /// Runs the binary with standard output on `stdoutPath` and, when `fileSizeBlocks` is set,
    /// a file size limit (`ulimit -f`, with SIGXFSZ ignored so writes fail with EFBIG: a full disk).
    static func run(_ arguments: [String], in directory: String, stdoutPath: String? = nil, fileSizeBlocks: Int? = nil) throws -> CLI.Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        let limit = fileSizeBlocks.map { "trap '' XFSZ; ulimit -f \($0); " } ?? ""
        process.arguments = ["-c", limit + #"exec "$0" "$@""#, CLI.binary.path] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["SANDGATE_KEY"] = nil
        process.environment = environment
        let out = Pipe(), err = Pipe()
        if let stdoutPath {
            process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        } else {
            process.standardOutput = out
        }
        process.standardError = err
        try process.run()
        let stdout = stdoutPath == nil ? out.fileHandleForReading.readDataToEndOfFile() : Data()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "\(arguments) ended by a signal: \(String(decoding: stderr, as: UTF8.self))")
        return CLI.Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// A workspace with a few recorded queries (so exports and receipts have content).
    static func workspace() throws -> (CLIWorkspace, queryID: String) {
        let workspace = try CLIWorkspace()
        var queryID = ""
        for _ in 0..<3 {
            let output = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--format", "json", "SELECT city, count(*) AS n FROM customers GROUP BY city")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
            queryID = try #require((object["usage"] as? [String: Any])?["query_id"] as? String)
        }
        return (workspace, queryID)
    }

    @Test("standard output on a full device is an error with exit 1, not a trap", arguments: [
        ["usage", "export", "--format", "jsonl"], ["usage", "invoice"], ["query", "--dataset", "retail", "--as", "analyst-a", "SELECT city FROM customers LIMIT 5"],
    ])
    func fullStandardOutput(arguments: [String]) throws {
        let (workspace, _) = try Self.workspace()
        let output = try Self.run(arguments, in: workspace.root, stdoutPath: "/dev/full")
        #expect(output.status == 1, "\(arguments): \(output.stderr)")
        #expect(output.stderr.contains("cannot write to standard output"), "\(output.stderr)")
    }

    @Test("usage export --out on a full disk is an error with exit 1 that leaves neither the file nor a .partial")
    func fullDisk() throws {
        let (workspace, _) = try Self.workspace()
        // A record with a 40 KB SQL text makes the export larger than the 32 KiB the limit allows
        // (the ledger's own files stay within it: they are read, not grown).
        let padded = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a",
                                       "SELECT count(*) FROM customers /*" + String(repeating: "x", count: 40_000) + "*/")
        #expect(padded.status == 0, "\(padded.stderr)")
        let output = try Self.run(["usage", "export", "--format", "jsonl", "--out", "out.jsonl"], in: workspace.root, fileSizeBlocks: 64)
        #expect(output.status == 1, "\(output.stderr)")
        #expect(output.stderr.contains("cannot write out.jsonl"), "\(output.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/out.jsonl"))
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/out.jsonl.partial"))
    }

    @Test("--out refuses to replace a FIFO or a directory (as root, /dev/full became a regular file)")
    func onlyRegularFiles() throws {
        let (workspace, queryID) = try Self.workspace()
        let fifo = workspace.root + "/pipe"
        #expect(mkfifo(fifo, 0o600) == 0)
        try FileManager.default.createDirectory(atPath: workspace.root + "/dir/inside", withIntermediateDirectories: true)
        for arguments in [["usage", "receipt", queryID], ["usage", "export"], ["usage", "invoice"], ["usage", "settle"]] {
            for target in ["pipe", "dir"] {
                let output = try workspace.run(arguments + ["--out", target], directory: workspace.root)
                #expect(output.status == 1 && output.stderr.contains("is not a regular file"), "\(arguments) --out \(target): \(output.stderr)")
                #expect(!FileManager.default.fileExists(atPath: workspace.root + "/\(target).partial"))
            }
            var info = stat()
            #expect(lstat(fifo, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "\(arguments) replaced the FIFO")
            #expect(FileManager.default.fileExists(atPath: workspace.root + "/dir/inside"), "\(arguments) replaced the directory")
        }
        // A regular file is still replaced.
        try "old".write(toFile: workspace.root + "/receipt.json", atomically: true, encoding: .utf8)
        let receipt = try workspace.run("usage", "receipt", queryID, "--out", "receipt.json")
        #expect(receipt.status == 0, "\(receipt.stderr)")
        #expect(try String(contentsOfFile: workspace.root + "/receipt.json", encoding: .utf8).hasPrefix(#"{"receipt":1"#))
    }

    @Test("usage archive with nothing to move writes no file and says nothing was moved")
    func emptyArchive() throws {
        let (workspace, _) = try Self.workspace()
        let archived = try workspace.run("usage", "archive", "--before", "2020-01-01", "--out", "old.sqlite")
        #expect(archived.status == 0, "\(archived.stderr)")
        #expect(archived.stdout.contains("nothing to move") && !archived.stdout.contains("moved to"), "\(archived.stdout)")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/old.sqlite"))
    }
}

extension CLIWorkspace {
    func run(_ arguments: [String], directory: String) throws -> CLI.Output { try CLI.run(arguments, in: directory) }
}
