import Foundation
import SandgateLedgerPostgres
import SandgateServer
import SandgateTestSupport
import Synchronization
import Testing

/// issue 9 item 5: `kill -9` of a gateway at any moment loses no committed record, never leaves a
/// result delivered without its record, and leaves a ledger that verifies; a restart continues
/// the chain. The gateway runs as a child process; clients log every `query_id` they received.
@Suite struct CrashTests {
    enum Store: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    static let kills = 20

    @Test("kill -9 at random moments, 20 times: every received query_id is in the ledger and it verifies", arguments: Store.allCases)
    func killNine(store: Store) throws {
        let workspace = try CLIWorkspace()
        var ledgerArguments: [String] = []
        if store == .postgres {
            let server = try PostgresTestServer.sharedOrSkip()
            ledgerArguments = ["--ledger", "postgres://sandgate@127.0.0.1:\(server.port)/\(try server.makeDatabase().database)", "--node-id", "crash"]
        }
        let received = IDLog()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<Self.kills {
            let serving = try CLI.serve(["--listen", "127.0.0.1:0", "--workers", "2"] + ledgerArguments, in: workspace.root)
            let server = serving.process
            let port = try #require(serving.port, "no banner: \(serving.banner)")
            let killAfter = Double.random(in: 0.05...0.6, using: &generator)
            let done = DispatchSemaphore(value: 0)
            Thread {
                concurrently(4) { _ in queryUntilClosed(port: port, timeoutSeconds: 10, onResult: received.append) }
                done.signal()
            }.start()
            Thread.sleep(forTimeInterval: killAfter)
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
            done.wait()
        }
        let ids = received.ids
        #expect(ids.count > Self.kills, "the clients must have received results between the kills")
        let verify = try CLI.run(["usage", "verify"] + ledgerArguments, in: workspace.root)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC") ?? .current, formatOptions: [.withFullDate])
        let export = try CLI.run(["usage", "export", "--from", today, "--to", today, "--format", "jsonl"] + ledgerArguments, in: workspace.root)
        #expect(export.status == 0)
        let objects = export.stdout.split(separator: "\n").compactMap { line in
            try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
        let recorded = Set(objects.compactMap { $0["query_id"] as? String })
        let idSet = Set(ids)
        var unreceived: [String: Int] = [:]
        for object in objects where !idSet.contains(object["query_id"] as? String ?? "") {
            unreceived["\(object["status"] ?? "?")/\(object["error_code"] ?? "")", default: 0] += 1
        }
        print("crash test (\(store.rawValue)): records whose result was not received: \(unreceived)")
        let missing = ids.filter { !recorded.contains($0) }
        print("crash test (\(store.rawValue)): \(Self.kills) kills, \(ids.count) results received, \(recorded.count) records")
        #expect(missing.isEmpty, "\(missing.count) of \(ids.count) received query ids are not in the ledger")
    }
}

/// The query ids the clients received, from many threads.
final class IDLog: Sendable {
    private let log = Mutex<[String]>([])
    func append(_ id: String) { log.withLock { $0.append(id) } }
    var ids: [String] { log.withLock { $0 } }
}

/// The demo consumer's grouped query, sent in a loop until the server closes the connection
/// (after answering, or answering `unavailable`); `onResult` gets each released result's query id.
func queryUntilClosed(port: Int, timeoutSeconds: Int, onResult: (String) -> Void) {
    guard let client = try? LineClient(host: "127.0.0.1", port: port, timeoutSeconds: timeoutSeconds),
          let auth = try? client.request(#"{"op":"auth","consumer":"analyst-a","key":"sg_demo_analyst_a_2026"}"#),
          auth.contains("\"ok\":true") else { return }
    while let line = try? client.request(#"{"op":"query","dataset":"retail","sql":"SELECT city, count(*) AS n FROM customers GROUP BY city"}"#) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
        if object["ok"] as? Bool == true, let usage = object["usage"] as? [String: Any], let id = usage["query_id"] as? String {
            onResult(id)
        }
    }
}
