import NIOCore

/// One request line, or the fact that a line exceeded the limit (its bytes are discarded up to
/// the next newline, so the connection stays usable).
enum Frame {
    case line(ByteBuffer)
    case tooLong
}

/// Splits the byte stream at `\n` (a trailing `\r` is dropped) without ever buffering more than
/// `maxLength` bytes of one line. Scans each byte once.
struct LineFramer: ByteToMessageDecoder {
    typealias InboundOut = Frame

    let maxLength: Int
    private var discarding = false
    /// Bytes of the current line already searched for a newline.
    private var scanned = 0

    init(maxLength: Int) {
        self.maxLength = maxLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let start = view.startIndex + scanned
        guard let newline = view[start...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if view.count > maxLength {
                if !discarding {
                    discarding = true
                    context.fireChannelRead(wrapInboundOut(.tooLong))
                }
                buffer.moveReaderIndex(forwardBy: view.count)
                scanned = 0
            }
            return .needMoreData
        }
        let length = newline - view.startIndex
        scanned = 0
        if discarding {
            buffer.moveReaderIndex(forwardBy: length + 1)
            discarding = false
            return .continue
        }
        if length > maxLength {
            buffer.moveReaderIndex(forwardBy: length + 1)
            context.fireChannelRead(wrapInboundOut(.tooLong))
            return .continue
        }
        var line = buffer.readSlice(length: length) ?? ByteBuffer()
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        if line.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.line(line))) }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A partial last line without a newline is dropped: the peer went away.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
