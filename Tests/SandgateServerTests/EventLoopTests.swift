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
        let harness = try await ServerHarness()
        let port = harness.port
        let line = Self.floodLine
        #expect(line.utf8.count < 1 << 20)
        let stop = Atomic<Bool>(false)
        let flooded = Atomic<Int>(0)
        let threads = (0..<8).map { _ in
            Thread {
                guard let client = try? LineClient(host: "127.0.0.1", port: port, timeoutSeconds: 30) else { return }
                while !stop.load(ordering: .relaxed) {
                    guard (try? client.request(line)) != nil else { return }
                    flooded.add(1, ordering: .relaxed)
                }
            }
        }
        threads.forEach { $0.start() }
        try await Task.sleep(for: .seconds(0.5))
        let latencies = try pingLatencies(try harness.client(), count: 100)
        stop.store(true, ordering: .relaxed)
        let p50 = latencies[latencies.count / 2], p99 = latencies[latencies.count * 99 / 100], worst = latencies.last ?? .zero
        print("ping during a flood of 8 x 1 MiB lines (\(flooded.load(ordering: .relaxed)) decoded): p50 \(p50), p99 \(p99), max \(worst)")
        // Generous for a debug build on a shared 2-core machine; the benchmark reports the real p99.
        #expect(p99 < .milliseconds(250))
    }
}

/// Red team: thousands of small pipelined requests on a few connections (no login needed for
/// `ping`) held the event loop for seconds; each connection now gives the loop back every few
/// answers.
@Suite struct PipelineFairnessTests {
    @Test("pipelined pings from three connections do not stall another client's ping")
    func pipelinedFlood() async throws {
        let harness = try await ServerHarness()
        let port = harness.port
        let count = 20_000
        let burst = [UInt8](String(repeating: #"{"op":"ping"}"# + "\n", count: count).utf8)
        let stop = Atomic<Bool>(false)
        let threads = (0..<3).map { _ in
            Thread {
                guard let client = try? LineClient(host: "127.0.0.1", port: port, timeoutSeconds: 30) else { return }
                // Send a burst, then read its answers (the socket buffers hold a burst either way).
                while !stop.load(ordering: .relaxed) {
                    guard (try? client.send(bytes: burst)) != nil else { return }
                    for _ in 0..<count { guard (try? client.readLine()) != nil else { return } }
                }
            }
        }
        threads.forEach { $0.start() }
        try await Task.sleep(for: .seconds(0.5))
        let latencies = try pingLatencies(try harness.client(), count: 60)
        stop.store(true, ordering: .relaxed)
        let p99 = latencies[latencies.count * 99 / 100]
        print("ping during 3 connections of pipelined pings: p50 \(latencies[latencies.count / 2]), p99 \(p99), max \(latencies.last ?? .zero)")
        #expect(p99 < .milliseconds(250))
    }
}

/// `count` pings 20 ms apart on `client`, each answered; their latencies, sorted.
func pingLatencies(_ client: LineClient, count: Int) throws -> [Duration] {
    var latencies: [Duration] = []
    for _ in 0..<count {
        let started = ContinuousClock.now
        let answer = try client.request(#"{"op":"ping"}"#)
        latencies.append(ContinuousClock.now - started)
        #expect(answer.contains(#""pong":true"#))
        Thread.sleep(forTimeInterval: 0.02)
    }
    return latencies.sorted()
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
        let harness = try await ServerHarness { $0.loginTimeout = .milliseconds(300) }
        let idle = try harness.client()
        let working = try harness.authenticated()
        try await Task.sleep(for: .seconds(0.8))
        #expect(try idle.readLine() == nil, "closed by the server")
        #expect(object(try working.request(#"{"op":"ping"}"#))["ok"] as? Bool == true)
    }

    @Test("idle unauthenticated connections from other addresses never lock out a client that logs in")
    func noLockout() async throws {
        let harness = try await ServerHarness { configuration in
            configuration.maxUnauthenticatedPerAddress = 4
            configuration.maxUnauthenticatedConnections = 8
        }
        var idle: [LineClient] = []
        for source in ["127.0.0.2", "127.0.0.3"] {
            for _ in 0..<4 { idle.append(try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 5, sourceAddress: source)) }
        }
        // Each idle connection is registered once it answers.
        for client in idle { #expect(object(try client.request(#"{"op":"ping"}"#))["ok"] as? Bool == true) }
        // A fifth from one address is refused...
        let refused = try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 5, sourceAddress: "127.0.0.2")
        #expect(errorCode(try refused.readLine() ?? "") == "unavailable")
        // ...but a client from another address gets in (the oldest idle connection makes room).
        let client = try LineClient(host: "127.0.0.1", port: harness.port, timeoutSeconds: 5, sourceAddress: "127.0.0.9")
        let auth = try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(TestWorkspace.demoKey)"}"#)
        #expect(object(auth)["ok"] as? Bool == true, "\(auth)")
        #expect(object(try client.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#))["ok"] as? Bool == true)
        #expect(try idle[0].readLine() == nil, "the oldest unauthenticated connection was closed")
    }
}

/// issue 12 item 5 (memory): clients that do not read cannot make the server hold unbounded bytes.
@Suite struct UnsentBytesTests {
    @Test("a consumer whose responses are not read gets overloaded (recorded) until it reads; stats counts the bytes")
    func nonReadingConsumer() async throws {
        let harness = try await ServerHarness { $0.maxUnsentBytesPerConsumer = 512 * 1024 }
        let stuck = try harness.authenticated()
        let sql = "SELECT printf('%.1000c', 'a'), printf('%.1000c', 'b'), printf('%.1000c', 'c'), printf('%.1000c', 'd'), printf('%.1000c', 'e') FROM customers LIMIT 200"
        let request = #"{"op":"query","dataset":"retail","sql":"\#(sql)"}"#
        // About 1 MB per response; the kernel's socket buffers take the first several.
        for _ in 0..<24 { try stuck.send(request) }
        let other = try harness.authenticated()
        var refused = false
        // Generous: it ends as soon as the refusal comes; a loaded machine produces 24 MB slowly.
        let deadline = ContinuousClock.now + .seconds(90)
        while !refused, ContinuousClock.now < deadline {
            refused = errorCode(try other.request(#"{"op":"query","dataset":"retail","sql":"SELECT 1"}"#)) == "overloaded"
            if !refused { try await Task.sleep(for: .seconds(0.1)) }
        }
        #expect(refused, "the unread bytes must stop new queries of that consumer")
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
