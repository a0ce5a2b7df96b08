import NIOCore
import NIOEmbedded
@testable import SandgateServer
import Testing

/// The framing of the client's bytes, on an `EmbeddedChannel`: lengths that lie and truncated
/// bodies become `malformed` (which the state answers FATAL 08P01), never a trap or a wait for
/// gigabytes.
@Suite struct PGFrontendDecoderTests {
    /// The messages `bytes` decode to, first as a startup stream or after startup.
    static func decode(_ bytes: [UInt8], afterStartup: Bool = false) throws -> [PGFrontendMessage] {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PGFrontendDecoder(maxMessageBytes: 1 << 20, startup: !afterStartup)))
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        var messages: [PGFrontendMessage] = []
        while let message = try channel.readInbound(as: PGFrontendMessage.self) { messages.append(message) }
        return messages
    }

    static func malformedReason(_ messages: [PGFrontendMessage]) -> String? {
        guard case .malformed(let reason)? = messages.last else { return nil }
        return reason
    }

    @Test("lengths that lie are malformed, with the length in the reason", arguments: [
        ("negative length after an SSLRequest", PGTestClient.int32(8) + PGTestClient.int32(80_877_103) + [UInt8(ascii: "Q")] + PGTestClient.int32(-5), false,
         "invalid startup packet length 1375731711"),
        ("negative length after startup", [UInt8(ascii: "Q")] + PGTestClient.int32(-5), true, "invalid message length -5"),
        ("length below 4", [UInt8(ascii: "S")] + PGTestClient.int32(3), true, "invalid message length 3"),
        ("huge length", [UInt8(ascii: "Q")] + PGTestClient.int32(0x7FFF_FFFF), true, "message of 2147483647 bytes is longer than the limit of 1048576"),
        ("10 MB startup packet", PGTestClient.int32(10_000_000) + PGTestClient.int32(196_608), false, "invalid startup packet length 10000000"),
        ("startup packet under 8 bytes", PGTestClient.int32(4), false, "invalid startup packet length 4"),
    ])
    func lyingLengths(name: String, bytes: [UInt8], afterStartup: Bool, reason: String) throws {
        #expect(Self.malformedReason(try Self.decode(bytes, afterStartup: afterStartup)) == reason, "\(name)")
    }

    @Test("a query typed before the startup packet: the query's bytes are read as a lying startup length")
    func queryBeforeStartup() throws {
        let messages = try Self.decode([UInt8(ascii: "Q")] + PGTestClient.int32(9) + PGTestClient.cString("x1234"))
        #expect(Self.malformedReason(messages) == "invalid startup packet length 1358954496")
    }

    @Test("an old protocol version decodes as unsupported (the state answers 0A000)")
    func oldProtocol() throws {
        guard case .unsupportedProtocol(131_072)? = try Self.decode(PGTestClient.int32(8) + PGTestClient.int32(131_072)).first else {
            Issue.record("not unsupported")
            return
        }
    }

    @Test("a truncated startup packet waits for its bytes (the login timeout ends the wait)")
    func truncatedStartup() throws {
        #expect(try Self.decode(PGTestClient.int32(20) + PGTestClient.int32(196_608)).isEmpty)
    }

    @Test("truncated bodies are malformed", arguments: [
        ("P", [UInt8](PGTestClient.cString("s")), "truncated Parse"),
        ("B", PGTestClient.cString("") + PGTestClient.cString("") + PGTestClient.int16(0) + PGTestClient.int16(1) + PGTestClient.int32(-7), "Bind value length -7 is wrong"),
        ("E", PGTestClient.cString(""), "truncated Execute"),
        ("D", [UInt8(ascii: "X")], "truncated Describe or Close"),
        ("Q", [UInt8(ascii: "x")], "Query without its terminating zero byte"),
    ])
    func truncatedBodies(type: String, body: [UInt8], reason: String) throws {
        let bytes = Array(type.utf8) + PGTestClient.int32(Int32(body.count + 4)) + body
        #expect(Self.malformedReason(try Self.decode(bytes, afterStartup: true)) == reason)
    }

    @Test("after a malformed message the rest of the stream is dropped")
    func nothingAfterMalformed() throws {
        let bytes = [UInt8(ascii: "Q")] + PGTestClient.int32(-5) + [UInt8(ascii: "S")] + PGTestClient.int32(4)
        #expect(try Self.decode(bytes, afterStartup: true).count == 1)
    }

    @Test("FunctionCall and CopyData decode as unknown types (the state closes with 08P01)", arguments: ["F", "d"])
    func unknownTypes(type: String) throws {
        let bytes = Array(type.utf8) + PGTestClient.int32(7) + [1, 2, 3]
        guard case .unknown(let decoded)? = try Self.decode(bytes, afterStartup: true).first else { Issue.record("not unknown"); return }
        #expect(decoded == Array(type.utf8)[0])
    }
}
