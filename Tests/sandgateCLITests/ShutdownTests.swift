import Foundation
import SandgateLedgerPostgres
import SandgateServer
import SandgateTestSupport
import Synchronization
import Testing

/// issue 18 item 5: SIGINT stops `sandgate serve` in order (the server, the watcher, the refusal
/// summaries, the ledger) and the process exits 0, on either ledger. A gateway on the PostgreSQL
/// ledger once stayed alive after SIGINT: the deadlines below detect a hang, they are not a
/// latency bound.
@Suite struct ShutdownTests {
    enum Store: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    /// The `--ledger` arguments for `store`; the PostgreSQL case is skipped without PostgreSQL.
    static func ledgerArguments(_ store: Store) throws -> [String] {
        guard store == .postgres else { return [] }
        let server = try PostgresTestServer.sharedOrSkip()
        return ["--ledger", "postgres://sandgate@127.0.0.1:\(server.port)/\(try server.makeDatabase().database)", "--node-id", "shutdown"]
    }

    @Test("SIGINT to an idle gateway: it exits 0", arguments: Store.allCases)
    func idleExit(store: Store) throws {
        let workspace = try CLIWorkspace()
        let serving = try CLI.serve(["--listen", "127.0.0.1:0", "--workers", "2"] + Self.ledgerArguments(store), in: workspace.root)
        _ = try #require(serving.port, "no banner: \(serving.banner)")
        kill(serving.process.processIdentifier, SIGINT)
        let status = try Self.exitStatus(serving.process)
        #expect(status == 0 && serving.process.terminationReason == .exit, "status \(status), reason \(serving.process.terminationReason.rawValue)")
    }

    @Test("SIGINT while clients query: it exits 0", arguments: Store.allCases)
    func busyExit(store: Store) throws {
        let workspace = try CLIWorkspace()
        let run = try Self.interruptWhileQuerying(workspace: workspace, ledgerArguments: Self.ledgerArguments(store))
        #expect(run.status == 0)
    }

    @Test("SIGINT while clients query: every answer released, also after the signal, has its record in the ledger", arguments: Store.allCases)
    func inFlightRecorded(store: Store) throws {
        let workspace = try CLIWorkspace()
        let ledgerArguments = try Self.ledgerArguments(store)
        let run = try Self.interruptWhileQuerying(workspace: workspace, ledgerArguments: ledgerArguments)
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC") ?? .current, formatOptions: [.withFullDate])
        let export = try CLI.run(["usage", "export", "--from", today, "--to", today, "--format", "jsonl"] + ledgerArguments, in: workspace.root)
        let recorded = Set(export.stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["query_id"] as? String
        })
        try #require(run.answers.contains { $0.afterSignal }, "no answer after SIGINT: nothing was in flight")
        let missing = run.answers.filter { !recorded.contains($0.id) }
        #expect(missing.isEmpty, "\(missing.count) of \(run.answers.count) answers have no record")
    }

    /// One answer a client received: its query id and whether SIGINT had been sent before it.
    struct Answer: Sendable {
        let id: String
        let afterSignal: Bool
    }

    /// What the clients received, from their threads.
    final class Answers: Sendable {
        private struct State {
            var answers: [Answer] = []
            var signalled = false
            var clientsDone = false
        }

        private let state = Mutex(State())
        var all: [Answer] { state.withLock { $0.answers } }
        var clientsDone: Bool { state.withLock { $0.clientsDone } }
        func signal() { state.withLock { $0.signalled = true } }
        func finish() { state.withLock { $0.clientsDone = true } }
        /// Records an answer, marked with whether it came after the signal.
        func append(_ id: String) { state.withLock { $0.answers.append(Answer(id: id, afterSignal: $0.signalled)) } }
    }

    /// Starts a gateway, lets four clients query in a loop, sends SIGINT once answers flow while
    /// they go on querying, and returns the exit status and every answer the clients received.
    static func interruptWhileQuerying(workspace: CLIWorkspace, ledgerArguments: [String]) throws -> (status: Int32, answers: [Answer]) {
        let serving = try CLI.serve(["--listen", "127.0.0.1:0", "--workers", "2"] + ledgerArguments, in: workspace.root)
        let port = try #require(serving.port, "no banner: \(serving.banner)")
        let answers = Answers()
        Thread {
            concurrently(4) { _ in queryUntilClosed(port: port, timeoutSeconds: 60, onResult: answers.append) }
            answers.finish()
        }.start()
        try waitUntil("answers flowing before SIGINT") { answers.all.count >= 20 }
        kill(serving.process.processIdentifier, SIGINT)
        answers.signal()
        let status = try exitStatus(serving.process)
        try waitUntil("the clients seeing their connections closed") { answers.clientsDone }
        return (status, answers.all)
    }

    /// Waits for `process` to exit (60 s against a hang: it is then killed and the wait throws).
    static func exitStatus(_ process: Process) throws -> Int32 {
        do {
            try waitUntil("sandgate serve exiting after SIGINT", timeout: .seconds(60)) { !process.isRunning }
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw error
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
