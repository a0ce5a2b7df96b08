import Foundation
import NIOCore

/// Startup and SCRAM-SHA-256 authentication (CONTRACT.md §6, Startup and Authentication). The
/// crypto stays in `SCRAMExchange`; the state decides the steps and what each answer is.
extension PGProtocolState {
    static let serverVersion = "15.0"
    /// The request codes of SSLRequest and GSSENCRequest (protocol "versions" 1234.5679 and 1234.5680).
    static let sslRequestCode: Int32 = 80_877_103
    static let gssEncRequestCode: Int32 = 80_877_104

    mutating func startup(_ message: PGFrontendMessage) -> [PGAction] {
        switch message {
        case .sslRequest where sslNegotiated:
            return startup(.unsupportedProtocol(Self.sslRequestCode))
        case .gssEncRequest where gssNegotiated:
            return startup(.unsupportedProtocol(Self.gssEncRequestCode))
        case .sslRequest where tlsAvailable:
            // `S` goes out in plain text; the TLS handler then sits in front of the decoder, which
            // has nothing buffered (the client waits for this byte before its handshake). No GSS
            // encryption inside TLS, as in PostgreSQL.
            encrypted = true
            sslNegotiated = true
            gssNegotiated = true
            return [.startTLS]
        case .sslRequest, .gssEncRequest:
            // No TLS (or GSS encryption) here: the client continues in plain text or gives up (sslmode=require).
            if case .sslRequest = message { sslNegotiated = true } else { gssNegotiated = true }
            return [.refuseEncryption]
        case .cancel(let processID, let secret):
            // A cancel connection carries nothing else and is closed at once, as in PostgreSQL.
            phase = .closing
            return [.cancelBackend(processID: processID, secret: secret), .close]
        case .unsupportedProtocol(let version):
            return fatal("0A000", "unsupported frontend protocol \(version >> 16).\(version & 0xFFFF): sandgate speaks 3.0")
        case .startup(let parameters):
            guard let user = parameters["user"], !user.isEmpty else {
                return fatal("28000", "no user name given", hint: "connect with user = your consumer name and dbname = the dataset")
            }
            session.consumerClaim = user
            session.dataset = parameters["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
            if let options = parameters["options"] { session.applyOptions(options) }
            session.applicationName = parameters["application_name"] ?? ""
            phase = .saslInitial
            return [.write(.authenticationSASL), .flush]
        default:
            return fatal("08P01", "expected a startup packet")
        }
    }

    mutating func authenticate(_ message: PGFrontendMessage) -> [PGAction] {
        guard case .authentication(var body) = message else {
            return fatal("08P01", "expected a SASL message during authentication")
        }
        switch phase {
        case .saslInitial:
            guard let mechanism = body.readPGString(), let length = body.readInteger(as: Int32.self), length >= 0,
                  let data = body.readBytes(length: Int(length)) else {
                return fatal("08P01", "malformed SASLInitialResponse")
            }
            guard mechanism == "SCRAM-SHA-256" else {
                return fatal("28000", "SASL mechanism \(mechanism.prefix(40)) is not supported", hint: "use SCRAM-SHA-256 (no channel binding)")
            }
            return [.startSCRAM(user: session.consumerClaim, clientFirst: data)]
        case .saslContinue(let exchange):
            let data = body.readBytes(length: body.readableBytes) ?? []
            guard let signature = exchange.finish(clientFinal: data) else { return loginRejected() }
            return [.login(user: session.consumerClaim, signature: signature)]
        default:
            return []
        }
    }

    /// The server-first-message, or why the client-first-message was refused.
    mutating func scramStarted(_ result: Result<SCRAMExchange, SCRAMFailure>) -> [PGAction] {
        guard case .saslInitial = phase else { return [] }
        switch result {
        case .failure(let failure):
            return fatal("08P01", failure.reason)
        case .success(let exchange):
            phase = .saslContinue(exchange)
            return [.write(.authenticationSASLContinue(exchange.serverFirst)), .flush]
        }
    }

    /// A wrong proof, or a name that has no verifier (any more): recorded and paced like every
    /// failed login, and answered only then (`failedLoginRecorded`).
    mutating func loginRejected() -> [PGAction] {
        phase = .closing
        return [.recordFailedLogin(user: session.consumerClaim)]
    }

    /// The same answer for a wrong key, an unknown name and a consumer without a verifier.
    mutating func failedLoginRecorded() -> [PGAction] {
        fatal("28P01", "password authentication failed for user \"\(session.consumerClaim.prefix(64))\"",
              hint: "the password is your sandgate API key; a consumer logs in over PostgreSQL only with a scram_sha256 verifier in consumers.yaml (`sandgate consumer add` writes one)")
    }

    /// Authenticated, but the database named is not a dataset granted to the consumer.
    mutating func datasetRefused(consumer: String, granted: [String]) -> [PGAction] {
        session.consumer = consumer
        return fatal("3D000", "database \"\(session.dataset.prefix(64))\" does not exist or is not granted to \(consumer)",
                     hint: granted.isEmpty ? "no dataset is granted to you" : "connect with dbname = one of: " + granted.joined(separator: ", "))
    }

    /// SASLFinal, AuthenticationOk, the parameters, BackendKeyData and the first ReadyForQuery.
    mutating func loginSucceeded(consumer: String, signature: [UInt8], backendKey: (processID: Int32, secret: Int32)) -> [PGAction] {
        guard case .saslContinue = phase else { return [] }
        session.consumer = consumer
        var actions: [PGAction] = [
            .write(.authenticationSASLFinal("v=" + Data(signature).base64EncodedString())),
            .write(.authenticationOk),
        ]
        let parameters = [
            ("application_name", session.applicationName), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
            ("default_transaction_read_only", "on"), ("in_hot_standby", "off"), ("integer_datetimes", "on"),
            ("IntervalStyle", "postgres"), ("is_superuser", "off"), ("server_encoding", "UTF8"),
            ("server_version", Self.serverVersion), ("session_authorization", consumer),
            ("standard_conforming_strings", "on"), ("TimeZone", "UTC"),
        ]
        actions += parameters.map { .write(.parameterStatus(name: $0.0, value: $0.1)) }
        actions.append(.write(.backendKeyData(processID: backendKey.processID, secret: backendKey.secret)))
        enterReady()
        return actions + readyForQuery()
    }
}
