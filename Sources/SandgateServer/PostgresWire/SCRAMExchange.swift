import Crypto
import Foundation
import SandgatePolicy

/// The server side of one SCRAM-SHA-256 exchange (RFC 5802 §3, RFC 7677), without channel
/// binding. A consumer without a verifier (or an unknown name) gets a made-up verifier whose salt
/// is derived from the name with a server secret, so the exchange looks the same and fails at the
/// proof: the protocol does not tell an attacker which names exist.
struct SCRAMExchange {
    let verifier: SCRAMVerifier?
    let clientFirstBare: String
    let serverFirst: String
    let nonce: String
    let gs2Header: String

    static func start(clientFirst bytes: [UInt8], verifier: SCRAMVerifier?, name: String, secret: [UInt8]) -> Result<SCRAMExchange, SCRAMFailure> {
        guard bytes.count <= 1024 else { return .failure(SCRAMFailure("SCRAM client-first-message too long")) }
        let message = String(decoding: bytes, as: UTF8.self)
        let parts = message.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(SCRAMFailure("malformed SCRAM client-first-message")) }
        switch parts[0] {
        case "n", "y": break
        default: return .failure(SCRAMFailure("SCRAM channel binding is not supported on this listener (no TLS); connect with channel_binding=disable"))
        }
        let gs2 = "\(parts[0]),\(parts[1]),"
        let bare = String(parts[2])
        guard let clientNonce = bare.split(separator: ",").first(where: { $0.hasPrefix("r=") }).map({ String($0.dropFirst(2)) }),
              !clientNonce.isEmpty, clientNonce.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") }) else {
            return .failure(SCRAMFailure("malformed SCRAM client nonce"))
        }
        var generator = SystemRandomNumberGenerator()
        let serverNonce = Data((0..<18).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
        let nonce = clientNonce + serverNonce
        let effective = verifier ?? decoy(name: name, secret: secret)
        let serverFirst = "r=\(nonce),s=\(Data(effective.salt).base64EncodedString()),i=\(effective.iterations)"
        return .success(SCRAMExchange(verifier: verifier, clientFirstBare: bare, serverFirst: serverFirst, nonce: nonce, gs2Header: gs2))
    }

    /// A verifier nobody can satisfy, stable per name (the same salt every time).
    static func decoy(name: String, secret: [UInt8]) -> SCRAMVerifier {
        let salt = Array(HMAC<SHA256>.authenticationCode(for: Array(name.utf8), using: SymmetricKey(data: secret))).prefix(16)
        return SCRAMVerifier(iterations: SCRAMVerifier.defaultIterations, salt: Array(salt), storedKey: Array(repeating: 0, count: 32), serverKey: Array(repeating: 0, count: 32))
    }

    /// Checks the client-final-message; the server signature to send when the proof is right.
    func finish(clientFinal bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count <= 1024, let verifier else { return nil }
        let message = String(decoding: bytes, as: UTF8.self)
        guard let proofRange = message.range(of: ",p=", options: .backwards) else { return nil }
        let withoutProof = String(message[..<proofRange.lowerBound])
        guard let proof = Data(base64Encoded: String(message[proofRange.upperBound...])) else { return nil }
        let fields = withoutProof.split(separator: ",")
        guard fields.first == Substring("c=" + Data(gs2Header.utf8).base64EncodedString()),
              fields.contains(Substring("r=" + nonce)) else { return nil }
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        return verifier.verify(proof: Array(proof), authMessage: authMessage)
    }
}

struct SCRAMFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
