import Foundation
import Logging
import NIOCore
import SandgateCore
import SandgateServer
import SandgateTestSupport
import Synchronization

/// Runs `body` with a fresh harness and shuts its server down afterwards, also when `body`
/// throws, so no server outlives its test.
func withServerHarness(
    workspace: TestWorkspace? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (ServerHarness) async throws -> Void
) async throws {
    let harness = try await ServerHarness(workspace: workspace, configure: configure)
    do {
        try await body(harness)
    } catch {
        await harness.shutdown()
        throw error
    }
    await harness.shutdown()
}

/// A gateway and a JSON-lines server on 127.0.0.1, port 0, around a test workspace; tests get
/// one from `withServerHarness`, which shuts it down.
final class ServerHarness {
    let workspace: TestWorkspace
    let gateway: Gateway
    let server: JSONLinesServer
    let port: Int
    /// The PostgreSQL-protocol listener's port.
    let pgPort: Int
    let logs: LogCollector

    fileprivate init(
        workspace: TestWorkspace? = nil,
        configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws {
        self.workspace = try workspace ?? TestWorkspace()
        let logs = LogCollector()
        self.logs = logs
        let logger = Logger(label: "test") { _ in logs.handler() }
        gateway = try Gateway(
            configuration: GatewayConfiguration(policiesDirectory: self.workspace.policies, stateDirectory: self.workspace.state, poolSize: 2),
            logger: logger)
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, workers: 2)
        configure(&configuration)
        server = JSONLinesServer(gateway: gateway, configuration: configuration, logger: logger)
        port = try await server.start()
        pgPort = try await server.startPostgres(host: "127.0.0.1", port: 0)
    }

    /// Stops the servers (queries in flight get two seconds) and returns when they are down.
    func shutdown() async {
        await server.shutdown(grace: .seconds(2))
    }

    func client() throws -> LineClient {
        try LineClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
    }

    /// A client already authenticated as `consumer`.
    func authenticated(_ consumer: String = "analyst-a") throws -> LineClient {
        let client = try client()
        let answer = try client.request(#"{"op":"auth","consumer":"\#(consumer)","key":"\#(TestWorkspace.demoKey)"}"#)
        guard answer.contains(#""ok":true"#) else { throw LineClient.ClientError(description: "auth failed: \(answer)") }
        return client
    }
}

/// Parses a response line.
func object(_ line: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
}

func errorCode(_ line: String) -> String? {
    (object(line)["error"] as? [String: Any])?["code"] as? String
}

/// Collects log messages (with metadata) so tests can assert what was logged.
final class LogCollector: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    func handler() -> CollectingHandler { CollectingHandler(collector: self) }

    struct CollectingHandler: LogHandler {
        let collector: LogCollector
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            collector.append("\(event.level) \(event.message) \(fields)")
        }
    }
}
