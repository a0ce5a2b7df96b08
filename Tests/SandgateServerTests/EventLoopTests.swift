import Foundation
@testable import SandgateServer
import NIOCore
import SandgateCore
import SandgateLedger
import SandgateTestSupport
import Synchronization
import Testing

/// issue 12 item 4: no connection can stall the event loop for the others.
@Suite struct EventLoopTests {
    /// A request line of about 1 MiB of nested JSON objects (inside the line limit).
    static let floodLine: String = {
        var line = #"{"op":"ping","x":["#
        let item = #"{"a":{"b":{"c":[1,2.5,"x",{"d":null}]}}},"#
        while line.utf8.count + item.utf8.count < (1 << 20) - 64 { line += item }
        return line + #"{}]}"#
    }()

    @Test("eight connections streaming 1 MiB lines of nested JSON do not stall another client's ping")
    func pingDuringFlood() async throws {
        try await withServerHarness { harness in
            let port = harness.port
            let line = Self.floodLine
            #expect(line.utf8.count < 1 << 20)
            let flood = Flood(connections: 8) { client in _ = try client.request(line) }
            try await flood.run(port: port) {
                try compareWithFlood(flood, pinging: try harness.authenticated(), count: 100, what: "8 x 1 MiB lines")
            }
        }
    }

    /// Red team: one Parse of `SELECT 1,1,…` (200,000 columns) was tokenized and classified on
    /// the event loop for 8 s, and every other client's ping waited; long statement text is now
    /// prepared on the decoder threads.
    @Test("a PostgreSQL client re-Parsing a statement of 20,000 columns does not stall another client's JSON-lines ping")
    func pingDuringLargeParse() async throws {
        try await withServerHarness { harness in
            let pgPort = harness.pgPort
            let sql = "SELECT " + Array(repeating: "1", count: 20_000).joined(separator: ",")
            let flood = Flood(connections: 1, connect: { _ in
                let client = try PGTestClient(port: pgPort)
                guard try client.login(user: "analyst-a", password: TestWorkspace.demoKey).types.hasSuffix("Z") else {
                    throw LineClient.ClientError(description: "login failed")
                }
                return client.connection
            }) { connection in
                let answer = try PGTestClient(connection: connection).parse(sql)
                guard answer.types == "1Z" else { throw LineClient.ClientError(description: "Parse answered \(answer.types)") }
            }
            try await flood.run(port: harness.port) {
                try compareWithFlood(flood, pinging: try harness.authenticated(), count: 20, what: "Parses of 20,000 columns")
            }
        }
    }
}

/// Red team: thousands of small pipelined requests on a few connections (no login needed for
/// `ping`) held the event loop for seconds; each connection now gives the loop back every few
/// answers.
@Suite struct PipelineFairnessTests {
    @Test("pipelined pings from three connections do not stall another client's ping")
    func pipelinedFlood() async throws {
        try await withServerHarness { harness in
            let count = 20_000
            let burst = [UInt8](String(repeating: #"{"op":"ping"}"# + "\n", count: count).utf8)
            // Send a burst from another thread while reading its answers: a server that stops
            // reading while its answers are unread (backpressure) would otherwise block a
            // client that writes the whole burst first, and the client would block it.
            let flood = Flood(connections: 3) { client in
                // `send` touches only the descriptor, never the read buffer the loop below uses.
                nonisolated(unsafe) let writer = client
                let sender = Thread { try? writer.send(bytes: burst) }
                sender.start()
                for _ in 0..<count { guard try client.readLine() != nil else { throw LineClient.ClientError(description: "closed") } }
            }
            try await flood.run(port: harness.port) {
                try compareWithFlood(flood, pinging: try harness.authenticated(), count: 60, what: "bursts of 20,000 pipelined pings")
            }
        }
    }
}

/// Connections that each repeat one request (`round`) until stopped, recording how long each
/// round took: the same-run baseline a stalled event loop would show in another client's ping.
final class Flood: Sendable {
    let connections: Int
    let connect: @Sendable (_ port: Int) throws -> LineClient
    let round: @Sendable (LineClient) throws -> Void
    private let rounds = Mutex<[Duration]>([])
    private let started = Atomic<Int>(0)
    private let stop = Atomic<Bool>(false)

    init(
        connections: Int, connect: @escaping @Sendable (_ port: Int) throws -> LineClient = Flood.authenticated,
        round: @escaping @Sendable (LineClient) throws -> Void
    ) {
        self.connections = connections
        self.connect = connect
        self.round = round
    }

    /// A JSON-lines client logged in as analyst-a: an unauthenticated connection has 10 s to log
    /// in, and a loaded machine can take longer than that to finish a flood's rounds.
    @Sendable static func authenticated(port: Int) throws -> LineClient {
        let client = try LineClient(host: "127.0.0.1", port: port, timeoutSeconds: 300)
        let answer = try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(TestWorkspace.demoKey)"}"#)
        guard answer.contains(#""ok":true"#) else { throw LineClient.ClientError(description: "auth failed: \(answer)") }
        return client
    }

    /// The durations of the rounds finished so far.
    var finished: [Duration] { rounds.withLock { $0 } }

    /// Starts the connections, waits until each has finished a round (the flood is under way),
    /// runs `body` and stops them.
    func run(port: Int, _ body: () throws -> Void) async throws {
        let threads = (0..<connections).map { _ in
            Thread {
                guard let client = try? self.connect(port) else { return }
                var first = true
                while !self.stop.load(ordering: .relaxed) {
                    let begun = ContinuousClock.now
                    guard (try? self.round(client)) != nil else { return }
                    let took = ContinuousClock.now - begun
                    self.rounds.withLock { $0.append(took) }
                    if first { self.started.add(1, ordering: .relaxed); first = false }
                }
            }
        }
        threads.forEach { $0.start() }
        defer { stop.store(true, ordering: .relaxed) }
        try waitUntil("every flood connection finishing a round") { started.load(ordering: .relaxed) == connections }
        try body()
    }
}

/// Pings on `client`, one after the other, at least `count` and until the flood finished as many
/// rounds as it has connections meanwhile (so the flood ran while they were answered). The
/// property: a ping is answered in a small part of a flood round; a loop that served a round
/// before a ping would make the two comparable. Both are measured in the same run, so a loaded machine slows
/// them alike.
func compareWithFlood(_ flood: Flood, pinging client: LineClient, count: Int, what: String) throws {
    try compareWithFlood(flood, count: count, what: what) {
        let answer = try client.request(#"{"op":"ping"}"#)
        #expect(answer.contains(#""pong":true"#))
    }
}

/// `compareWithFlood` for any request: `request` sends one and checks its answer.
func compareWithFlood(_ flood: Flood, count: Int, what: String, _ request: () throws -> Void) throws {
    let before = flood.finished.count
    var latencies: [Duration] = []
    try waitUntil("the flood finishing \(flood.connections) rounds during the requests", interval: .zero) {
        let started = ContinuousClock.now
        try request()
        latencies.append(ContinuousClock.now - started)
        return latencies.count >= count && flood.finished.count >= before + flood.connections
    }
    let rounds = flood.finished
    let ping = median(latencies), round = median(rounds)
    print("requests during a flood of \(what): \(latencies.count), p50 \(ping), max \(latencies.max() ?? .zero); \(rounds.count) flood rounds, p50 \(round)")
    #expect(ping * 5 < round, "a request (p50 \(ping)) took more than a fifth of a flood round (p50 \(round))")
}

func median(_ values: [Duration]) -> Duration {
    values.sorted()[values.count / 2]
}

/// The request parser that replaced `JSONDecoder` (one pass, bounded depth).
@Suite struct RequestParserTests {
    @Test("valid JSON parses to the expected value", arguments: [
        (#"{"op":"ping"}"#, JSONValueBox(.object(["op": .string("ping")]))),
        (#" [1, -2, 2.5, 1e3, -0, true, false, null] "#, JSONValueBox(.array([.integer(1), .integer(-2), .real(2.5), .real(1000), .integer(0), .bool(true), .bool(false), .null]))),
        (#""a\"b\\c\/d\n\u00e9\u738b\ud83d\ude00""#, JSONValueBox(.string("a\"b\\c/d\né王😀"))),
        (#"{"a":{"b":[{}]},"a":1}"#, JSONValueBox(.object(["a": .integer(1)]))),
        (#"9223372036854775807"#, JSONValueBox(.integer(.max))),
        (#"9223372036854775808"#, JSONValueBox(.real(9223372036854775808))),
    ])
    func valid(line: String, expected: JSONValueBox) {
        #expect(JSONValue.parse(ByteBuffer(string: line).readableBytesView) == expected.value)
    }

    @Test("invalid JSON, lone surrogates, control characters and too much nesting are refused", arguments: [
        "", "{", "{\"a\"}", "{\"a\":1,}", "[1,]", "01", "1.", "-", "+1", "1e", "tru", "nul", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"",
        "\"a\u{01}b\"", "{\"a\":1} x", "NaN", "1e999", "'a'", String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
    ])
    func invalid(line: String) {
        #expect(JSONValue.parse(ByteBuffer(string: line).readableBytesView) == nil)
    }

    @Test("invalid UTF-8 inside a string is refused")
    func invalidUTF8() {
        var buffer = ByteBuffer(string: "{\"op\":\"")
        buffer.writeBytes([0xC3, 0x28, 0xFF])
        buffer.writeString("\"}")
        #expect(JSONValue.parse(buffer.readableBytesView) == nil)
    }
}

/// `JSONValue` is internal; a box lets it be a test argument.
struct JSONValueBox: Sendable, CustomTestStringConvertible {
    let value: JSONValue
    init(_ value: JSONValue) { self.value = value }
    var testDescription: String { "\(value)" }
}

/// issue 12 item 5 (connection bounds): connections that never log in cannot lock anyone out.
@Suite struct UnauthenticatedConnectionTests {
    @Test("a connection that does not log in within the login timeout is closed; a logged-in one stays")
    func loginTimeout() async throws {
        try await withServerHarness(configure: { $0.loginTimeout = .milliseconds(300) }) { harness in
            let idle = try harness.client()
            let working = try harness.authenticated()
            // The read waits for the server's close (the client's own timeout is 30 s).
            #expect(try idle.readLine() == nil, "closed by the server")
            #expect(object(try working.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
        }
    }

    @Test("idle unauthenticated connections from other addresses never lock out a client that logs in")
    func noLockout() async throws {
        try await withServerHarness(configure: { configuration in
            configuration.maxUnauthenticatedPerAddress = 4
            configuration.maxUnauthenticatedConnections = 8
        }) { harness in
            var idle: [LineClient] = []
            for source in ["127.0.0.2", "127.0.0.3"] {
                for _ in 0..<4 { idle.append(try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 60, sourceAddress: source)) }
            }
            // Each idle connection is registered once it answers.
            for client in idle { #expect(object(try client.request(#"{"op":"ping"}"#))["ok"] as? Bool == true) }
            // A fifth from one address is refused...
            let refused = try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 60, sourceAddress: "127.0.0.2")
            #expect(errorCode(try refused.readLine() ?? "") == "unavailable")
            // ...but a client from another address gets in (the oldest idle connection makes room).
            let client = try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 60, sourceAddress: "127.0.0.9")
            let auth = try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(TestWorkspace.demoKey)"}"#)
            #expect(object(auth)["ok"] as? Bool == true, "\(auth)")
            #expect(object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#))["ok"] as? Bool == true)
            #expect(try idle[0].readLine() == nil, "the oldest unauthenticated connection was closed")
        }
    }
}

/// issue 12 item 5 (memory): clients that do not read cannot make the server hold unbounded bytes.
@Suite struct UnsentBytesTests {
    @Test("a consumer whose responses are not read gets overloaded (recorded) until it reads; stats counts the bytes")
    func nonReadingConsumer() async throws {
        try await withServerHarness(configure: { $0.maxUnsentBytesPerConsumer = 512 * 1024 }) { harness in
            let stuck = try harness.authenticated()
            let sql = "SELECT printf('%.1000c', 'a'), printf('%.1000c', 'b'), printf('%.1000c', 'c'), printf('%.1000c', 'd'), printf('%.1000c', 'e') FROM customers LIMIT 200"
            let request = #"{"op":"query","dataset":"retail","sql":"\#(sql)"}"#
            // About 1 MB per response; the kernel's socket buffers take the first several.
            for _ in 0..<24 { try stuck.send(request) }
            let other = try harness.authenticated()
            // A loaded machine produces 24 MB slowly: wait for the refusal.
            try waitUntil("the unread bytes stopping new queries of that consumer", timeout: .seconds(90), interval: .milliseconds(100)) {
                errorCode(try other.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#)) == "overloaded"
            }
            // Reading everything releases them.
            // Every request is answered: the first ones with rows, later ones (sent while the bytes
            // were unread) with overloaded.
            var codes: [String] = []
            while codes.count < 24, let line = try stuck.readLine() {
                codes.append(object(line)["ok"] as? Bool == true ? "ok" : errorCode(line) ?? "?")
            }
            #expect(codes.count == 24 && codes.first == "ok")
            #expect(Set(codes).isSubset(of: ["ok", "overloaded"]), "\(codes)")
            // Every refusal is in the ledger (status refused, cost 0), the other connection's too.
            var recorded: [UsageRecord] = []
            try harness.gateway.ledger.records { record in
                if record.errorCode == "overloaded" { recorded.append(record) }
                return true
            }
            #expect(recorded.count == 1 + codes.filter { $0 == "overloaded" }.count)
            #expect(recorded.allSatisfy { $0.status == .refused && $0.costMicros == 0 && $0.dataset == "retail" })
            #expect(object(try other.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#))["ok"] as? Bool == true)
        }
    }
}
