import Crypto
import Foundation
import SandgateSupport
import Logging
import NIOCore
import NIOPosix
import SandgateCore
import SandgatePolicy
import SandgateSQLite

/// What every connection of every front end shares: the gateway, the worker pools and the
/// governance state (connection caps, login back-off, in-flight caps, unsent bytes).
struct ServerServices: Sendable {
    let gateway: Gateway
    let workers: NIOThreadPool
    /// Decodes long request lines off the event loop.
    let decoders: NIOThreadPool
    let state: ServerState
    let logger: Logger
    /// Salts the decoy SCRAM verifiers of names without one (random per process).
    let pgSecret: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }

    /// Counts a failed login against the address (and a valid consumer name) and writes its
    /// ledger record, or counts it into the interval's summary (ServerConfiguration.authRecordInterval).
    func loginFailed(address: String, name: String) {
        state.authFailed(address: address, consumer: Name.isValid(name) ? name : nil)
        let admission = state.admitFailureRecord(address: address)
        let seconds = Int(state.configuration.authRecordInterval.nanoseconds / 1_000_000_000)
        for summary in admission.summaries {
            gateway.recordAuthenticationFailureSummary(source: summary.source, count: summary.count, seconds: seconds)
        }
        if admission.record { gateway.recordAuthenticationFailure(consumer: name, source: address) }
    }
}

/// One connection of the JSON-lines protocol (DESIGN.md §5): requests are answered one at a
/// time, in order; reading pauses when too many are queued or the client stops reading.
final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    private let services: ServerServices
    private var consumer: String?
    /// The purpose declared on `auth` (the default of each query that names none).
    private var sessionPurpose: String?
    private var queue = CircularBuffer<Frame>()
    /// Bytes of the queued request lines (reading pauses above `maxLineBytes`).
    private var queuedBytes = 0
    private var busy = false
    private var readingPaused = false
    private var accepted = false
    private var address = "unknown"
    /// This connection's channel, once active (for the unauthenticated-connection registry).
    private var channel: (any Channel)?

    init(services: ServerServices) {
        self.services = services
    }

    // MARK: Connection lifecycle

    func channelActive(context: ChannelHandlerContext) {
        address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        accepted = services.state.openConnection(address: address, channel: context.channel)
        guard accepted else {
            let error = GatewayError(.unavailable, "too many connections", hint: "try again later")
            write(ResponseFormat.error(error), context: context)
            context.close(promise: nil)
            return
        }
        // A connection must log in soon; after that only the idle timeout applies.
        let channel = context.channel
        self.channel = channel
        context.eventLoop.assumeIsolated().scheduleTask(in: services.state.configuration.loginTimeout) { [weak self] in
            if let self, self.accepted, self.consumer == nil { channel.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if accepted { services.state.closeConnection(address: address, channel: context.channel) }
        accepted = false
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard accepted else { return }
        let frame = unwrapInboundIn(data)
        if case .line(let bytes) = frame { queuedBytes += bytes.readableBytes }
        queue.append(frame)
        let configuration = services.state.configuration
        if queue.count >= configuration.maxPendingRequests || queuedBytes > configuration.maxLineBytes, !readingPaused {
            readingPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
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

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        services.logger.debug("connection error", metadata: ["address": "\(address)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Requests, one at a time

    /// Bursts per read and the unwritable timeout (`ConnectionPacing`, shared with PostgreSQL).
    private let pacing = ConnectionPacing()

    private func processNext(context: ChannelHandlerContext) {
        guard !busy, context.channel.isActive, context.channel.isWritable, !queue.isEmpty,
              pacing.admit(context: context, resume: { [self] in processNext(context: context) }) else { return }
        guard let frame = queue.popFirst() else { return }
        if case .line(let bytes) = frame { queuedBytes -= bytes.readableBytes }
        let configuration = services.state.configuration
        if readingPaused, queue.count < configuration.maxPendingRequests / 2, queuedBytes <= configuration.maxLineBytes / 2 {
            readingPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
        busy = true
        let loop = context.eventLoop
        handle(frame, eventLoop: loop).hop(to: loop).assumeIsolated().whenComplete { [self] result in
            busy = false
            switch result {
            case .success(let line): write(line, context: context)
            case .failure(let error):
                services.logger.error("request failed", metadata: ["error": "\(error)"])
                write(ResponseFormat.error(GatewayError(.internal, "internal error")), context: context)
            }
            processNext(context: context)
        }
    }

    private func write(_ line: String, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: line.utf8.count + 1)
        buffer.writeString(line)
        buffer.writeInteger(UInt8(ascii: "\n"))
        // Counted until NIO has handed the bytes to the kernel (or the connection failed).
        let bytes = buffer.readableBytes, state = services.state, owner = consumer
        state.unsent(bytes, consumer: owner)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in state.sent(bytes, consumer: owner) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: written)
    }

    private func handle(_ frame: Frame, eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let requestTooLarge = GatewayError(.requestTooLarge, "the request line is longer than \(services.state.configuration.maxLineBytes) bytes")
        guard case .line(let bytes) = frame else {
            services.state.countRequest(op: "invalid")
            return eventLoop.makeSucceededFuture(ResponseFormat.error(requestTooLarge))
        }
        return decode(bytes, eventLoop: eventLoop).assumeIsolated().flatMap { [self] value in
            respond(to: value, eventLoop: eventLoop)
        }.nonisolated()
    }

    /// Decodes a request line. Short lines (every op but a large query) decode on the event loop,
    /// which costs microseconds; longer ones on the decoder threads, so that a client streaming
    /// 1 MiB lines of nested JSON cannot hold the loop that answers everyone else's `ping`.
    private func decode(_ bytes: ByteBuffer, eventLoop: any EventLoop) -> EventLoopFuture<JSONValue?> {
        guard bytes.readableBytes > services.state.configuration.inlineDecodeBytes else {
            return eventLoop.makeSucceededFuture(JSONValue.parse(bytes.readableBytesView))
        }
        return services.decoders.runIfActive(eventLoop: eventLoop) { JSONValue.parse(bytes.readableBytesView) }
    }

    private func respond(to value: JSONValue?, eventLoop: any EventLoop) -> EventLoopFuture<String> {
        guard case .object(let fields)? = value else {
            services.state.countRequest(op: "invalid")
            return eventLoop.makeSucceededFuture(ResponseFormat.error(GatewayError(.badRequest, "the line is not a JSON object")))
        }
        let id = fields["id"]?.idText
        func fail(_ code: ErrorCode, _ message: String, hint: String = "") -> EventLoopFuture<String> {
            eventLoop.makeSucceededFuture(ResponseFormat.error(GatewayError(code, message, hint: hint), id: id))
        }
        guard let op = fields["op"]?.string else { return fail(.badRequest, "missing \"op\" (a string)") }
        services.state.countRequest(op: Operation.known.contains(op) ? op : "unknown", consumer: consumer)
        let operation = Operation(services: services, consumerName: consumer ?? "", id: id, fields: fields, clientAddress: address, sessionPurpose: sessionPurpose)
        switch op {
        case "ping":
            return eventLoop.makeSucceededFuture(operation.ok { $0.field("pong", true) })
        case "auth":
            return authenticate(operation, eventLoop: eventLoop)
        default:
            guard Operation.known.contains(op) else {
                return fail(.badRequest, "unknown op \"\(op)\"", hint: "ops: " + Operation.known.sorted().joined(separator: ", "))
            }
            guard let consumer else { return fail(.authFailed, "authenticate first", hint: "send {\"op\":\"auth\",\"consumer\":…,\"key\":…}") }
            if op == "query" || op == "explain" {
                let request: QueryRequest
                switch operation.request(op) {
                case .failure(let line): return eventLoop.makeSucceededFuture(line.text)
                case .success(let parsed): request = parsed
                }
                let admission = QueryAdmission(services: services), gateway = services.gateway
                let answer: EventLoopFuture<QueryAdmission.Answer<String>>
                if op == "explain" {
                    answer = admission.admit(request, on: eventLoop, refused: { ResponseFormat.json($0, id: id) }) { done in
                        let outcome = gateway.explain(request)
                        let code = switch outcome {
                        case .success: "ok"
                        case .failure(let error): error.code.rawValue
                        }
                        done(ResponseFormat.json(outcome, id: id), code)
                    }
                } else {
                    answer = admission.query(request, on: eventLoop) { ResponseFormat.json($0, id: id) }
                }
                return answer.map { answer in
                    switch answer {
                    case .answered(let line): line
                    case .unavailable(let error): ResponseFormat.error(error, id: id)
                    }
                }
            }
            return services.workers.runIfActive(eventLoop: eventLoop) { operation.run(op, consumer: consumer) }
        }
    }

    private func authenticate(_ operation: Operation, eventLoop: any EventLoop) -> EventLoopFuture<String> {
        guard let name = operation.fields["consumer"]?.string, let key = operation.fields["key"]?.string else {
            return eventLoop.makeSucceededFuture(operation.error(GatewayError(.badRequest, "auth needs \"consumer\" and \"key\" strings")))
        }
        let purpose: String?
        switch operation.fields["purpose"] {
        case nil, .null?: purpose = nil
        case .string(let text)?: purpose = text
        default: return eventLoop.makeSucceededFuture(operation.error(GatewayError(.badRequest, "purpose must be a string")))
        }
        let address = self.address
        let state = services.state
        let gateway = services.gateway
        // A name outside the one ASCII spelling is refused before any lookup; it still counts as
        // a failure of the address (but not of a consumer name, so junk cannot grow that table).
        let validName = Name.isValid(name)
        let workers = services.workers
        let services = self.services
        // The key is checked first and a right key answered at once; only failures wait out the
        // back-off. Otherwise anyone who knows a consumer's name could keep that consumer's own
        // logins waiting (red team). A connection answers one request at a time, so the wait
        // still paces guesses.
        let checked = workers.runIfActive(eventLoop: eventLoop) { () -> String? in
            if validName, let declared = gateway.authenticate(consumer: name, key: key) {
                state.authSucceeded(consumer: declared)
                return declared
            }
            services.loginFailed(address: address, name: name)
            return nil
        }
        let answer = checked.hop(to: eventLoop).flatMap { declared -> EventLoopFuture<String?> in
            if let declared { return eventLoop.makeSucceededFuture(declared) }
            let delay = state.authDelay(address: address, consumer: validName ? name : "")
            return eventLoop.scheduleTask(in: delay) { nil as String? }.futureResult
        }
        return answer.hop(to: eventLoop).assumeIsolated().map { [self] declared -> String in
            guard let declared else {
                consumer = nil
                sessionPurpose = nil
                return operation.error(GatewayError(.authFailed, "unknown consumer or wrong key", hint: "consumer names are \(Name.rule)"))
            }
            if consumer == nil, let channel { services.state.authenticated(channel, address: address) }
            consumer = declared
            // The session's default purpose: each query may name another; it is decided per query
            // against that query's dataset and the consumer's grant (PurposeRule), never here.
            sessionPurpose = purpose
            return operation.ok { $0.field("consumer", declared) }
        }.nonisolated()
    }
}
