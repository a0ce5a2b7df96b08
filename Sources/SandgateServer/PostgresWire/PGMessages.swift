import NIOCore

/// A message from a PostgreSQL client (protocol 3.0). Bodies are decoded here, bounded, so that
/// the connection handler only sees well-formed values or `malformed`.
enum PGFrontendMessage {
    case sslRequest
    case gssEncRequest
    case cancel(processID: Int32, secret: Int32)
    case startup(parameters: [String: String])
    case unsupportedProtocol(Int32)
    /// `p`: a SASL initial response, a SASL response or a password, depending on the state.
    case authentication(ByteBuffer)
    case query(String)
    case parse(name: String, sql: String, parameterTypes: [Int32])
    case bind(portal: String, statement: String, parameterFormats: [Int16], parameters: [ByteBuffer?], resultFormats: [Int16])
    /// `kind` is `S` (statement) or `P` (portal).
    case describe(kind: UInt8, name: String)
    case execute(portal: String, maxRows: Int32)
    case close(kind: UInt8, name: String)
    case sync
    case flush
    case terminate
    case unknown(UInt8)
    case malformed(String)
}

/// Frames the client's byte stream: first an untyped startup packet (length, code), then typed
/// messages (type byte, length). Lengths that lie (below 4, or above the limits) end the stream
/// with `malformed`; the handler answers with an ErrorResponse and closes.
struct PGFrontendDecoder: ByteToMessageDecoder {
    typealias InboundOut = PGFrontendMessage

    /// Startup packets are small (PostgreSQL allows 10,000 bytes).
    static let maxStartupBytes = 10_000
    /// Longest regular message: the longest query (`Gateway.maxSQLBytes`) with room for a Bind's values.
    let maxMessageBytes: Int
    private var startup = true
    private var failed = false

    init(maxMessageBytes: Int, startup: Bool = true) {
        self.maxMessageBytes = maxMessageBytes
        self.startup = startup
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard !failed else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        if startup {
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return .needMoreData }
            guard length >= 8, length <= Self.maxStartupBytes else { return fail(context, "invalid startup packet length \(length)") }
            guard buffer.readableBytes >= Int(length), var body = buffer.readSlice(length: Int(length)) else { return .needMoreData }
            body.moveReaderIndex(forwardBy: 4)
            let message = Self.startupMessage(&body)
            if case .startup = message { startup = false }
            if case .malformed = message { failed = true }
            context.fireChannelRead(wrapInboundOut(message))
            return .continue
        }
        guard buffer.readableBytes >= 5, let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self) else { return .needMoreData }
        guard length >= 4, Int(length) <= maxMessageBytes else {
            return fail(context, length < 4 ? "invalid message length \(length)" : "message of \(length) bytes is longer than the limit of \(maxMessageBytes)")
        }
        guard buffer.readableBytes >= Int(length) + 1 else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 5)
        guard var body = buffer.readSlice(length: Int(length) - 4) else { return .needMoreData }
        let message = Self.message(type: type, body: &body)
        if case .malformed = message { failed = true }
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    private mutating func fail(_ context: ChannelHandlerContext, _ reason: String) -> DecodingState {
        failed = true
        context.fireChannelRead(wrapInboundOut(.malformed(reason)))
        return .continue
    }

    static func startupMessage(_ body: inout ByteBuffer) -> PGFrontendMessage {
        guard let code = body.readInteger(as: Int32.self) else { return .malformed("truncated startup packet") }
        switch code {
        case 80_877_103: return .sslRequest
        case 80_877_104: return .gssEncRequest
        case 80_877_102:
            guard let process = body.readInteger(as: Int32.self), let secret = body.readInteger(as: Int32.self) else {
                return .malformed("truncated cancel request")
            }
            return .cancel(processID: process, secret: secret)
        case 196_608:
            var parameters: [String: String] = [:]
            while let key = body.readPGString(), !key.isEmpty {
                guard let value = body.readPGString() else { return .malformed("startup parameter '\(key.prefix(64))' has no value") }
                guard parameters.count < 64 else { return .malformed("too many startup parameters") }
                parameters[key] = value
            }
            return .startup(parameters: parameters)
        default:
            return .unsupportedProtocol(code)
        }
    }

    static func message(type: UInt8, body: inout ByteBuffer) -> PGFrontendMessage {
        switch type {
        case UInt8(ascii: "p"): return .authentication(body)
        case UInt8(ascii: "Q"):
            guard let sql = body.readPGString() else { return .malformed("Query without its terminating zero byte") }
            return .query(sql)
        case UInt8(ascii: "P"):
            guard let name = body.readPGString(), let sql = body.readPGString(), let count = body.readInteger(as: Int16.self), count >= 0 else {
                return .malformed("truncated Parse")
            }
            var types: [Int32] = []
            for _ in 0..<count {
                guard let type = body.readInteger(as: Int32.self) else { return .malformed("truncated Parse parameter types") }
                types.append(type)
            }
            return .parse(name: name, sql: sql, parameterTypes: types)
        case UInt8(ascii: "B"):
            guard let portal = body.readPGString(), let statement = body.readPGString(),
                  let formats = body.readInt16Array(), let count = body.readInteger(as: Int16.self), count >= 0 else {
                return .malformed("truncated Bind")
            }
            var values: [ByteBuffer?] = []
            for _ in 0..<count {
                guard let length = body.readInteger(as: Int32.self) else { return .malformed("truncated Bind value") }
                if length == -1 { values.append(nil); continue }
                guard length >= 0, let value = body.readSlice(length: Int(length)) else { return .malformed("Bind value length \(length) is wrong") }
                values.append(value)
            }
            guard let results = body.readInt16Array() else { return .malformed("truncated Bind result formats") }
            return .bind(portal: portal, statement: statement, parameterFormats: formats, parameters: values, resultFormats: results)
        case UInt8(ascii: "D"), UInt8(ascii: "C"):
            guard let kind = body.readInteger(as: UInt8.self), kind == UInt8(ascii: "S") || kind == UInt8(ascii: "P"),
                  let name = body.readPGString() else { return .malformed("truncated Describe or Close") }
            return type == UInt8(ascii: "D") ? .describe(kind: kind, name: name) : .close(kind: kind, name: name)
        case UInt8(ascii: "E"):
            guard let portal = body.readPGString(), let rows = body.readInteger(as: Int32.self) else { return .malformed("truncated Execute") }
            return .execute(portal: portal, maxRows: rows)
        case UInt8(ascii: "S"): return .sync
        case UInt8(ascii: "H"): return .flush
        case UInt8(ascii: "X"): return .terminate
        default: return .unknown(type)
        }
    }
}

extension ByteBuffer {
    /// A zero-terminated string (invalid UTF-8 is replaced, never trusted).
    mutating func readPGString() -> String? {
        guard let zero = readableBytesView.firstIndex(of: 0) else { return nil }
        let length = zero - readerIndex
        guard let bytes = readBytes(length: length) else { return nil }
        moveReaderIndex(forwardBy: 1)
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func readInt16Array() -> [Int16]? {
        guard let count = readInteger(as: Int16.self), count >= 0 else { return nil }
        var values: [Int16] = []
        for _ in 0..<count {
            guard let value = readInteger(as: Int16.self) else { return nil }
            values.append(value)
        }
        return values
    }

    /// Writes one backend message: type byte, length, then what `body` writes.
    mutating func writePGMessage(_ type: UInt8, _ body: (inout ByteBuffer) -> Void) {
        writeInteger(type)
        let lengthIndex = writerIndex
        writeInteger(Int32(0))
        body(&self)
        setInteger(Int32(writerIndex - lengthIndex), at: lengthIndex)
    }

    mutating func writePGString(_ text: String) {
        writeString(text)
        writeInteger(UInt8(0))
    }
}
