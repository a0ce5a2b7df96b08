import Crypto
import Foundation
import SandgatePolicy
import SandgateServer

/// A minimal PostgreSQL protocol 3.0 client for tests: framing, SCRAM-SHA-256 and the messages
/// the tests send, over `LineClient`'s raw socket.
/// `@unchecked Sendable`: each test uses a client from one thread at a time.
final class PGTestClient: @unchecked Sendable {
    struct Message {
        let type: UInt8
        let body: [UInt8]
        var typeCharacter: Character { Character(Unicode.Scalar(type)) }

        /// Fields of an ErrorResponse or NoticeResponse by code (S, C, M, H …).
        var fields: [Character: String] {
            var result: [Character: String] = [:]
            var index = 0
            while index < body.count, body[index] != 0 {
                let code = Character(Unicode.Scalar(body[index]))
                guard let end = body[(index + 1)...].firstIndex(of: 0) else { break }
                result[code] = String(decoding: body[(index + 1)..<end], as: UTF8.self)
                index = end + 1
            }
            return result
        }
    }

    let connection: LineClient

    init(port: Int) throws {
        connection = try LineClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
    }

    /// A client over a connection opened (and logged in) by another `PGTestClient`.
    init(connection: LineClient) {
        self.connection = connection
    }

    /// Parse (unnamed) and Sync; the answers up to ReadyForQuery.
    func parse(_ sql: String) throws -> [Message] {
        try send("P", Self.cString("") + Self.cString(sql) + Self.int16(0))
        try send("S", [])
        return try readUntilReady()
    }

    static func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    static func int16(_ value: Int16) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    static func cString(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    func sendStartup(_ parameters: [String: String]) throws {
        var body = Self.int32(196_608)
        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) { body += Self.cString(key) + Self.cString(value) }
        body.append(0)
        try connection.send(bytes: Self.int32(Int32(body.count + 4)) + body)
    }

    func send(_ type: Character, _ body: [UInt8]) throws {
        try connection.send(bytes: [type.asciiValue ?? 0] + Self.int32(Int32(body.count + 4)) + body)
    }

    /// The next message, or nil when the server closed the connection.
    func read() throws -> Message? {
        guard let head = try connection.read(count: 5) else { return nil }
        let length = Int(Int32(bigEndian: head[1...4].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
        guard length >= 4, let body = try connection.read(count: length - 4) else { return nil }
        return Message(type: head[0], body: body)
    }

    /// Messages up to and including the next ReadyForQuery (or until the connection closes).
    func readUntilReady() throws -> [Message] {
        var messages: [Message] = []
        while let message = try read() {
            messages.append(message)
            if message.typeCharacter == "Z" { break }
        }
        return messages
    }

    /// Starts up and authenticates with SCRAM-SHA-256; returns the messages after the final
    /// SASL step (AuthenticationOk … ReadyForQuery, or the ErrorResponse).
    func login(user: String, database: String = "retail", password: String, options: String? = nil) throws -> [Message] {
        var parameters = ["user": user, "database": database]
        if let options { parameters["options"] = options }
        try sendStartup(parameters)
        guard let request = try read(), request.typeCharacter == "R" else { return [] }
        let nonce = "rOprNGfwEbeRWgbNEkqO"
        let clientFirstBare = "n=,r=\(nonce)"
        let initial = Array(("n,," + clientFirstBare).utf8)
        try send("p", Self.cString("SCRAM-SHA-256") + Self.int32(Int32(initial.count)) + initial)
        guard let continuation = try read() else { return [] }
        guard continuation.typeCharacter == "R" else { return [continuation] }
        let serverFirst = String(decoding: continuation.body.dropFirst(4), as: UTF8.self)
        try send("p", Self.clientFinal(password: password, clientFirstBare: clientFirstBare, serverFirst: serverFirst))
        return try readUntilReady()
    }

    /// The SCRAM client-final-message for `password` (RFC 5802 §3) answering `serverFirst`.
    static func clientFinal(password: String, clientFirstBare: String, serverFirst: String) -> [UInt8] {
        var attributes: [String: String] = [:]
        for part in serverFirst.split(separator: ",") where part.count > 2 { attributes[String(part.prefix(1))] = String(part.dropFirst(2)) }
        let salt = Array(Data(base64Encoded: attributes["s"] ?? "") ?? Data())
        let iterations = Int(attributes["i"] ?? "") ?? 4096
        let salted = SCRAMVerifier.saltedPassword(password, salt: salt, iterations: iterations) ?? []
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: SymmetricKey(data: salted)))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(attributes["r"] ?? "")"
        let authMessage = "\(clientFirstBare),\(serverFirst),\(withoutProof)"
        let signature = Array(HMAC<SHA256>.authenticationCode(for: Array(authMessage.utf8), using: SymmetricKey(data: storedKey)))
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        return Array("\(withoutProof),p=\(Data(proof).base64EncodedString())".utf8)
    }

    func query(_ sql: String) throws -> [Message] {
        try send("Q", Self.cString(sql))
        return try readUntilReady()
    }
}

extension Array where Element == PGTestClient.Message {
    var types: String { String(map(\.typeCharacter)) }

    /// Text values of the DataRows.
    var rows: [[String?]] {
        filter { $0.typeCharacter == "D" }.map { message in
            var values: [String?] = []
            let body = message.body
            var index = 2
            while index + 4 <= body.count {
                let length = Int(Int32(bigEndian: body[index..<(index + 4)].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
                index += 4
                if length < 0 { values.append(nil); continue }
                values.append(String(decoding: body[index..<(index + length)], as: UTF8.self))
                index += length
            }
            return values
        }
    }

    /// Type OIDs of the RowDescription.
    var typeOIDs: [Int32] {
        guard let description = first(where: { $0.typeCharacter == "T" }) else { return [] }
        let body = description.body
        var oids: [Int32] = []
        var index = 2
        while index < body.count {
            guard let end = body[index...].firstIndex(of: 0) else { break }
            index = end + 1 + 4 + 2
            guard index + 4 <= body.count else { break }
            oids.append(Int32(bigEndian: body[index..<(index + 4)].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
            index += 4 + 2 + 4 + 2
        }
        return oids
    }

    var error: [Character: String]? { first(where: { $0.typeCharacter == "E" })?.fields }
}
