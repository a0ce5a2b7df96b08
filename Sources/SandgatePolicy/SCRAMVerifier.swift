import Crypto
import Foundation
import _CryptoExtras

/// A SCRAM-SHA-256 verifier (RFC 5802, RFC 7677) in PostgreSQL's text form
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts): what the server
/// keeps instead of the key, enough to check a client's proof and to prove itself, never enough
/// to log in as the client.
public struct SCRAMVerifier: Sendable, Equatable {
    public let iterations: Int
    public let salt: [UInt8]
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    /// PostgreSQL's default; each login costs the client this many HMACs, the server none.
    public static let defaultIterations = 4096

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Parses the text form; nil when it is not one.
    public init?(_ text: String) {
        guard text.hasPrefix("SCRAM-SHA-256$") else { return nil }
        let parts = text.dropFirst("SCRAM-SHA-256$".count).split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let head = parts[0].split(separator: ":", omittingEmptySubsequences: false)
        let keys = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        guard head.count == 2, keys.count == 2, let iterations = Int(head[0]), (1...10_000_000).contains(iterations),
              let salt = Data(base64Encoded: String(head[1])), !salt.isEmpty,
              let stored = Data(base64Encoded: String(keys[0])), stored.count == 32,
              let server = Data(base64Encoded: String(keys[1])), server.count == 32 else { return nil }
        self.init(iterations: iterations, salt: Array(salt), storedKey: Array(stored), serverKey: Array(server))
    }

    /// A verifier for `password` with a fresh random 16-byte salt.
    public static func make(password: String, iterations: Int = defaultIterations) -> SCRAMVerifier? {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return make(password: password, salt: salt, iterations: iterations)
    }

    public static func make(password: String, salt: [UInt8], iterations: Int) -> SCRAMVerifier? {
        guard let salted = saltedPassword(password, salt: salt, iterations: iterations) else { return nil }
        let saltedKey = SymmetricKey(data: salted)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: saltedKey))
        let serverKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: saltedKey))
        return SCRAMVerifier(iterations: iterations, salt: salt, storedKey: Array(SHA256.hash(data: clientKey)), serverKey: serverKey)
    }

    /// `Hi(password, salt, i)` of RFC 5802 (PBKDF2-HMAC-SHA256, one block). The password is used
    /// as it is: sandgate's keys are ASCII, which SASLprep leaves unchanged.
    public static func saltedPassword(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8]? {
        guard let key = try? KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: iterations) else { return nil }
        return key.withUnsafeBytes { Array($0) }
    }

    public var text: String {
        "SCRAM-SHA-256$\(iterations):\(Data(salt).base64EncodedString())$\(Data(storedKey).base64EncodedString()):\(Data(serverKey).base64EncodedString())"
    }

    /// Checks a client's proof for `authMessage`; on success returns the server signature that
    /// proves to the client that the server holds the verifier. Constant time in the proof.
    public func verify(proof: [UInt8], authMessage: [UInt8]) -> [UInt8]? {
        guard proof.count == 32 else { return nil }
        let signature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: storedKey)))
        let clientKey = zip(proof, signature).map { $0 ^ $1 }
        let candidate = Array(SHA256.hash(data: clientKey))
        var difference: UInt8 = 0
        for index in 0..<32 { difference |= candidate[index] ^ storedKey[index] }
        guard difference == 0 else { return nil }
        return Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: serverKey)))
    }
}
