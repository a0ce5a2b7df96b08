import NIOCore
import SandgateCore
import SandgateSQLite

/// What the NIO handler must do for the protocol state: write messages, flush, close, or carry
/// out a step that needs the world outside the state (TLS, the consumer list, the gateway).
enum PGAction: Sendable {
    case write(PGBackendMessage)
    case flush
    /// Flush when the pending output is large (between the statements of a simple query).
    case flushIfLarge
    case close
    /// Answer SSLRequest with `S` and put TLS in front of the decoder.
    case startTLS
    /// Answer SSLRequest or GSSENCRequest with `N`.
    case refuseEncryption
    case cancelBackend(processID: Int32, secret: Int32)
    /// Look up the claimed consumer's verifier and start SCRAM; answer with `scramStarted`.
    case startSCRAM(user: String, clientFirst: [UInt8])
    /// The proof matched: check the consumer and its grant; answer with `loginSucceeded`,
    /// `loginRejected` or `datasetRefused`.
    case login(user: String, signature: [UInt8])
    /// Count and record the failed login on a worker, pace it, then answer `failedLoginRecorded`.
    case recordFailedLogin(user: String)
    /// Run this through the admission path (or the workers) and answer `workFinished`.
    case run(PGWork)
    /// Tokenize and classify this statement text (off the event loop unless it is short) and
    /// answer `statementsPrepared`.
    case prepare(PGPreparation)
}

/// Work that leaves the event loop. The state names what to run; the handler builds the request
/// (address, cancellation) and sends it through `QueryAdmission`.
enum PGWork: Sendable {
    case query(sql: String, parameters: QueryParameters, purpose: String?)
    case catalog(sql: String, parameters: [SQLValue], purpose: String?)
    /// The columns of a statement, from preparing it without running it (Describe statement).
    case columns(sql: String, purpose: String?)
}

/// What came of a `PGWork`.
enum PGWorkOutcome: Sendable {
    /// The gateway's response (a result or a recorded refusal).
    case answered(QueryResponse)
    case catalog(PGCatalog.Answer)
    case columns([PGColumn])
    /// Refused before or without a gateway response (shutdown, a catalog failure, a revoked grant).
    case refused(GatewayError)
}

/// The PostgreSQL protocol of one connection as a value (CONTRACT.md §6): it takes decoded
/// frontend messages and the outcomes of work it asked for, and returns actions. No channel and
/// no gateway inside, so every transition is testable without a socket; the handler
/// (`PGSession`) feeds it one message at a time and performs what it returns.
struct PGProtocolState: Sendable {
    enum Phase: Sendable {
        case startup
        case saslInitial
        case saslContinue(SCRAMExchange)
        case ready
        case closing
    }

    /// At most this many portals and prepared statements (and statement text) per connection.
    static let maxPortals = 16
    static let maxStatements = 200
    static let maxStatementBytes = 4 << 20
    /// At most this many parameters per statement: Bind's count is an Int16, so no client can
    /// bind more.
    static let maxParameters = Int(Int16.max)

    /// Where the connection is; set by the transitions in this type and its extensions only.
    var phase = Phase.startup
    /// Whether SSLRequest may be answered `S` (the listener has a certificate).
    let tlsAvailable: Bool
    var encrypted = false
    /// The session's settings: names from the startup packet, purpose, notices.
    var session = PGSessionSettings()
    var statements: [String: PGStatement] = [:]
    var portals: [String: PGPortal] = [:]
    /// After an error in the extended protocol, messages are skipped until Sync.
    var skipUntilSync = false
    /// SSLRequest and GSSENCRequest were answered: another is a protocol version sandgate does
    /// not speak, as in PostgreSQL (`ProcessStartupPacket` negotiates each once).
    var sslNegotiated = false
    var gssNegotiated = false
    /// BEGIN … COMMIT/ROLLBACK: ReadyForQuery says `T` (sandgate has no transactions, the status is for drivers).
    var inTransaction = false
    /// What to do when the running work's outcome arrives (one piece of work at a time).
    var pending: PGContinuation?

    init(tlsAvailable: Bool = false) {
        self.tlsAvailable = tlsAvailable
    }

    /// Authenticated: the consumer whose name the proof established.
    var isAuthenticated: Bool { !session.consumer.isEmpty }

    /// Bytes of results kept in portals, the consumer's unsent bytes (§5).
    var heldBytes: Int { portals.values.reduce(0) { $0 + ($1.rows?.heldBytes ?? 0) } }

    /// The connection went away: nothing kept, nothing more to do.
    mutating func connectionClosed() {
        phase = .closing
        portals.removeAll()
        statements.removeAll()
        pending = nil
    }

    /// The next frontend message.
    mutating func receive(_ message: PGFrontendMessage) -> [PGAction] {
        if case .closing = phase { return [] }
        switch message {
        case .malformed(let reason): return fatal("08P01", "protocol violation: \(reason)")
        case .terminate:
            phase = .closing
            return [.close]
        default: break
        }
        switch phase {
        case .startup: return startup(message)
        case .saslInitial, .saslContinue: return authenticate(message)
        case .closing: return []
        case .ready: break
        }
        // PostgreSQL has no `p` after authentication (its backend loop ends the session on any
        // message type it does not know), skipping until Sync or not.
        if case .authentication = message { return fatal("08P01", "invalid frontend message type \(UInt8(ascii: "p"))") }
        if skipUntilSync {
            guard case .sync = message else { return [] }
            skipUntilSync = false
            return sync()
        }
        return ready(message)
    }

    private mutating func ready(_ message: PGFrontendMessage) -> [PGAction] {
        switch message {
        case .query(let sql): return simpleQuery(sql)
        case .parse(let name, let sql, let types): return parse(name: name, sql: sql, types: types)
        case .bind(let portal, let statement, let formats, let values, let resultFormats):
            return bind(portal: portal, statement: statement, formats: formats, values: values, resultFormats: resultFormats)
        case .describe(let kind, let name):
            return kind == UInt8(ascii: "S") ? describeStatement(name) : describePortal(name)
        case .execute(let name, let maxRows): return execute(name, maxRows: maxRows)
        case .close(let kind, let name):
            if kind == UInt8(ascii: "S") { statements[name] = nil } else { portals[name] = nil }
            return [.write(.closeComplete)]
        case .sync: return sync()
        case .flush: return [.flush]
        case .unknown(let type):
            return fatal("08P01", "unsupported message type '\(Unicode.Scalar(type).escaped(asASCII: true))'",
                         hint: "sandgate speaks the simple and extended query protocols; COPY and function calls are not available")
        default:
            return fatal("08P01", "unexpected message")
        }
    }

    /// Sync: the unnamed portal ends, ReadyForQuery goes out.
    private mutating func sync() -> [PGAction] {
        portals[""] = nil
        return readyForQuery()
    }

    /// The outcome of the work the last action asked for.
    mutating func workFinished(_ outcome: PGWorkOutcome) -> [PGAction] {
        guard case .ready = phase, let continuation = pending, !continuation.isPreparation else { return [] }
        pending = nil
        if case .describeQueryStatement = continuation {
            switch outcome {
            case .columns(let columns):
                return [.write(.rowDescription(columns, binary: []))]
            case .refused(let error):
                return failExtended(PGErrorFields(error))
            case .answered, .catalog:
                return failExtended(PGErrorFields(code: "XX000", message: "internal: unexpected answer to Describe"))
            }
        }
        if let name = continuation.portal { keep(outcome, in: name) }
        return resume(continuation)
    }

    /// The work could not be started (the workers stopped): nothing is answered, as before.
    mutating func workAbandoned() {
        pending = nil
    }

    private mutating func keep(_ outcome: PGWorkOutcome, in name: String) {
        switch outcome {
        case .answered(let response):
            switch response.outcome {
            case .success(let result): portals[name]?.rows = .data(result, response)
            case .failure(let error):
                portals[name]?.error = error
                portals[name]?.rows = .failed(response)
            }
        case .catalog(let answer): portals[name]?.rows = .catalog(answer)
        case .refused(let error): portals[name]?.error = error
        case .columns: portals[name]?.error = GatewayError(.internal, "unexpected columns for a portal")
        }
    }

    // MARK: Answers

    func readyForQuery() -> [PGAction] {
        [.write(.readyForQuery(inTransaction: inTransaction)), .flush]
    }

    /// An error that ends the connection (before or during authentication, or a protocol violation).
    mutating func fatal(_ code: String, _ message: String, hint: String = "") -> [PGAction] {
        phase = .closing
        return [.write(.error(PGErrorFields(severity: "FATAL", code: code, message: message, hint: hint))), .flush, .close]
    }

    /// An error in the extended protocol: messages are skipped until Sync.
    mutating func failExtended(_ fields: PGErrorFields) -> [PGAction] {
        skipUntilSync = true
        return [.write(.error(fields))]
    }

    /// The usage notice of a gateway response, unless the client asked for none.
    func notice(_ response: QueryResponse) -> [PGAction] {
        guard session.notices, let text = PGUsageNotice.text(response) else { return [] }
        return [.write(.notice(text))]
    }

    mutating func enterReady() {
        phase = .ready
    }

    mutating func setTransaction(_ tag: String) {
        if tag == "BEGIN" { inTransaction = true }
        if tag == "COMMIT" || tag == "ROLLBACK" { inTransaction = false }
    }
}
