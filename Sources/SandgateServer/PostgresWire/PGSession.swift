import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SandgateCore

/// One PostgreSQL-protocol connection (DESIGN.md §6) on the event loop: it decodes nothing
/// itself (`PGFrontendDecoder` does) and decides nothing (`PGProtocolState` does); it feeds
/// messages to the state one at a time, performs the actions it returns — writes, TLS, the
/// consumer list, work through `QueryAdmission` on the workers — and feeds the outcomes back.
final class PGSession: ChannelInboundHandler {
    typealias InboundIn = PGFrontendMessage
    typealias OutboundOut = ByteBuffer

    let services: ServerServices
    let backends: PGBackends
    var protocolState: PGProtocolState
    private var queue = CircularBuffer<PGFrontendMessage>()
    /// A message is being handled (its work may be on a worker); the next waits.
    private var busy = false
    private var accepted = false
    private(set) var address = "unknown"
    var processID: Int32 = 0
    let cancellation = Cancellation()
    let catalog = CatalogBox()
    private var output: ByteBuffer
    /// Bursts per read and the unwritable timeout, as for JSON lines (`ConnectionPacing`).
    private let pacing = ConnectionPacing()
    /// What the portals' kept results count in the consumer's unsent bytes now.
    private var heldBytes = 0

    /// When set, SSLRequest is answered `S` and TLS starts (the listener's certificate and key).
    private let tls: NIOSSLContext?

    init(services: ServerServices, backends: PGBackends, tls: NIOSSLContext? = nil) {
        self.services = services
        self.backends = backends
        self.tls = tls
        protocolState = PGProtocolState(tlsAvailable: tls != nil)
        output = ByteBufferAllocator().buffer(capacity: 4096)
    }

    // MARK: Connection lifecycle

    func channelActive(context: ChannelHandlerContext) {
        address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        accepted = services.state.openConnection(address: address, channel: context.channel)
        guard accepted else {
            // Before the startup packet a client reads only an ErrorResponse.
            perform(protocolState.fatal("53300", "too many connections", hint: "try again later"), context: context)
            return
        }
        let channel = context.channel
        context.eventLoop.assumeIsolated().scheduleTask(in: services.state.configuration.loginTimeout) { [weak self] in
            if let self, self.accepted, !self.protocolState.isAuthenticated { channel.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if accepted { services.state.closeConnection(address: address, channel: context.channel) }
        accepted = false
        protocolState.connectionClosed()
        reconcileHeldBytes()
        if processID != 0 { backends.unregister(processID) }
        cancellation.cancel()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        services.logger.debug("pgwire connection error", metadata: ["address": "\(address)", "error": "\(error)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard accepted else { return }
        queue.append(unwrapInboundIn(data))
        if queue.count >= 64 { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        processNext(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pacing.readComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        pacing.writabilityChanged(context: context, timeout: services.state.configuration.unwritableTimeout) { processNext(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func processNext(context: ChannelHandlerContext) {
        guard !busy, context.channel.isActive, context.channel.isWritable, !queue.isEmpty,
              pacing.admit(context: context, resume: { [self] in processNext(context: context) }) else { return }
        guard let message = queue.popFirst() else { return }
        if queue.count < 32 { context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
        busy = true
        perform(protocolState.receive(message), context: context)
    }

    /// The message is answered: the next one may start.
    func messageDone(context: ChannelHandlerContext) {
        busy = false
        reconcileHeldBytes()
        processNext(context: context)
    }

    /// Results kept in portals count as the consumer's unsent bytes (the caps of §5: past them new
    /// queries are refused until results are read or portals closed), so that Bind + Describe of
    /// many portals cannot hold gigabytes (red team: 1.6 GB in 2.4 s on one connection).
    private func reconcileHeldBytes() {
        let held = protocolState.heldBytes, consumer = protocolState.session.consumer
        guard held != heldBytes, !consumer.isEmpty else { return }
        if held > heldBytes { services.state.unsent(held - heldBytes, consumer: consumer) } else { services.state.sent(heldBytes - held, consumer: consumer) }
        heldBytes = held
    }

    // MARK: Actions

    /// Performs the state's actions in order. An action that asks for an answer (SCRAM, login,
    /// work) is the last of its list; its answer's actions are performed in turn, and the
    /// message is done when a list ends without one.
    func perform(_ actions: [PGAction], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .write(let message): output.writeBackendMessage(message)
            case .flush: flush(context)
            case .flushIfLarge: if output.readableBytes > 256 * 1024 { flush(context) }
            case .close: context.close(promise: nil)
            case .startTLS: startTLS(context)
            case .refuseEncryption: writeRaw(UInt8(ascii: "N"), context)
            case .cancelBackend(let processID, let secret): backends.cancel(processID: processID, secret: secret)
            case .startSCRAM(let user, let clientFirst):
                return perform(protocolState.scramStarted(startSCRAM(user: user, clientFirst: clientFirst)), context: context)
            case .login(let user, let signature):
                return perform(login(user: user, signature: signature, context: context), context: context)
            case .recordFailedLogin(let user):
                return recordFailedLogin(user: user, context: context)
            case .run(let work):
                return run(work, context: context)
            case .prepare(let preparation):
                return prepare(preparation, context: context)
            }
        }
        messageDone(context: context)
    }

    private func flush(_ context: ChannelHandlerContext) {
        guard output.readableBytes > 0 else { return }
        let bytes = output.readableBytes, state = services.state, consumer = protocolState.session.consumer
        let owner = consumer.isEmpty ? nil : consumer
        state.unsent(bytes, consumer: owner)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in state.sent(bytes, consumer: owner) }
        context.writeAndFlush(wrapOutboundOut(output), promise: written)
        output = context.channel.allocator.buffer(capacity: 4096)
    }

    /// The one-byte answer to SSLRequest/GSSENCRequest, in plain text.
    private func writeRaw(_ byte: UInt8, _ context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 1)
        buffer.writeInteger(byte)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// `S`, then the TLS handler in front of the decoder (which has nothing buffered: the client
    /// waits for this byte before its handshake).
    private func startTLS(_ context: ChannelHandlerContext) {
        writeRaw(UInt8(ascii: "S"), context)
        guard let tls else { return context.close(promise: nil) }
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        } catch {
            context.close(promise: nil)
        }
    }
}
