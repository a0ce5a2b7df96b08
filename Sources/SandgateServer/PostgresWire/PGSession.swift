import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SandgateCore
import SandgatePolicy
import SandgateSQLite
import Synchronization

/// Running backends by process id, for CancelRequest (which arrives on a new connection).
final class PGBackends: Sendable {
    private let table = Mutex<[Int32: (secret: Int32, cancellation: Cancellation)]>([:])

    func register(cancellation: Cancellation) -> (processID: Int32, secret: Int32) {
        table.withLock { table in
            var processID: Int32
            repeat { processID = Int32.random(in: 1...Int32.max) } while table[processID] != nil
            let secret = Int32.random(in: Int32.min...Int32.max)
            table[processID] = (secret, cancellation)
            return (processID, secret)
        }
    }

    func unregister(_ processID: Int32) { _ = table.withLock { $0.removeValue(forKey: processID) } }

    /// Cancels the backend's running query when the secret matches (silently otherwise, as PostgreSQL does).
    func cancel(processID: Int32, secret: Int32) {
        let entry = table.withLock { $0[processID] }
        if let entry, entry.secret == secret { entry.cancellation.cancel() }
    }
}

/// Holds a session's catalog for use on worker threads: the session runs one request at a time,
/// so the catalog is never used by two threads at once.
final class CatalogBox: @unchecked Sendable {
    var catalog: PGCatalog?
}

/// One PostgreSQL-protocol connection (DESIGN.md §6): startup, SCRAM-SHA-256, then simple and
/// extended queries, one message at a time, every query through `Gateway.run`.
final class PGSession: ChannelInboundHandler {
    typealias InboundIn = PGFrontendMessage
    typealias OutboundOut = ByteBuffer

    static let serverVersion = "15.0"

    private enum Phase {
        case startup
        case saslInitial
        case saslContinue(SCRAMExchange)
        case ready
        case closing
    }

    /// What a prepared statement is.
    private enum Command {
        case query(sql: String)
        case catalog(sql: String)
        case utility(tag: String)
        case show(name: String)
        case empty
        /// A statement refused before it runs (a `SET` of a `sandgate.*` parameter that would not
        /// take effect as written): answered with this error, never with a success tag.
        case refused(GatewayError)
    }

    private struct Statement {
        let command: Command
        let parameterTypes: [Int32]
        let parameterCount: Int
        var textBytes = 0
    }

    private enum Rows {
        case data(QueryResult, QueryResponse)
        /// A gateway query that failed: the response carries its usage.
        case failed(QueryResponse)
        case catalog(PGCatalog.Answer)
    }

    private struct Portal {
        let statement: Statement
        let parameters: [SQLValue]
        let resultFormats: [Int16]
        var rows: Rows?
        var error: GatewayError?
        var cursor = 0
        /// Rows sent by the latest Execute: CommandComplete reports these, as PostgreSQL does (a
        /// finished portal executed again answers `SELECT 0`).
        var batch = 0
        var noticed = false
    }

    private let services: ServerServices
    private let backends: PGBackends
    private var phase = Phase.startup
    private var queue = CircularBuffer<PGFrontendMessage>()
    private var busy = false
    private var accepted = false
    private var address = "unknown"
    private var consumer = ""
    private var dataset = ""
    private var processID: Int32 = 0
    private var statements: [String: Statement] = [:]
    private var portals: [String: Portal] = [:]
    private var skipUntilSync = false
    private var inTransaction = false
    private var notices = true
    private let cancellation = Cancellation()
    private let catalog = CatalogBox()
    private var output: ByteBuffer

    /// When set, SSLRequest is answered `S` and TLS starts (the listener's certificate and key).
    private let tls: NIOSSLContext?
    private var encrypted = false

    init(services: ServerServices, backends: PGBackends, tls: NIOSSLContext? = nil) {
        self.services = services
        self.backends = backends
        self.tls = tls
        output = ByteBufferAllocator().buffer(capacity: 4096)
    }

    // MARK: Connection lifecycle

    func channelActive(context: ChannelHandlerContext) {
        address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        accepted = services.state.openConnection(address: address, channel: context.channel)
        guard accepted else {
            // Before the startup packet a client reads only an ErrorResponse.
            fatal(context, "53300", "too many connections", hint: "try again later")
            return
        }
        let channel = context.channel
        context.eventLoop.assumeIsolated().scheduleTask(in: services.state.configuration.loginTimeout) { [weak self] in
            if let self, self.accepted, self.consumer.isEmpty { channel.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if accepted { services.state.closeConnection(address: address, channel: context.channel) }
        accepted = false
        portals.removeAll()
        statements.removeAll()
        reconcileHeldBytes(releaseAll: true)
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

    /// Bursts per read and the unwritable timeout, as for JSON lines (`ConnectionPacing`).
    private let pacing = ConnectionPacing()

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
        let done = handle(message, context: context)
        done.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] _ in
            busy = false
            reconcileHeldBytes()
            processNext(context: context)
        }
    }

    /// Results kept in portals count as the consumer's unsent bytes (the caps of §5: past them new
    /// queries are refused until results are read or portals closed), so that Bind + Describe of
    /// many portals cannot hold gigabytes (red team: 1.6 GB in 2.4 s on one connection).
    private var heldBytes = 0

    private func reconcileHeldBytes(releaseAll: Bool = false) {
        var held = 0
        if !releaseAll {
            for portal in portals.values {
                if case .data(let result, _)? = portal.rows { held += result.valueBytes + result.cellCount * 9 }
            }
        }
        guard held != heldBytes, !consumer.isEmpty else { return }
        if held > heldBytes { services.state.unsent(held - heldBytes, consumer: consumer) } else { services.state.sent(heldBytes - held, consumer: consumer) }
        heldBytes = held
    }

    /// At most this many portals and prepared statements (and statement text) per connection.
    static let maxPortals = 16
    static let maxStatements = 200
    static let maxStatementBytes = 4 << 20

    // MARK: Output

    private func flush(_ context: ChannelHandlerContext) {
        guard output.readableBytes > 0 else { return }
        let bytes = output.readableBytes, state = services.state, owner = consumer.isEmpty ? nil : consumer
        state.unsent(bytes, consumer: owner)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in state.sent(bytes, consumer: owner) }
        context.writeAndFlush(wrapOutboundOut(output), promise: written)
        output = context.channel.allocator.buffer(capacity: 4096)
    }

    private func readyForQuery(_ context: ChannelHandlerContext) {
        output.writePGMessage(UInt8(ascii: "Z")) { $0.writeInteger(UInt8(ascii: self.inTransaction ? "T" : "I")) }
        flush(context)
    }

    private func writeError(_ severity: String = "ERROR", _ code: String, _ message: String, hint: String = "") {
        output.writePGMessage(UInt8(ascii: "E")) { buffer in
            Self.fields(&buffer, severity: severity, code: code, message: message, hint: hint)
        }
    }

    private static func fields(_ buffer: inout ByteBuffer, severity: String, code: String, message: String, hint: String) {
        for (field, value) in [(UInt8(ascii: "S"), severity), (UInt8(ascii: "V"), severity), (UInt8(ascii: "C"), code), (UInt8(ascii: "M"), message)] {
            buffer.writeInteger(field)
            buffer.writePGString(value)
        }
        if !hint.isEmpty {
            buffer.writeInteger(UInt8(ascii: "H"))
            buffer.writePGString(hint)
        }
        buffer.writeInteger(UInt8(0))
    }

    private func writeError(_ error: GatewayError) {
        writeError("ERROR", Self.sqlState(error.code), "\(error.code.rawValue): \(error.message)", hint: error.hint)
    }

    /// An error that ends the connection (before or during authentication).
    private func fatal(_ context: ChannelHandlerContext, _ code: String, _ message: String, hint: String = "") {
        phase = .closing
        writeError("FATAL", code, message, hint: hint)
        flush(context)
        context.close(promise: nil)
    }

    static func sqlState(_ code: ErrorCode) -> String {
        switch code {
        case .authFailed: "28P01"
        case .notGranted, .columnNotAllowed, .functionNotAllowed, .aggregateRequired, .shapeNotAllowed, .notASelect, .purposeNotAllowed: "42501"
        case .unknownDataset: "3D000"
        case .syntaxError: "42601"
        case .noSuchTable: "42P01"
        case .noSuchColumn: "42703"
        case .noSuchFunction: "42883"
        case .budgetExceeded, .resultTooLarge, .rowsLimitExceeded, .requestTooLarge: "54000"
        case .timeout, .cancelled: "57014"
        case .quotaExceeded, .privacyBudgetExhausted: "53400"
        case .overloaded: "53000"
        case .badRequest: "22000"
        case .unavailable: "57P03"
        case .internal: "XX000"
        }
    }

    // MARK: Messages

    private func handle(_ message: PGFrontendMessage, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let loop = context.eventLoop
        let done = loop.makeSucceededVoidFuture()
        if case .closing = phase { return done }
        switch message {
        case .malformed(let reason):
            fatal(context, "08P01", "protocol violation: \(reason)")
            return done
        case .terminate:
            phase = .closing
            context.close(promise: nil)
            return done
        default: break
        }
        switch phase {
        case .startup:
            startup(message, context: context)
            return done
        case .saslInitial, .saslContinue:
            return authenticate(message, context: context)
        case .closing:
            return done
        case .ready:
            break
        }
        if skipUntilSync {
            if case .sync = message {
                skipUntilSync = false
                portals[""] = nil
                readyForQuery(context)
            }
            return done
        }
        switch message {
        case .query(let sql):
            return simpleQuery(sql, context: context)
        case .parse(let name, let sql, let types):
            if !name.isEmpty, statements[name] != nil {
                return failExtended(context, "42P05", "prepared statement \"\(name)\" already exists")
            }
            guard sql.utf8.count <= Gateway.maxSQLBytes else {
                return failExtended(context, GatewayError(.requestTooLarge, "the query is longer than \(Gateway.maxSQLBytes) bytes"))
            }
            let storedBytes = statements.values.reduce(0) { $0 + $1.textBytes }
            guard statements.count < Self.maxStatements || statements[name] != nil, storedBytes + sql.utf8.count <= Self.maxStatementBytes else {
                return failExtended(context, "53400", "more than \(Self.maxStatements) prepared statements or \(Self.maxStatementBytes >> 20) MiB of statement text on this connection",
                                    hint: "close or DEALLOCATE statements you no longer use")
            }
            let statement = Statement(command: classify(sql), parameterTypes: types, parameterCount: Self.parameterCount(sql), textBytes: sql.utf8.count)
            statements[name] = statement
            output.writePGMessage(UInt8(ascii: "1")) { _ in }
            return done
        case .bind(let portalName, let statementName, let formats, let values, let resultFormats):
            guard let statement = statements[statementName] else {
                return failExtended(context, "26000", "prepared statement \"\(statementName)\" does not exist")
            }
            guard formats.count <= 1 || formats.count == values.count else {
                return failExtended(context, "08P01", "Bind has \(formats.count) parameter formats for \(values.count) values")
            }
            var parameters: [SQLValue] = []
            for (index, value) in values.enumerated() {
                let format = formats.isEmpty ? 0 : formats.count == 1 ? formats[0] : formats[index]
                let type = index < statement.parameterTypes.count ? statement.parameterTypes[index] : 0
                switch PGValueDecoder.decode(value, type: type, binary: format == 1) {
                case .success(let decoded): parameters.append(decoded)
                case .failure(let error): return failExtended(context, error)
                }
            }
            if !portalName.isEmpty, portals[portalName] != nil {
                return failExtended(context, "42P03", "portal \"\(portalName)\" already exists")
            }
            guard portals.count < Self.maxPortals || portals[portalName] != nil else {
                return failExtended(context, "53400", "more than \(Self.maxPortals) open portals on this connection", hint: "close portals you no longer use")
            }
            guard formats.allSatisfy({ $0 == 0 || $0 == 1 }), resultFormats.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                return failExtended(context, "08P01", "format codes must be 0 (text) or 1 (binary)")
            }
            portals[portalName] = Portal(statement: statement, parameters: parameters, resultFormats: resultFormats)
            output.writePGMessage(UInt8(ascii: "2")) { _ in }
            return done
        case .describe(let kind, let name):
            if kind == UInt8(ascii: "S") {
                guard let statement = statements[name] else {
                    return failExtended(context, "26000", "prepared statement \"\(name)\" does not exist")
                }
                return describeStatement(statement, context: context)
            }
            guard portals[name] != nil else { return failExtended(context, "34000", "portal \"\(name)\" does not exist") }
            return run(portal: name, context: context).assumeIsolated().map { [self] in
                guard let portal = portals[name] else { return }
                if let error = portal.error {
                    writeError(error)
                    skipUntilSync = true
                    return
                }
                describe(portal)
            }.nonisolated()
        case .execute(let name, let maxRows):
            guard portals[name] != nil else { return failExtended(context, "34000", "portal \"\(name)\" does not exist") }
            return run(portal: name, context: context).assumeIsolated().map { [self] in
                guard var portal = portals[name] else { return }
                if let error = portal.error {
                    writeError(error)
                    if case .failed(let response)? = portal.rows { notice(response) }
                    skipUntilSync = true
                    portals[name] = nil
                    return
                }
                let complete = sendRows(&portal, limit: maxRows > 0 ? Int(maxRows) : Int.max)
                if complete { finish(&portal) } else { output.writePGMessage(UInt8(ascii: "s")) { _ in } }
                portals[name] = portal
            }.nonisolated()
        case .close(let kind, let name):
            if kind == UInt8(ascii: "S") { statements[name] = nil } else { portals[name] = nil }
            output.writePGMessage(UInt8(ascii: "3")) { _ in }
            return done
        case .sync:
            portals[""] = nil
            readyForQuery(context)
            return done
        case .flush:
            flush(context)
            return done
        case .authentication:
            return failExtended(context, "08P01", "unexpected authentication message")
        case .unknown(let type):
            fatal(context, "08P01", "unsupported message type '\(Unicode.Scalar(type).escaped(asASCII: true))'",
                  hint: "sandgate speaks the simple and extended query protocols; COPY and function calls are not available")
            return done
        default:
            fatal(context, "08P01", "unexpected message")
            return done
        }
    }

    private func failExtended(_ context: ChannelHandlerContext, _ code: String, _ message: String, hint: String = "") -> EventLoopFuture<Void> {
        writeError("ERROR", code, message, hint: hint)
        skipUntilSync = true
        return context.eventLoop.makeSucceededVoidFuture()
    }

    private func failExtended(_ context: ChannelHandlerContext, _ error: GatewayError) -> EventLoopFuture<Void> {
        writeError(error)
        skipUntilSync = true
        return context.eventLoop.makeSucceededVoidFuture()
    }

    // MARK: Startup and authentication

    private func startup(_ message: PGFrontendMessage, context: ChannelHandlerContext) {
        switch message {
        case .sslRequest where tls != nil && !encrypted:
            // `S` goes out in plain text; the TLS handler then sits in front of the decoder, which
            // has nothing buffered (the client waits for this byte before its handshake).
            var buffer = context.channel.allocator.buffer(capacity: 1)
            buffer.writeInteger(UInt8(ascii: "S"))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            if let tls {
                do {
                    try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
                    encrypted = true
                } catch {
                    context.close(promise: nil)
                }
            }
        case .sslRequest, .gssEncRequest:
            // No TLS (or GSS encryption) here: the client continues in plain text or gives up (sslmode=require).
            var buffer = context.channel.allocator.buffer(capacity: 1)
            buffer.writeInteger(UInt8(ascii: "N"))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .cancel(let processID, let secret):
            backends.cancel(processID: processID, secret: secret)
            phase = .closing
            context.close(promise: nil)
        case .unsupportedProtocol(let version):
            fatal(context, "0A000", "unsupported frontend protocol \(version >> 16).\(version & 0xFFFF): sandgate speaks 3.0")
        case .startup(let parameters):
            guard let user = parameters["user"], !user.isEmpty else {
                return fatal(context, "28000", "no user name given", hint: "connect with user = your consumer name and dbname = the dataset")
            }
            consumerClaim = user
            dataset = parameters["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
            if let options = parameters["options"] { applyOptions(options) }
            applicationName = parameters["application_name"] ?? ""
            output.writePGMessage(UInt8(ascii: "R")) { buffer in
                buffer.writeInteger(Int32(10))
                buffer.writePGString("SCRAM-SHA-256")
                buffer.writeInteger(UInt8(0))
            }
            flush(context)
            phase = .saslInitial
        default:
            fatal(context, "08P01", "expected a startup packet")
        }
    }

    private var consumerClaim = ""
    private var applicationName = ""

    /// `-c name=value` pairs of the startup `options` parameter (PGOPTIONS).
    private func applyOptions(_ options: String) {
        let words = options.split(separator: " ")
        var index = 0
        while index < words.count {
            var setting = Substring("")
            if words[index] == "-c", index + 1 < words.count { setting = words[index + 1]; index += 2 } else if words[index].hasPrefix("-c") { setting = words[index].dropFirst(2); index += 1 } else if words[index].hasPrefix("--") { setting = words[index].dropFirst(2); index += 1 } else { index += 1; continue }
            let parts = setting.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { set(String(parts[0]), String(parts[1])) }
        }
    }

    /// The purpose declared with `options=-c sandgate.purpose=…` or `SET sandgate.purpose`; sent
    /// with every query and decided there (`PurposeRule`). Only these two spellings set it: SQL
    /// text is never searched for a purpose, so a comment cannot declare one.
    private var purpose: String?

    /// A setting's value without one pair of surrounding quotes (`'x'`, `"x"`, `E'x'` is not
    /// unquoted and so is not a valid purpose name); `''` inside single quotes is one quote.
    static func settingValue(_ text: String) -> String {
        if text.count >= 2, text.hasPrefix("'"), text.hasSuffix("'") {
            return String(text.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
        }
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { return String(text.dropFirst().dropLast()) }
        return text
    }

    /// The `sandgate.*` parameters a session can set.
    static let sandgateParameters = ["sandgate.purpose", "sandgate.notices"]

    /// `SET [SESSION] sandgate.name {=|TO} value`, checked strictly: the purpose decides what a
    /// consumer may see and is recorded with every query, so a `SET` that would leave the old one
    /// in force is an error, never a `SET` tag. nil when the statement does not set a `sandgate.*`
    /// parameter (ordinary PostgreSQL parameters are accepted as before) or when it was applied.
    private func setSandgateParameter(tokens: [PGDialect.Token]) -> Command? {
        var rest = Array(tokens.drop { $0.isSpace }.dropFirst())
        while let last = rest.last, last.isSpace || last.text == ";" { rest.removeLast() }
        let words = rest.filter { !$0.isSpace }
        var index = 0
        let scope = words.first?.upper
        if scope == "SESSION" || scope == "LOCAL" { index += 1 }
        // The name: words, `.` and quoted identifiers (`"sandgate.purpose"` is the same name).
        var name = ""
        while index < words.count, words[index].kind == .word || words[index].kind == .quotedIdentifier || words[index].text == ".",
              words[index].text != "=", words[index].upper != "TO", words[index].upper != "FROM" {
            let word = words[index]
            name += word.kind == .quotedIdentifier ? String(word.text.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") : word.text.lowercased()
            index += 1
        }
        guard name.lowercased().hasPrefix("sandgate.") else { return nil }
        let shown = String(name.prefix(64))
        func refuse(_ code: ErrorCode, _ message: String, hint: String = "") -> Command { .refused(GatewayError(code, message, hint: hint)) }
        guard scope != "LOCAL" else {
            return refuse(.badRequest, "SET LOCAL is not supported for \(shown): sandgate has no transactions, so the setting would outlive ROLLBACK",
                          hint: "use SET \(shown) = '…' (for the session) and SET it again or RESET it to change it")
        }
        guard Self.sandgateParameters.contains(name.lowercased()) else {
            let nearest = NearestName.closest(to: name, among: Self.sandgateParameters).map { "; did you mean '\($0)'?" } ?? ""
            return refuse(.badRequest, "unrecognized configuration parameter \"\(shown)\"\(nearest)",
                          hint: "sandgate parameters: " + Self.sandgateParameters.joined(separator: ", "))
        }
        guard index < words.count, words[index].text == "=" || words[index].upper == "TO" else {
            if index < words.count, words[index].upper == "FROM" {
                return refuse(.syntaxError, "SET \(name) FROM CURRENT is not supported", hint: "write SET \(name) = '…'")
            }
            return refuse(.syntaxError, "SET \(name) needs = or TO and a value", hint: "write SET \(name) = '…'")
        }
        // The value: one string or identifier, or unquoted tokens with nothing between them
        // (`public-health.v2`); anything after it is an error, not ignored.
        guard let equals = rest.firstIndex(where: { !$0.isSpace && ($0.text == "=" || $0.upper == "TO") }) else { return nil }
        let valueTokens = Array(rest[(equals + 1)...].drop { $0.isSpace })
        guard let firstValue = valueTokens.first else {
            return refuse(.syntaxError, "SET \(name) needs a value", hint: "write SET \(name) = '…'")
        }
        let quoted = firstValue.kind == .string || firstValue.kind == .quotedIdentifier
        if valueTokens.contains(where: \.isSpace) || (quoted && valueTokens.count > 1) {
            return refuse(.syntaxError, "trailing text after the value of SET \(name)", hint: "give one value: SET \(name) = '…'")
        }
        set(name, valueTokens.map(\.text).joined())
        return .utility(tag: "SET")
    }

    private func set(_ name: String, _ value: String) {
        switch name.lowercased() {
        case "sandgate.purpose":
            let text = Self.settingValue(value)
            purpose = text.isEmpty || text.uppercased() == "DEFAULT" ? nil : text
        case "client_min_messages":
            notices = !["warning", "error", "log", "fatal", "panic"].contains(value.lowercased().trimmingCharacters(in: "'"))
        case "sandgate.notices":
            notices = !["off", "false", "0"].contains(value.lowercased().trimmingCharacters(in: "'"))
        default: break
        }
    }

    private func authenticate(_ message: PGFrontendMessage, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let loop = context.eventLoop
        guard case .authentication(var body) = message else {
            fatal(context, "08P01", "expected a SASL message during authentication")
            return loop.makeSucceededVoidFuture()
        }
        switch phase {
        case .saslInitial:
            guard let mechanism = body.readPGString(), let length = body.readInteger(as: Int32.self), length >= 0,
                  let data = body.readBytes(length: Int(length)) else {
                fatal(context, "08P01", "malformed SASLInitialResponse")
                return loop.makeSucceededVoidFuture()
            }
            guard mechanism == "SCRAM-SHA-256" else {
                fatal(context, "28000", "SASL mechanism \(mechanism.prefix(40)) is not supported", hint: "use SCRAM-SHA-256 (no channel binding)")
                return loop.makeSucceededVoidFuture()
            }
            let known = Name.isValid(consumerClaim) ? services.gateway.consumers.consumers[consumerClaim] : nil
            switch SCRAMExchange.start(clientFirst: data, verifier: known?.scram, name: consumerClaim, secret: services.pgSecret) {
            case .failure(let failure):
                fatal(context, "08P01", failure.reason)
            case .success(let exchange):
                output.writePGMessage(UInt8(ascii: "R")) { buffer in
                    buffer.writeInteger(Int32(11))
                    buffer.writeString(exchange.serverFirst)
                }
                flush(context)
                phase = .saslContinue(exchange)
            }
            return loop.makeSucceededVoidFuture()
        case .saslContinue(let exchange):
            let data = body.readBytes(length: body.readableBytes) ?? []
            let name = consumerClaim, address = address, services = services
            if let signature = exchange.finish(clientFinal: data), let declared = services.gateway.consumers.consumers[name], declared.scram != nil {
                services.state.authSucceeded(consumer: declared.name)
                services.state.authenticated(context.channel, address: address)
                consumer = declared.name
                guard services.gateway.consumers.consumers[consumer]?.grants[dataset] != nil, services.gateway.runtime(dataset) != nil else {
                    let granted = services.gateway.grantedDatasets(consumer: consumer)
                    fatal(context, "3D000", "database \"\(dataset.prefix(64))\" does not exist or is not granted to \(consumer)",
                          hint: granted.isEmpty ? "no dataset is granted to you" : "connect with dbname = one of: " + granted.joined(separator: ", "))
                    return loop.makeSucceededVoidFuture()
                }
                output.writePGMessage(UInt8(ascii: "R")) { buffer in
                    buffer.writeInteger(Int32(12))
                    buffer.writeString("v=" + Data(signature).base64EncodedString())
                }
                output.writePGMessage(UInt8(ascii: "R")) { $0.writeInteger(Int32(0)) }
                let parameters = [
                    ("application_name", applicationName), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                    ("default_transaction_read_only", "on"), ("in_hot_standby", "off"), ("integer_datetimes", "on"),
                    ("IntervalStyle", "postgres"), ("is_superuser", "off"), ("server_encoding", "UTF8"),
                    ("server_version", Self.serverVersion), ("session_authorization", consumer),
                    ("standard_conforming_strings", "on"), ("TimeZone", "UTC"),
                ]
                for (key, value) in parameters {
                    output.writePGMessage(UInt8(ascii: "S")) { buffer in
                        buffer.writePGString(key)
                        buffer.writePGString(value)
                    }
                }
                let key = backends.register(cancellation: cancellation)
                processID = key.processID
                output.writePGMessage(UInt8(ascii: "K")) { buffer in
                    buffer.writeInteger(key.processID)
                    buffer.writeInteger(key.secret)
                }
                phase = .ready
                readyForQuery(context)
                return loop.makeSucceededVoidFuture()
            }
            // Failures are counted and recorded on a worker, then answered after the back-off.
            phase = .closing
            let recorded = services.workers.runIfActive(eventLoop: loop) { services.loginFailed(address: address, name: name) }
            return recorded.flatMap { _ in
                loop.scheduleTask(in: services.state.authDelay(address: address, consumer: Name.isValid(name) ? name : "")) {}.futureResult
            }.hop(to: loop).assumeIsolated().map { [self] in
                phase = .ready
                fatal(context, "28P01", "password authentication failed for user \"\(name.prefix(64))\"",
                      hint: "the password is your sandgate API key; a consumer logs in over PostgreSQL only with a scram_sha256 verifier in consumers.yaml (`sandgate consumer add` writes one)")
            }.nonisolated()
        default:
            return loop.makeSucceededVoidFuture()
        }
    }

    // MARK: Queries

    private func classify(_ sql: String) -> Command { classify(tokens: PGDialect.tokenize(sql), sql: sql) }

    private func classify(tokens: [PGDialect.Token], sql: String) -> Command {
        let words = tokens.filter { !$0.isSpace }
        guard let first = words.first else { return .empty }
        switch first.upper {
        case "SET", "RESET":
            if first.upper == "SET", let refusal = setSandgateParameter(tokens: tokens) {
                return refusal
            }
            if first.upper == "SET", words.count >= 3 {
                // A dotted name (`sandgate.purpose`) is several tokens: the name is everything up
                // to `=`/`TO`, the value everything after it (`public-health.v2` is several too).
                let nameStart = words[1].upper == "SESSION" || words[1].upper == "LOCAL" ? 2 : 1
                if let equals = words.firstIndex(where: { $0.text == "=" || $0.upper == "TO" }), equals > nameStart, equals + 1 < words.count {
                    set(words[nameStart..<equals].map(\.text).joined(), words[(equals + 1)...].map(\.text).joined())
                }
            } else if first.upper == "RESET", words.count >= 2, ["ALL", "SANDGATE.PURPOSE"].contains(words.dropFirst().map(\.upper).joined()) {
                purpose = nil
            }
            return .utility(tag: first.upper)
        case "BEGIN", "START": return .utility(tag: "BEGIN")
        case "COMMIT", "END": return .utility(tag: "COMMIT")
        case "ROLLBACK", "ABORT": return .utility(tag: words.count > 1 && words[1].upper == "TO" ? "ROLLBACK" : "ROLLBACK")
        case "DISCARD": return .utility(tag: "DISCARD ALL")
        case "DEALLOCATE": return .utility(tag: "DEALLOCATE")
        case "SAVEPOINT": return .utility(tag: "SAVEPOINT")
        case "RELEASE": return .utility(tag: "RELEASE")
        case "LISTEN", "UNLISTEN": return .utility(tag: first.upper)
        case "SHOW":
            let name = words.dropFirst().map(\.text).joined(separator: " ").lowercased()
            return .show(name: name)
        default:
            if PGCatalog.isCatalogQuery(tokens) {
                return .catalog(sql: PGDialect.catalogSQL(sql, consumer: consumer, dataset: dataset))
            }
            return .query(sql: PGDialect.render(PGDialect.translate(tokens)))
        }
    }

    /// The highest `$n` in `sql`.
    static func parameterCount(_ sql: String) -> Int {
        PGDialect.tokenize(sql).reduce(0) { highest, token in
            token.kind == .parameter ? max(highest, Int(token.text.dropFirst()) ?? 0) : highest
        }
    }

    private func simpleQuery(_ sql: String, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let loop = context.eventLoop
        let pieces = PGDialect.statementTokens(sql)
        guard !pieces.isEmpty else {
            output.writePGMessage(UInt8(ascii: "I")) { _ in }
            readyForQuery(context)
            return loop.makeSucceededVoidFuture()
        }
        // Each statement runs on its own, metered and recorded, as PostgreSQL runs them; the
        // first error ends the string.
        var chain = loop.makeSucceededFuture(true)
        for piece in pieces {
            chain = chain.assumeIsolated().flatMap { [self] carryOn -> EventLoopFuture<Bool> in
                guard carryOn else { return loop.makeSucceededFuture(false) }
                let statement = Statement(command: classify(tokens: piece, sql: PGDialect.render(piece)), parameterTypes: [], parameterCount: 0)
                portals[""] = Portal(statement: statement, parameters: [], resultFormats: [])
                return run(portal: "", context: context).hop(to: loop).assumeIsolated().map { [self] () -> Bool in
                    guard var portal = portals[""] else { return false }
                    portals[""] = nil
                    if let error = portal.error {
                        writeError(error)
                        if case .failed(let response)? = portal.rows { notice(response) }
                        return false
                    }
                    // Simple query: RowDescription only for statements that return rows (no NoData).
                    if let columns = columns(of: portal) { writeRowDescription(columns, binary: []) }
                    _ = sendRows(&portal, limit: .max)
                    finish(&portal)
                    flushIfLarge(context)
                    return true
                }.nonisolated()
            }.nonisolated()
        }
        return chain.hop(to: loop).assumeIsolated().map { [self] _ in readyForQuery(context) }.nonisolated()
    }

    private func flushIfLarge(_ context: ChannelHandlerContext) {
        if output.readableBytes > 256 * 1024 { flush(context) }
    }

    /// Runs the portal's command once (on a worker), keeping its rows or error in the portal.
    private func run(portal name: String, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let loop = context.eventLoop
        guard let portal = portals[name], portal.rows == nil, portal.error == nil else { return loop.makeSucceededVoidFuture() }
        let parameters = portal.parameters
        switch portal.statement.command {
        case .empty, .utility:
            return loop.makeSucceededVoidFuture()
        case .refused(let error):
            portals[name]?.error = error
            return loop.makeSucceededVoidFuture()
        case .show(let setting):
            let value = setting == "sandgate.purpose" || setting == "sandgate . purpose" ? purpose ?? "" : Self.showValue(setting, consumer: consumer)
            portals[name]?.rows = .catalog(PGCatalog.Answer(columns: [PGColumn(name: setting, type: .text)], rows: [[.text(value)]]))
            return loop.makeSucceededVoidFuture()
        case .catalog(let sql):
            let box = catalog, gateway = services.gateway, dataset = dataset, consumer = consumer
            // A consumer or grant revoked since login ends the session here as in a data query.
            guard gateway.consumers.consumers[consumer]?.grants[dataset] != nil, let runtime = gateway.runtime(dataset) else {
                portals[name]?.error = GatewayError(.authFailed, "consumer '\(consumer)' has no grant for dataset '\(dataset)' any more")
                return loop.makeSucceededVoidFuture()
            }
            // Catalog queries share the consumer's admission (in-flight cap, refusals) with its data queries.
            let version = runtime.policy.version
            var request = QueryRequest(consumer: consumer, dataset: dataset, sql: sql, clientAddress: address, purpose: purpose)
            request.kind = .catalog
            let answer = QueryAdmission(services: services).admit(request, on: loop, refused: { response -> Result<PGCatalog.Answer, GatewayError> in
                .failure(response.error ?? GatewayError(.overloaded, "refused"))
            }) { done in
                let outcome = Self.catalogAnswer(sql, parameters: parameters, box: box, gateway: gateway, runtime: runtime, version: version,
                                                 dataset: dataset, consumer: consumer)
                done(outcome, "catalog")
            }
            return answer.hop(to: loop).assumeIsolated().map { [self] answer in
                let outcome: Result<PGCatalog.Answer, GatewayError> = switch answer {
                case .answered(let outcome): outcome
                case .unavailable(let error): .failure(error)
                }
                switch outcome {
                case .success(let answer): portals[name]?.rows = .catalog(answer)
                case .failure(let error):
                    services.logger.debug("catalog query refused", metadata: ["sql": "\(sql.prefix(4000))", "error": "\(error.message)"])
                    portals[name]?.error = error
                }
            }.nonisolated()
        case .query(let sql):
            var bound: QueryParameters = .none
            if !parameters.isEmpty {
                var named: [String: SQLValue] = [:]
                for (index, value) in parameters.enumerated() { named[String(index + 1)] = value }
                bound = .named(named)
            }
            cancellation.reset()
            let request = QueryRequest(consumer: consumer, dataset: dataset, sql: sql, parameters: bound, cancellation: cancellation, clientAddress: address, purpose: purpose)
            // Overload refusals are recorded like every authenticated request, on a worker.
            let answer = QueryAdmission(services: services).query(request, on: loop) { $0 }
            return answer.hop(to: loop).assumeIsolated().map { [self] answer in
                let response: QueryResponse
                switch answer {
                case .answered(let answered): response = answered
                case .unavailable(let error):
                    portals[name]?.error = error
                    return
                }
                switch response.outcome {
                case .success(let result): portals[name]?.rows = .data(result, response)
                case .failure(let error):
                    portals[name]?.error = error
                    portals[name]?.rows = .failed(response)
                }
            }.nonisolated()
        }
    }

    /// The answer of a catalog query from the session's catalog, rebuilt when a reload changed
    /// the policy (a column hidden since must disappear). Runs on a worker.
    private static func catalogAnswer(_ sql: String, parameters: [SQLValue], box: CatalogBox, gateway: Gateway, runtime: DatasetRuntime,
                                      version: String, dataset: String, consumer: String) -> Result<PGCatalog.Answer, GatewayError> {
        if box.catalog?.policyVersion != version { box.catalog = nil }
        if box.catalog == nil {
            guard case .success(let description) = gateway.describe(dataset: dataset, consumer: consumer) else {
                return .failure(GatewayError(.unavailable, "the dataset's description is not available"))
            }
            do {
                box.catalog = try PGCatalog(description: description, declaredTypes: runtime.facts.declaredTypes, consumer: consumer)
                box.catalog?.policyVersion = version
            } catch {
                return .failure(GatewayError(.internal, "cannot build the catalog"))
            }
        }
        return box.catalog?.run(sql, parameters: parameters) ?? .failure(GatewayError(.internal, "no catalog"))
    }

    /// `SHOW name` (lower-cased, words as typed): the catalog's settings, the two-word spellings
    /// PostgreSQL accepts, and the session's user.
    static func showValue(_ name: String, consumer: String) -> String {
        switch name {
        case "session_authorization", "session authorization": consumer
        case "transaction isolation level": "read committed"
        default: PGCatalog.settings.first { $0.name.lowercased() == name }?.value ?? ""
        }
    }

    private func columns(of portal: Portal) -> [PGColumn]? {
        switch portal.rows {
        case .data(let result, _)?:
            return zip(result.columns, result.columnTypes).map { PGColumn(name: $0, type: PGType($1.kind)) }
        case .catalog(let answer)?:
            return answer.columns
        case .failed?, nil:
            return nil
        }
    }

    private func formats(_ portal: Portal, count: Int) -> [Bool] {
        (0..<count).map { index in
            let format = portal.resultFormats.isEmpty ? 0 : portal.resultFormats.count == 1 ? portal.resultFormats[0] : (index < portal.resultFormats.count ? portal.resultFormats[index] : 0)
            return format == 1
        }
    }

    /// RowDescription for a portal that returns rows, else NoData.
    private func describe(_ portal: Portal) {
        guard let columns = columns(of: portal) else {
            if case .query = portal.statement.command {} else { output.writePGMessage(UInt8(ascii: "n")) { _ in } }
            return
        }
        writeRowDescription(columns, binary: formats(portal, count: columns.count))
    }

    private func writeRowDescription(_ columns: [PGColumn], binary: [Bool]) {
        output.writePGMessage(UInt8(ascii: "T")) { buffer in
            buffer.writeInteger(Int16(clamping: columns.count))
            for (index, column) in columns.enumerated() {
                buffer.writePGString(column.name)
                buffer.writeInteger(Int32(0))
                buffer.writeInteger(Int16(0))
                buffer.writeInteger(column.type.rawValue)
                buffer.writeInteger(column.type.size)
                buffer.writeInteger(Int32(-1))
                buffer.writeInteger(Int16(index < binary.count && binary[index] ? 1 : 0))
            }
        }
    }

    private func describeStatement(_ statement: Statement, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let loop = context.eventLoop
        output.writePGMessage(UInt8(ascii: "t")) { buffer in
            let count = max(statement.parameterCount, statement.parameterTypes.count)
            buffer.writeInteger(Int16(clamping: count))
            for index in 0..<count {
                let declared = index < statement.parameterTypes.count ? statement.parameterTypes[index] : 0
                buffer.writeInteger(declared == 0 ? PGType.text.rawValue : declared)
            }
        }
        switch statement.command {
        case .query(let sql):
            let request = QueryRequest(consumer: consumer, dataset: dataset, sql: sql, clientAddress: address, purpose: purpose)
            let gateway = services.gateway
            return services.workers.runIfActive(eventLoop: loop) { gateway.columns(request) }.hop(to: loop).assumeIsolated().map { [self] outcome in
                switch outcome {
                case .success(let columns):
                    writeRowDescription(columns.map { PGColumn(name: $0.name, type: PGType($0.type.kind)) }, binary: [])
                case .failure(let error):
                    writeError(error)
                    skipUntilSync = true
                }
            }.nonisolated()
        case .show(let name):
            writeRowDescription([PGColumn(name: name, type: .text)], binary: [])
        case .catalog:
            // Described by running it with NULL parameters on the catalog (it holds no data).
            var portal = Portal(statement: statement, parameters: Array(repeating: .null, count: statement.parameterCount), resultFormats: [])
            let name = "\u{0}describe"
            portals[name] = portal
            return run(portal: name, context: context).hop(to: loop).assumeIsolated().map { [self] in
                portal = portals.removeValue(forKey: name) ?? portal
                if let error = portal.error {
                    writeError(error)
                    skipUntilSync = true
                } else {
                    describe(portal)
                }
            }.nonisolated()
        default:
            output.writePGMessage(UInt8(ascii: "n")) { _ in }
        }
        return loop.makeSucceededVoidFuture()
    }

    /// DataRows from the portal's cursor, at most `limit`; true when the rows are all sent.
    private func sendRows(_ portal: inout Portal, limit: Int) -> Bool {
        guard let columns = columns(of: portal) else { return true }
        let binary = formats(portal, count: columns.count)
        switch portal.rows {
        case .data(let result, _)?:
            let end = portal.cursor + min(limit, result.rowCount - portal.cursor)
            portal.batch = end - portal.cursor
            for row in portal.cursor..<end {
                output.writePGMessage(UInt8(ascii: "D")) { buffer in
                    buffer.writeInteger(Int16(clamping: columns.count))
                    for column in 0..<columns.count {
                        PGValueEncoder.write(result.cell(row: row, column: column), type: columns[column].type, binary: binary[column], into: &buffer)
                    }
                }
            }
            portal.cursor = end
            return end >= result.rowCount
        case .catalog(let answer)?:
            let end = portal.cursor + min(limit, answer.rows.count - portal.cursor)
            portal.batch = end - portal.cursor
            for row in answer.rows[portal.cursor..<end] {
                output.writePGMessage(UInt8(ascii: "D")) { buffer in
                    buffer.writeInteger(Int16(clamping: columns.count))
                    for (column, value) in row.enumerated() {
                        Self.write(value, type: columns[column].type, binary: binary[column], into: &buffer)
                    }
                }
            }
            portal.cursor = end
            return end >= answer.rows.count
        case .failed?, nil:
            return true
        }
    }

    static func write(_ value: SQLValue, type: PGType, binary: Bool, into buffer: inout ByteBuffer) {
        switch value {
        case .null: PGValueEncoder.write(.null, type: type, binary: binary, into: &buffer)
        case .integer(let number):
            if binary {
                switch type {
                case .int2: return PGValueEncoder.field(&buffer) { $0.writeInteger(Int16(truncatingIfNeeded: number)) }
                case .int4, .oid: return PGValueEncoder.field(&buffer) { $0.writeInteger(Int32(truncatingIfNeeded: number)) }
                case .char: return PGValueEncoder.field(&buffer) { $0.writeInteger(UInt8(truncatingIfNeeded: number)) }
                default: break
                }
            }
            PGValueEncoder.write(.integer(number), type: type, binary: binary, into: &buffer)
        case .real(let number):
            if binary, type == .float4 { return PGValueEncoder.field(&buffer) { $0.writeInteger(Float(number).bitPattern) } }
            PGValueEncoder.write(.real(number), type: type, binary: binary, into: &buffer)
        case .text(var text):
            if type == .bool, !binary { text = (text == "1" || text == "t") ? "t" : "f" }
            text.withUTF8 { PGValueEncoder.write(.text(UnsafeRawBufferPointer($0)), type: type, binary: binary, into: &buffer) }
        case .blob(let bytes):
            bytes.withUnsafeBytes { PGValueEncoder.write(.blob($0), type: type, binary: binary, into: &buffer) }
        }
    }

    /// CommandComplete and the usage notice.
    private func finish(_ portal: inout Portal) {
        let tag: String
        switch portal.statement.command {
        case .utility(let command):
            tag = command
            if command == "BEGIN" { inTransaction = true }
            if command == "COMMIT" || command == "ROLLBACK" { inTransaction = false }
        case .empty:
            output.writePGMessage(UInt8(ascii: "I")) { _ in }
            return
        case .show:
            tag = "SHOW"
        default:
            tag = "SELECT \(portal.batch)"
        }
        // One usage notice per query, when its last rows have gone out.
        if case .data(_, let response)? = portal.rows, !portal.noticed { notice(response) }
        portal.noticed = true
        output.writePGMessage(UInt8(ascii: "C")) { $0.writePGString(tag) }
    }

    /// The usage summary of a gateway query, as a NoticeResponse (unless the client asked for none).
    private func notice(_ response: QueryResponse) {
        guard notices, !response.usage.queryID.isEmpty else { return }
        // A result withheld because its record could not be written has no usage to report.
        if response.error?.code == .unavailable, response.usage.seq == 0 { return }
        let usage = response.usage
        var text = "sandgate: query \(usage.queryID), \(usage.rows) row(s), \(usage.maskedCells) masked cell(s), cost \(usage.costMicros) micro-\(usage.currency)"
        if let suppressed = usage.suppressedGroups {
            if suppressed > 0 { text += ", \(suppressed) group(s) below the threshold withheld" }
        } else {
            text += ", groups below the threshold are withheld"
        }
        if response.truncated { text += ", truncated by \(response.truncatedBy ?? "max_rows")" }
        // Differential privacy: what was spent, and how far each noisy column may be from the truth.
        if !usage.noise.isEmpty || usage.epsilonMicros > 0 {
            text += "; differential privacy: epsilon \(ResponseFormat.epsilonText(usage.epsilonMicros)) spent"
            if !usage.noise.isEmpty {
                text += ", 95% interval half-widths " + usage.noise.map { "\($0.column) ±\(ResponseFormat.halfWidthText($0.halfWidth))" }.joined(separator: ", ")
            }
        }
        // The receipt (`sandgate usage check-receipt`), as the JSON `usage` carries it.
        if usage.seq > 0 { text += "; receipt: node \(usage.nodeID), seq \(usage.seq), record_hash \(usage.recordHash)" }
        output.writePGMessage(UInt8(ascii: "N")) { buffer in
            Self.fields(&buffer, severity: "NOTICE", code: "00000", message: text, hint: "")
        }
    }
}

