import Foundation
import NIOCore
import SandgateCore
import SandgatePolicy
@testable import SandgateServer
import SandgateSQLite
import Testing

/// A test's view of the actions: the backend messages as their type characters (one `D` per
/// DataRow, as on the wire), the first error, whether the connection closes, the work asked for.
extension Array where Element == PGAction {
    var wire: String {
        var text = ""
        for case .write(let message) in self {
            if case .dataRows(let batch) = message {
                text += String(repeating: "D", count: batch.range.count)
            } else {
                text.append(Character(Unicode.Scalar(message.type)))
            }
        }
        return text
    }

    var error: PGErrorFields? {
        for case .write(.error(let fields)) in self { return fields }
        return nil
    }

    var closes: Bool { contains { if case .close = $0 { true } else { false } } }

    var work: PGWork? {
        guard case .run(let work)? = last else { return nil }
        return work
    }

    var tags: [String] {
        compactMap { if case .write(.commandComplete(let tag)) = $0 { tag } else { nil } }
    }

    var readyStatus: Bool? {
        for case .write(.readyForQuery(let inTransaction)) in self { return inTransaction }
        return nil
    }
}

extension PGProtocolState {
    /// `receive`, with a statement text it asks to prepare prepared at once (the handler does it
    /// on the loop or the decoder threads and answers the same way).
    mutating func handle(_ message: PGFrontendMessage) -> [PGAction] {
        var actions = receive(message)
        while case .prepare(let preparation)? = actions.last {
            actions.removeLast()
            actions += statementsPrepared(preparation.prepare())
        }
        return actions
    }
}

extension Array where Element == PGAction {
    /// The statement text the last action asks to prepare.
    var preparation: PGPreparation? {
        guard case .prepare(let preparation)? = last else { return nil }
        return preparation
    }
}

/// Frontend messages as a client would send them, built without bytes on a socket.
enum PGClient {
    static let password = "sg_test_key"
    static let verifier = SCRAMVerifier.make(password: password, salt: Array(repeating: 7, count: 16), iterations: 4096)
    static let clientFirstBare = "n=,r=rOprNGfwEbeRWgbNEkqO"

    static func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    static func saslInitial(mechanism: String = "SCRAM-SHA-256", clientFirst: String = "n,," + clientFirstBare) -> PGFrontendMessage {
        let data = Array(clientFirst.utf8)
        return .authentication(buffer(PGTestClient.cString(mechanism) + PGTestClient.int32(Int32(data.count)) + data))
    }

    static func startup(user: String = "analyst-a", database: String = "retail", options: String? = nil) -> PGFrontendMessage {
        var parameters = ["user": user, "database": database]
        if let options { parameters["options"] = options }
        return .startup(parameters: parameters)
    }

    static func bind(portal: String = "", statement: String = "", formats: [Int16] = [], values: [[UInt8]?] = [], results: [Int16] = []) -> PGFrontendMessage {
        .bind(portal: portal, statement: statement, parameterFormats: formats, parameters: values.map { $0.map(buffer) }, resultFormats: results)
    }

    static let catalogRows = PGCatalog.Answer(columns: [PGColumn(name: "relname", type: .text)], rows: [[.text("a")], [.text("b")], [.text("c")]])
}

/// Drives `PGProtocolState` through startup, authentication and the query protocols, with no
/// socket: each test feeds messages and outcomes and checks one answer.
@Suite struct PGProtocolStateTests {
    /// A state after startup and the SASL initial response, with the server-first-message sent.
    static func challenged(options: String? = nil) throws -> (PGProtocolState, SCRAMExchange) {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup(options: options))
        _ = state.handle(PGClient.saslInitial())
        let exchange = try SCRAMExchange.start(clientFirst: Array(("n,," + PGClient.clientFirstBare).utf8), verifier: PGClient.verifier,
                                               name: "analyst-a", secret: [1, 2, 3]).get()
        _ = state.scramStarted(.success(exchange))
        return (state, exchange)
    }

    /// A state logged in as analyst-a on retail, ready for queries.
    static func ready(options: String? = nil) throws -> PGProtocolState {
        var (state, exchange) = try challenged(options: options)
        let final = PGTestClient.clientFinal(password: PGClient.password, clientFirstBare: PGClient.clientFirstBare, serverFirst: exchange.serverFirst)
        guard case .login(_, let signature)? = state.handle(.authentication(PGClient.buffer(final))).last else {
            Issue.record("the right proof did not lead to a login")
            return state
        }
        _ = state.loginSucceeded(consumer: "analyst-a", signature: signature, backendKey: (processID: 7, secret: 8))
        return state
    }

    // MARK: Startup

    @Test("SSLRequest without a certificate is answered N and startup goes on")
    func sslRefused() {
        var state = PGProtocolState()
        let actions = state.handle(.sslRequest)
        guard case .refuseEncryption? = actions.first, actions.count == 1 else { Issue.record("\(actions)"); return }
        #expect(state.handle(PGClient.startup()).wire == "R")
    }

    @Test("SSLRequest with a certificate starts TLS once; another SSLRequest or a GSSENCRequest after it is FATAL 0A000, as in PostgreSQL")
    func sslAccepted() {
        for second in [PGFrontendMessage.sslRequest, .gssEncRequest] {
            var state = PGProtocolState(tlsAvailable: true)
            guard case .startTLS? = state.handle(.sslRequest).first else { Issue.record("no TLS"); return }
            let actions = state.handle(second)
            #expect(actions.error?.code == "0A000" && actions.error?.severity == "FATAL" && actions.closes)
        }
    }

    @Test("a second SSLRequest after N is FATAL 0A000 (protocol 1234.5679) and closes; GSSENCRequest may still follow the first", arguments: [true, false])
    func secondSSLRequest(gssBetween: Bool) {
        var state = PGProtocolState()
        _ = state.handle(.sslRequest)
        if gssBetween { guard case .refuseEncryption? = state.handle(.gssEncRequest).first else { Issue.record("GSS after SSL N"); return } }
        let actions = state.handle(.sslRequest)
        #expect(actions.error?.code == "0A000" && actions.error?.message.contains("1234.5679") == true && actions.closes)
    }

    @Test("a second GSSENCRequest is FATAL 0A000 and closes; SSLRequest may follow the first")
    func secondGSSRequest() {
        var state = PGProtocolState()
        _ = state.handle(.gssEncRequest)
        guard case .refuseEncryption? = state.handle(.sslRequest).first else { Issue.record("SSL after GSS N"); return }
        #expect(state.handle(.gssEncRequest).error?.code == "0A000")
    }

    @Test("GSSENCRequest is always answered N")
    func gssRefused() {
        var state = PGProtocolState(tlsAvailable: true)
        guard case .refuseEncryption? = state.handle(.gssEncRequest).first else { Issue.record("not refused"); return }
    }

    @Test("CancelRequest cancels the named backend and closes the connection")
    func cancelRequest() {
        var state = PGProtocolState()
        let actions = state.handle(.cancel(processID: 42, secret: -9))
        guard case .cancelBackend(42, -9)? = actions.first, case .close? = actions.last else { Issue.record("\(actions)"); return }
        #expect(state.handle(PGClient.startup()).isEmpty, "nothing more is read on a cancel connection")
    }

    @Test("a protocol version other than 3.0 is FATAL 0A000 and closes")
    func badProtocolVersion() {
        var state = PGProtocolState()
        let actions = state.handle(.unsupportedProtocol(131_072))
        #expect(actions.error == PGErrorFields(severity: "FATAL", code: "0A000", message: "unsupported frontend protocol 2.0: sandgate speaks 3.0"))
        #expect(actions.closes)
    }

    @Test("a query before the startup packet is FATAL 08P01 and closes")
    func messageBeforeStartup() {
        var state = PGProtocolState()
        let actions = state.handle(.query("SELECT 1"))
        #expect(actions.error == PGErrorFields(severity: "FATAL", code: "08P01", message: "expected a startup packet"))
        #expect(actions.closes)
    }

    @Test("a startup packet without a user is FATAL 28000")
    func startupWithoutUser() {
        var state = PGProtocolState()
        #expect(state.handle(.startup(parameters: ["database": "retail"])).error?.code == "28000")
    }

    @Test("the startup packet asks for SCRAM-SHA-256; the dataset defaults to the user name")
    func startupAsksForSCRAM() {
        var state = PGProtocolState()
        let actions = state.handle(.startup(parameters: ["user": "kate"]))
        guard case .write(.authenticationSASL)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(state.session.dataset == "kate")
    }

    @Test("options=-c sandgate.purpose=… sets the session's purpose")
    func startupOptions() {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup(options: "-c sandgate.purpose=public-health -csandgate.notices=off"))
        #expect(state.session.purpose == "public-health" && state.session.notices == false)
    }

    @Test("a malformed message (a lying length, a truncated body) is FATAL 08P01 with its reason", arguments: [false, true])
    func malformed(afterLogin: Bool) throws {
        var state = afterLogin ? try Self.ready() : PGProtocolState()
        let actions = state.handle(.malformed("invalid message length -5"))
        #expect(actions.error == PGErrorFields(severity: "FATAL", code: "08P01", message: "protocol violation: invalid message length -5"))
    }

    // MARK: Authentication

    @Test("during authentication anything but a SASL message is FATAL 08P01")
    func nonSASLDuringAuthentication() {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        #expect(state.handle(.query("SELECT 1")).error?.message == "expected a SASL message during authentication")
    }

    @Test("a truncated SASLInitialResponse is FATAL 08P01")
    func truncatedSASLInitial() {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        let body = PGClient.buffer(PGTestClient.cString("SCRAM-SHA-256") + PGTestClient.int32(50) + [1, 2])
        #expect(state.handle(.authentication(body)).error?.message == "malformed SASLInitialResponse")
    }

    @Test("a SASL mechanism other than SCRAM-SHA-256 is FATAL 28000")
    func otherMechanism() {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        #expect(state.handle(PGClient.saslInitial(mechanism: "SCRAM-SHA-256-PLUS")).error?.code == "28000")
    }

    @Test("the SASL initial response asks the handler to start SCRAM for the claimed name")
    func startsSCRAM() {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        let actions = state.handle(PGClient.saslInitial())
        guard case .startSCRAM("analyst-a", let first)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(first == Array(("n,," + PGClient.clientFirstBare).utf8))
    }

    @Test("a client-first-message SCRAM refuses (bad nonce, channel binding) is FATAL 08P01 with the reason", arguments: [
        ("n,,n=,r=", "malformed SCRAM client nonce"),
        ("p=tls-server-end-point,,n=,r=abc", "SCRAM channel binding is not supported on this listener (no TLS); connect with channel_binding=disable"),
        ("n,,", "malformed SCRAM client nonce"),
    ])
    func scramStartRefused(clientFirst: String, reason: String) {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        _ = state.handle(PGClient.saslInitial(clientFirst: clientFirst))
        let started = SCRAMExchange.start(clientFirst: Array(clientFirst.utf8), verifier: PGClient.verifier, name: "analyst-a", secret: [1])
        #expect(state.scramStarted(started).error == PGErrorFields(severity: "FATAL", code: "08P01", message: reason))
    }

    @Test("the server-first-message goes out as AuthenticationSASLContinue")
    func serverFirst() throws {
        var state = PGProtocolState()
        _ = state.handle(PGClient.startup())
        _ = state.handle(PGClient.saslInitial())
        let exchange = try SCRAMExchange.start(clientFirst: Array(("n,," + PGClient.clientFirstBare).utf8), verifier: PGClient.verifier, name: "a", secret: [1]).get()
        guard case .write(.authenticationSASLContinue(let text))? = state.scramStarted(.success(exchange)).first else { Issue.record("no continue"); return }
        #expect(text == exchange.serverFirst)
    }

    @Test("a wrong password, a wrong nonce or a garbled proof is recorded as a failed login before any answer", arguments: ["password", "nonce", "proof"])
    func badProof(what: String) throws {
        var (state, exchange) = try Self.challenged()
        var final = PGTestClient.clientFinal(password: what == "password" ? "wrong" : PGClient.password,
                                             clientFirstBare: PGClient.clientFirstBare, serverFirst: exchange.serverFirst)
        if what == "nonce" { final = Array(String(decoding: final, as: UTF8.self).replacingOccurrences(of: "r=rOpr", with: "r=XXpr").utf8) }
        if what == "proof" { final = Array("c=biws,r=\(exchange.nonce),p=***".utf8) }
        let actions = state.handle(.authentication(PGClient.buffer(final)))
        guard case .recordFailedLogin("analyst-a")? = actions.first, actions.count == 1 else { Issue.record("\(actions)"); return }
    }

    @Test("a recorded failed login is answered FATAL 28P01 with the hint, and the connection closes")
    func failedLoginAnswer() throws {
        var (state, _) = try Self.challenged()
        _ = state.handle(.authentication(PGClient.buffer(Array("c=biws,r=x,p=AAAA".utf8))))
        let actions = state.failedLoginRecorded()
        #expect(actions.error?.code == "28P01" && actions.error?.message == "password authentication failed for user \"analyst-a\"" && actions.closes)
    }

    @Test("the right proof asks for the login with the server signature")
    func rightProof() throws {
        var (state, exchange) = try Self.challenged()
        let final = PGTestClient.clientFinal(password: PGClient.password, clientFirstBare: PGClient.clientFirstBare, serverFirst: exchange.serverFirst)
        let actions = state.handle(.authentication(PGClient.buffer(final)))
        guard case .login("analyst-a", let signature)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(signature.count == 32)
    }

    @Test("a consumer whose verifier went away between the steps fails like a wrong password")
    func verifierGone() throws {
        var (state, _) = try Self.challenged()
        guard case .recordFailedLogin("analyst-a")? = state.loginRejected().first else { Issue.record("not recorded"); return }
    }

    @Test("a login answers SASLFinal, AuthenticationOk, the parameters, BackendKeyData and ReadyForQuery")
    func loginAnswer() throws {
        var (state, _) = try Self.challenged()
        let actions = state.loginSucceeded(consumer: "analyst-a", signature: Array(repeating: 1, count: 32), backendKey: (processID: 3, secret: 4))
        #expect(actions.wire == "RR" + String(repeating: "S", count: 13) + "KZ")
    }

    @Test("a dataset not granted ends the login with FATAL 3D000 naming the granted ones")
    func datasetRefused() throws {
        var (state, _) = try Self.challenged()
        let error = state.datasetRefused(consumer: "analyst-a", granted: ["retail", "clinic"]).error
        #expect(error?.code == "3D000" && error?.hint == "connect with dbname = one of: retail, clinic")
    }

    // MARK: Simple query

    @Test("an empty query string answers EmptyQueryResponse and ReadyForQuery")
    func emptyQuery() throws {
        var state = try Self.ready()
        #expect(state.handle(.query("  ; ")).wire == "IZ")
    }

    @Test("BEGIN; SET …; COMMIT complete with their tags and run nothing")
    func utilityStatements() throws {
        var state = try Self.ready()
        let actions = state.handle(.query("BEGIN; SET search_path = public; COMMIT"))
        #expect(actions.tags == ["BEGIN", "SET", "COMMIT"] && actions.wire == "CCCZ")
    }

    @Test("BEGIN sets the ReadyForQuery status to T, ROLLBACK back to I", arguments: [("BEGIN", true), ("BEGIN; ROLLBACK", false), ("START TRANSACTION; END", false)])
    func transactionStatus(sql: String, inTransaction: Bool) throws {
        var state = try Self.ready()
        #expect(state.handle(.query(sql)).readyStatus == inTransaction)
    }

    @Test("a data query is sent as work for admission, translated, with the session's purpose")
    func dataQueryIsWork() throws {
        var state = try Self.ready(options: "-c sandgate.purpose=audit")
        guard case .query(let sql, .none, "audit")? = state.handle(.query("SELECT amount::int FROM orders")).work else { Issue.record("no work"); return }
        #expect(sql == "SELECT CAST(amount AS INTEGER) FROM orders")
    }

    @Test("a refused data query answers its error and ReadyForQuery")
    func refusedDataQuery() throws {
        var state = try Self.ready()
        _ = state.handle(.query("SELECT 1"))
        let actions = state.workFinished(.refused(GatewayError(.overloaded, "too many")))
        #expect(actions.wire == "EZ" && actions.error?.code == "53000")
    }

    @Test("the first error in a simple-query string stops the statements after it")
    func firstErrorStops() throws {
        var state = try Self.ready()
        _ = state.handle(.query("SELECT relname FROM pg_class; SELECT 2"))
        let actions = state.workFinished(.refused(GatewayError(.noSuchTable, "no")))
        #expect(actions.wire == "EZ" && actions.work == nil)
    }

    @Test("statements of a string run one after another: the second is asked for once the first answered")
    func statementsInTurn() throws {
        var state = try Self.ready()
        _ = state.handle(.query("SELECT relname FROM pg_class; SELECT 2 AS two"))
        let actions = state.workFinished(.catalog(PGClient.catalogRows))
        guard case .query(let sql, _, _)? = actions.work else { Issue.record("\(actions)"); return }
        #expect(actions.wire + "|" + sql == "TDDDC| SELECT 2 AS two")
    }

    @Test("SET sandgate.purpose then SHOW sandgate.purpose answers the purpose")
    func setAndShowPurpose() throws {
        var state = try Self.ready()
        let actions = state.handle(.query("SET sandgate.purpose = 'audit'; SHOW sandgate.purpose"))
        guard case .write(.dataRows(let batch))? = actions.first(where: { if case .write(.dataRows) = $0 { true } else { false } }),
              case .catalog(let answer) = batch.rows else { Issue.record("\(actions)"); return }
        #expect(answer.rows == [[.text("audit")]])
    }

    @Test("RESET ALL clears the purpose")
    func resetPurpose() throws {
        var state = try Self.ready(options: "-c sandgate.purpose=audit")
        _ = state.handle(.query("RESET ALL"))
        #expect(state.session.purpose == nil)
    }

    @Test("a SET of a sandgate parameter that would not take effect is an error, never a SET tag", arguments: [
        ("SET LOCAL sandgate.purpose = 'x'", "22000"),
        ("SET sandgate.purpse = 'x'", "22000"),
        ("SET sandgate.purpose FROM CURRENT", "42601"),
        ("SET sandgate.purpose = 'a' 'b'", "42601"),
    ])
    func strictSet(sql: String, code: String) throws {
        var state = try Self.ready()
        let actions = state.handle(.query(sql))
        #expect(actions.error?.code == code && actions.tags.isEmpty)
    }

    // MARK: Extended query

    @Test("Parse answers ParseComplete; nothing runs")
    func parse() throws {
        var state = try Self.ready()
        #expect(state.handle(.parse(name: "s1", sql: "SELECT 1", parameterTypes: [])).wire == "1")
    }

    @Test("Parse of a named statement that exists is 42P05; the unnamed one is replaced")
    func duplicateStatement() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "s1", sql: "SELECT 1", parameterTypes: []))
        _ = state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: []))
        #expect(state.handle(.parse(name: "", sql: "SELECT 2", parameterTypes: [])).wire == "1")
        #expect(state.handle(.parse(name: "s1", sql: "SELECT 2", parameterTypes: [])).error?.code == "42P05")
    }

    @Test("Parse of a query over the size limit is 54000")
    func parseTooLong() throws {
        var state = try Self.ready()
        let sql = "SELECT '" + String(repeating: "x", count: Gateway.maxSQLBytes) + "'"
        #expect(state.handle(.parse(name: "", sql: sql, parameterTypes: [])).error?.code == "54000")
    }

    @Test("a parameter number no Bind can reach is 54000 at Parse (Describe would build a list of that many)", arguments: ["$2000000000", "$9223372036854775807", "$32768"])
    func parameterNumberBound(parameter: String) throws {
        var state = try Self.ready()
        #expect(state.handle(.parse(name: "", sql: "SELECT \(parameter)", parameterTypes: [])).error?.code == "54000")
    }

    @Test("more than 200 prepared statements on a connection is 53400")
    func statementCap() throws {
        var state = try Self.ready()
        for index in 0..<PGProtocolState.maxStatements { _ = state.handle(.parse(name: "s\(index)", sql: "SELECT 1", parameterTypes: [])) }
        #expect(state.handle(.parse(name: "one-more", sql: "SELECT 1", parameterTypes: [])).error?.code == "53400")
    }

    @Test("Bind to a statement that does not exist is 26000")
    func bindUnknownStatement() throws {
        var state = try Self.ready()
        #expect(state.handle(PGClient.bind(statement: "missing")).error?.code == "26000")
    }

    @Test("after an error, messages up to Sync are skipped; Sync answers ReadyForQuery alone")
    func skipUntilSync() throws {
        var state = try Self.ready()
        _ = state.handle(PGClient.bind(statement: "missing"))
        let skipped = [PGFrontendMessage.parse(name: "x", sql: "SELECT 1", parameterTypes: []), .execute(portal: "", maxRows: 0),
                       .describe(kind: UInt8(ascii: "S"), name: "x"), .flush, .query("SELECT 1")].flatMap { state.handle($0) }
        #expect(skipped.isEmpty)
        #expect(state.handle(.sync).wire == "Z")
    }

    @Test("the skip ends at Sync: the next batch is answered")
    func afterSync() throws {
        var state = try Self.ready()
        _ = state.handle(PGClient.bind(statement: "missing"))
        _ = state.handle(.sync)
        #expect(state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: [])).wire == "1")
    }

    @Test("Sync without an error answers ReadyForQuery and drops the unnamed portal")
    func syncWithoutError() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: []))
        _ = state.handle(PGClient.bind())
        _ = state.handle(.sync)
        #expect(state.handle(.execute(portal: "", maxRows: 0)).error?.code == "34000")
    }

    @Test("Execute of a portal that does not exist is 34000")
    func executeUnknownPortal() throws {
        var state = try Self.ready()
        #expect(state.handle(.execute(portal: "nope", maxRows: 0)).error?.code == "34000")
    }

    @Test("Describe of an absent statement is 26000, of an absent portal 34000", arguments: [("S", "26000"), ("P", "34000")])
    func describeAbsent(kind: String, code: String) throws {
        var state = try Self.ready()
        #expect(state.handle(.describe(kind: UInt8(ascii: Unicode.Scalar(kind) ?? "S"), name: "nope")).error?.code == code)
    }

    @Test("Close of a statement or portal that does not exist answers CloseComplete", arguments: ["S", "P"])
    func closeAbsent(kind: String) throws {
        var state = try Self.ready()
        #expect(state.handle(.close(kind: UInt8(ascii: Unicode.Scalar(kind) ?? "S"), name: "nope")).wire == "3")
    }

    @Test("a closed statement can no longer be bound")
    func closeStatement() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "s", sql: "SELECT 1", parameterTypes: []))
        _ = state.handle(.close(kind: UInt8(ascii: "S"), name: "s"))
        #expect(state.handle(PGClient.bind(statement: "s")).error?.code == "26000")
    }

    @Test("Bind with a named portal that exists is 42P03")
    func duplicatePortal() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: []))
        _ = state.handle(PGClient.bind(portal: "p"))
        #expect(state.handle(PGClient.bind(portal: "p")).error?.code == "42P03")
    }

    @Test("more than 16 open portals is 53400")
    func portalCap() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: []))
        for index in 0..<PGProtocolState.maxPortals { _ = state.handle(PGClient.bind(portal: "p\(index)")) }
        #expect(state.handle(PGClient.bind(portal: "one-more")).error?.code == "53400")
    }

    @Test("Bind format codes other than 0 and 1 are 08P01", arguments: [([Int16](), [Int16(9)]), ([Int16(2)], [Int16]())] as [([Int16], [Int16])])
    func formatCodes(formats: [Int16], results: [Int16]) throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT $1 AS one", parameterTypes: []))
        let values: [[UInt8]?] = formats.isEmpty ? [] : [Array("1".utf8)]
        #expect(state.handle(PGClient.bind(formats: formats, values: values, results: results)).error?.code == "08P01")
    }

    @Test("Bind with more parameter formats than values is 08P01")
    func formatCount() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT $1 AS one", parameterTypes: []))
        #expect(state.handle(PGClient.bind(formats: [0, 0], values: [Array("1".utf8)])).error?.code == "08P01")
    }

    @Test("a binary timestamp parameter at the edge of Int64 is 22000, never a crash", arguments: [(Int32(1114), Int64.min), (1184, Int64.min + 1), (1114, Int64.max)] as [(Int32, Int64)])
    func timestampOverflow(type: Int32, value: Int64) throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT $1 AS t", parameterTypes: [type]))
        let bytes = withUnsafeBytes(of: value.bigEndian) { Array($0) }
        #expect(state.handle(PGClient.bind(formats: [1], values: [bytes])).error?.code == "22000")
    }

    @Test("Bind turns $n into named parameters of the query")
    func boundParameters() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT $1 AS a, $2 AS b", parameterTypes: [20]))
        _ = state.handle(PGClient.bind(formats: [1, 0], values: [withUnsafeBytes(of: Int64(5).bigEndian) { Array($0) }, nil]))
        guard case .query(_, let parameters, _)? = state.handle(.execute(portal: "", maxRows: 0)).work else { Issue.record("no work"); return }
        #expect(parameters == .named(["1": .integer(5), "2": .null]))
    }

    @Test("Describe of a data statement: ParameterDescription, then the prepared columns")
    func describeDataStatement() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "s1", sql: "SELECT city FROM customers WHERE length(city) > $1", parameterTypes: [20]))
        let asked = state.handle(.describe(kind: UInt8(ascii: "S"), name: "s1"))
        guard case .columns? = asked.work else { Issue.record("\(asked)"); return }
        #expect(asked.wire + state.workFinished(.columns([PGColumn(name: "city", type: .text)])).wire == "tT")
    }

    @Test("a Describe whose preparation fails is an error and skips to Sync")
    func describeFails() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "s1", sql: "SELECT nope FROM customers", parameterTypes: []))
        _ = state.handle(.describe(kind: UInt8(ascii: "S"), name: "s1"))
        _ = state.workFinished(.refused(GatewayError(.noSuchColumn, "no")))
        #expect(state.handle(.execute(portal: "", maxRows: 0)).isEmpty)
    }

    @Test("Describe of a catalog statement runs it with NULL parameters and answers its columns")
    func describeCatalogStatement() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "c", sql: "SELECT relname FROM pg_class WHERE oid = $1", parameterTypes: []))
        let asked = state.handle(.describe(kind: UInt8(ascii: "S"), name: "c"))
        guard case .catalog(_, [.null], _)? = asked.work else { Issue.record("\(asked)"); return }
        #expect(state.workFinished(.catalog(PGClient.catalogRows)).wire == "T")
    }

    @Test("Describe of a utility statement answers NoData")
    func describeUtility() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "b", sql: "BEGIN", parameterTypes: []))
        #expect(state.handle(.describe(kind: UInt8(ascii: "S"), name: "b")).wire == "tn")
    }

    @Test("Execute with a row limit sends that many rows and PortalSuspended, the rest on the next Execute")
    func executeWithLimit() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT relname FROM pg_class", parameterTypes: []))
        _ = state.handle(PGClient.bind(portal: "p"))
        _ = state.handle(.execute(portal: "p", maxRows: 2))
        let first = state.workFinished(.catalog(PGClient.catalogRows))
        let second = state.handle(.execute(portal: "p", maxRows: 2))
        #expect(first.wire + "|" + second.wire == "DDs|DC" && second.tags == ["SELECT 1"])
    }

    @Test("a portal executed again after its last row answers SELECT 0 and runs nothing")
    func reexecutedPortal() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT relname FROM pg_class", parameterTypes: []))
        _ = state.handle(PGClient.bind(portal: "p"))
        _ = state.handle(.execute(portal: "p", maxRows: 0))
        _ = state.workFinished(.catalog(PGClient.catalogRows))
        #expect(state.handle(.execute(portal: "p", maxRows: 0)).tags == ["SELECT 0"])
    }

    @Test("Describe of a portal runs it once; Execute then sends its rows without running it again")
    func describeThenExecute() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT relname FROM pg_class", parameterTypes: []))
        _ = state.handle(PGClient.bind())
        _ = state.handle(.describe(kind: UInt8(ascii: "P"), name: ""))
        _ = state.workFinished(.catalog(PGClient.catalogRows))
        #expect(state.handle(.execute(portal: "", maxRows: 0)).wire == "DDDC")
    }

    @Test("an Execute whose query is refused answers the error, drops the portal and skips to Sync")
    func executeRefused() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT 1", parameterTypes: []))
        _ = state.handle(PGClient.bind(portal: "p"))
        _ = state.handle(.execute(portal: "p", maxRows: 0))
        let actions = state.workFinished(.refused(GatewayError(.unavailable, "shutting down")))
        _ = state.handle(.sync)
        #expect(actions.error?.code == "57P03" && state.portals["p"] == nil)
    }

    @Test("BEGIN executed in the extended protocol makes the next ReadyForQuery say T")
    func extendedBegin() throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "BEGIN", parameterTypes: []))
        _ = state.handle(PGClient.bind())
        _ = state.handle(.execute(portal: "", maxRows: 0))
        #expect(state.handle(.sync).readyStatus == true)
    }

    @Test("Flush asks the handler to flush and nothing else")
    func flush() throws {
        var state = try Self.ready()
        let actions = state.handle(.flush)
        guard case .flush? = actions.first, actions.count == 1 else { Issue.record("\(actions)"); return }
    }

    // MARK: Statement text off the event loop

    @Test("Parse asks for its text to be prepared and answers nothing until it is; then ParseComplete")
    func parseWaitsForPreparation() throws {
        var state = try Self.ready()
        let actions = state.receive(.parse(name: "s1", sql: "SELECT amount::int FROM orders", parameterTypes: []))
        let preparation = try #require(actions.preparation)
        #expect(actions.count == 1 && preparation.kind == .statement && state.statements["s1"] == nil)
        #expect(state.workFinished(.refused(GatewayError(.internal, "stray"))).isEmpty, "a work outcome does not answer a preparation")
        #expect(state.statementsPrepared(preparation.prepare()).wire == "1")
        guard case .query(let sql)? = state.statements["s1"]?.command else { Issue.record("not stored"); return }
        #expect(sql == "SELECT CAST(amount AS INTEGER) FROM orders")
    }

    @Test("a simple query asks for its string to be split and classified; its statements then run in turn")
    func simpleQueryWaitsForPreparation() throws {
        var state = try Self.ready()
        let actions = state.receive(.query("SELECT 1 AS one; SELECT 2 AS two"))
        let preparation = try #require(actions.preparation)
        #expect(actions.count == 1 && preparation.kind == .statements)
        guard case .query(let sql, _, _)? = state.statementsPrepared(preparation.prepare()).work else { Issue.record("no work"); return }
        #expect(sql == "SELECT 1 AS one")
    }

    @Test("a SET classified ahead takes effect only when its turn comes: the preparation changes nothing")
    func setAppliedInTurn() throws {
        var state = try Self.ready()
        let preparation = try #require(state.receive(.query("SELECT relname FROM pg_class; SET sandgate.purpose = 'audit'; SELECT 2 AS two")).preparation)
        let prepared = preparation.prepare()
        #expect(state.session.purpose == nil)
        guard case .catalog(_, _, nil)? = state.statementsPrepared(prepared).work else { Issue.record("the first statement ran with a purpose"); return }
        #expect(state.session.purpose == nil, "the SET after it has not run yet")
        let next = state.workFinished(.catalog(PGClient.catalogRows))
        guard case .query(_, _, "audit")? = next.work else { Issue.record("\(next)"); return }
        #expect(next.tags == ["SELECT 3", "SET"])
    }

    @Test("a Parse refused after its preparation ($32768) is an error that skips to Sync, in order")
    func preparedParseRefused() throws {
        var state = try Self.ready()
        let preparation = try #require(state.receive(.parse(name: "", sql: "SELECT $32768", parameterTypes: [])).preparation)
        #expect(state.statementsPrepared(preparation.prepare()).error?.code == "54000")
        #expect(state.handle(PGClient.bind()).isEmpty && state.handle(.execute(portal: "", maxRows: 0)).isEmpty)
        #expect(state.handle(.sync).wire == "Z")
    }

    @Test("a Parse past the connection's statement cap is refused before any text is prepared")
    func capBeforePreparation() throws {
        var state = try Self.ready()
        for index in 0..<PGProtocolState.maxStatements { _ = state.handle(.parse(name: "s\(index)", sql: "SELECT 1", parameterTypes: [])) }
        let actions = state.receive(.parse(name: "more", sql: "SELECT 1", parameterTypes: []))
        #expect(actions.preparation == nil && actions.error?.code == "53400")
    }

    @Test("re-Parsing the unnamed statement does not count its old text against the 4 MiB")
    func unnamedReplacedText() throws {
        var state = try Self.ready()
        let big = "SELECT '" + String(repeating: "x", count: Gateway.maxSQLBytes - 100) + "'"
        for name in ["a", "b", "c", "", "", ""] { #expect(state.handle(.parse(name: name, sql: big, parameterTypes: [])).wire == "1", "\(name)") }
    }

    @Test("a preparation that arrives after the connection closed is dropped")
    func preparationAfterClose() throws {
        var state = try Self.ready()
        let preparation = try #require(state.receive(.query("SELECT 1")).preparation)
        state.connectionClosed()
        #expect(state.statementsPrepared(preparation.prepare()).isEmpty)
    }

    @Test("a preparation holds the session's names for catalog translation and classifies without changing them")
    func preparationIsPure() {
        var session = PGSessionSettings()
        session.consumer = "analyst-a"
        session.dataset = "retail"
        let preparation = PGPreparation(kind: .statements, sql: "SET sandgate.purpose = 'audit'; RESET ALL; SELECT relname FROM pg_class", session: session)
        guard case .statements(let pieces) = preparation.prepare(), pieces.count == 3 else { Issue.record("not three statements"); return }
        #expect(pieces[0].settings == [PGSetting(name: "sandgate.purpose", value: "'audit'")])
        #expect(pieces[1].settings == [PGSetting(name: "sandgate.purpose", value: "DEFAULT")])
        guard case .catalog = pieces[2].command else { Issue.record("\(pieces[2].command)"); return }
        #expect(session.purpose == nil)
    }

    // MARK: Result formats

    @Test("more than one result format must match the columns (08P01 at Describe or Execute, as PostgreSQL at Bind)", arguments: [
        ("E", [Int16(0), 1], "bind message has 2 result formats but query has 1 columns"),
        ("D", [Int16(1), 1, 1], "bind message has 3 result formats but query has 1 columns"),
    ])
    func resultFormatCount(message: String, results: [Int16], text: String) throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: "SELECT relname FROM pg_class", parameterTypes: []))
        _ = state.handle(PGClient.bind(results: results))
        _ = state.handle(message == "E" ? .execute(portal: "", maxRows: 0) : .describe(kind: UInt8(ascii: "P"), name: ""))
        let actions = state.workFinished(.catalog(PGClient.catalogRows))
        #expect(actions.error == PGErrorFields(code: "08P01", message: text) && actions.wire == "E")
        #expect(state.portals[""] == nil && state.handle(.execute(portal: "", maxRows: 0)).isEmpty, "the portal is gone, skipping to Sync")
    }

    @Test("no result format, one for all, or one per column is accepted; a utility statement has no columns", arguments: [
        ("SELECT relname FROM pg_class", [Int16](), true), ("SELECT relname FROM pg_class", [Int16(1)], true),
        ("BEGIN", [Int16(0)], true), ("BEGIN", [Int16(0), 0], false),
    ])
    func resultFormatsAccepted(sql: String, results: [Int16], accepted: Bool) throws {
        var state = try Self.ready()
        _ = state.handle(.parse(name: "", sql: sql, parameterTypes: []))
        _ = state.handle(PGClient.bind(results: results))
        var actions = state.handle(.execute(portal: "", maxRows: 0))
        if actions.work != nil { actions = state.workFinished(.catalog(PGClient.catalogRows)) }
        #expect((actions.error == nil) == accepted, "\(actions.error?.message ?? "")")
    }

    // MARK: Text encoding

    @Test("a text value that is not UTF-8 goes out with U+FFFD (the server announces UTF8); valid text is unchanged", arguments: [
        ([UInt8(0xFF)], [UInt8(0xEF), 0xBF, 0xBD]), (Array("a\u{00E9}b".utf8), Array("a\u{00E9}b".utf8)), ([0x61, 0xC3], [0x61, 0xEF, 0xBF, 0xBD]),
    ])
    func invalidUTF8Text(bytes: [UInt8], sent: [UInt8]) {
        for binary in [false, true] {
            var buffer = ByteBuffer()
            bytes.withUnsafeBytes { PGValueEncoder.write(.text($0), type: .text, binary: binary, into: &buffer) }
            #expect(buffer.readInteger(as: Int32.self) == Int32(sent.count) && buffer.readBytes(length: buffer.readableBytes) == sent)
        }
    }

    // MARK: Other messages

    @Test("a SASL message after login is FATAL 08P01 and closes, as in PostgreSQL, also while skipping to Sync", arguments: [false, true])
    func authenticationAfterLogin(skipping: Bool) throws {
        var state = try Self.ready()
        if skipping { _ = state.handle(PGClient.bind(statement: "missing")) }
        let actions = state.handle(.authentication(PGClient.buffer([1])))
        #expect(actions.error == PGErrorFields(severity: "FATAL", code: "08P01", message: "invalid frontend message type 112") && actions.closes)
        #expect(state.handle(.query("SELECT 1")).isEmpty, "nothing after it is answered")
    }

    @Test("FunctionCall and CopyData outside COPY are FATAL 08P01 with a hint, and close", arguments: ["F", "d", "f", "c"])
    func unsupportedMessages(type: String) throws {
        var state = try Self.ready()
        let actions = state.handle(.unknown(UInt8(ascii: Unicode.Scalar(type) ?? "F")))
        #expect(actions.error?.code == "08P01" && actions.error?.severity == "FATAL" && actions.closes)
    }

    @Test("Terminate closes at once; nothing after it is answered")
    func terminate() throws {
        var state = try Self.ready()
        let actions = state.handle(.terminate)
        guard case .close? = actions.first, actions.count == 1 else { Issue.record("\(actions)"); return }
        #expect(state.handle(.sync).isEmpty)
    }

    @Test("an outcome that arrives after the connection closed is dropped")
    func outcomeAfterClose() throws {
        var state = try Self.ready()
        _ = state.handle(.query("SELECT 1"))
        state.connectionClosed()
        #expect(state.workFinished(.refused(GatewayError(.unavailable, "late"))).isEmpty)
    }
}
