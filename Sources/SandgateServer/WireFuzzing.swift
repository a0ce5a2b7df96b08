import NIOCore
import NIOEmbedded

/// Entry points for the libFuzzer targets of the two front ends (Scripts/fuzz.sh): they run the
/// real decoders over arbitrary bytes. A trap anywhere below is a crash the fuzzer reports.
public enum WireFuzzing {
    /// The PostgreSQL message decoder over `bytes` (first as a startup packet stream, then as
    /// regular messages after a valid startup), and the SQL translations on every query text.
    public static func postgres(_ bytes: [UInt8]) {
        for afterStartup in [false, true] {
            let channel = EmbeddedChannel()
            defer { _ = try? channel.finish() }
            var decoder = PGFrontendDecoder(maxMessageBytes: 1 << 20)
            if afterStartup {
                decoder = PGFrontendDecoder(maxMessageBytes: 1 << 20, startup: false)
            }
            guard (try? channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))) != nil else { return }
            var buffer = channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            _ = try? channel.writeInbound(buffer)
            while let message = try? channel.readInbound(as: PGFrontendMessage.self) {
                switch message {
                case .query(let sql), .parse(_, let sql, _):
                    _ = PGDialect.statements(sql)
                    _ = PGDialect.render(PGDialect.translate(PGDialect.tokenize(sql)))
                    _ = PGDialect.catalogSQL(sql, consumer: "analyst-a", dataset: "retail")
                    _ = PGSessionSettings.parameterCount(sql)
                case .bind(_, _, let formats, let values, _):
                    for (index, value) in values.enumerated() {
                        for type in [Int32(20), 23, 21, 701, 700, 16, 17, 25, 1082, 1114, 0] {
                            _ = PGValueDecoder.decode(value, type: type, binary: formats.first == 1 || index % 2 == 1)
                        }
                    }
                default: break
                }
            }
        }
    }

    /// The JSON-lines framer and request parser over `bytes`.
    public static func jsonLines(_ bytes: [UInt8]) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        guard (try? channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFramer(maxLength: 1 << 20)))) != nil else { return }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        _ = try? channel.writeInbound(buffer)
        while let frame = try? channel.readInbound(as: Frame.self) {
            guard case .line(let line) = frame, case .object(let fields)? = JSONValue.parse(line.readableBytesView) else { continue }
            _ = fields["id"]?.idText
            if case .array(let values)? = fields["params"] { _ = values.map(\.sqlValue) }
            if case .object(let values)? = fields["params"] { _ = values.mapValues(\.sqlValue) }
        }
    }
}
