import Crypto
import Foundation

/// A cryptographically secure generator for the many draws of contribution bounding (reservoir
/// sampling and the choice of groups, `ContributionBounder`): the ChaCha20 keystream under a fresh 256-bit key from the system
/// CSPRNG, in 64 KiB blocks (each a new nonce), as OpenBSD's arc4random does. The system
/// generator costs a `getrandom` call per draw; this costs a few nanoseconds. Noise itself is
/// drawn from `SystemRandomNumberGenerator` (a handful of draws per group).
struct KeystreamGenerator: RandomNumberGenerator {
    private let key: SymmetricKey
    private var counter: UInt64 = 0
    private var buffer: [UInt64] = []
    private var index = 0
    static let blockBytes = 1 << 16
    private static let zeros = Data(count: blockBytes)

    init() {
        key = SymmetricKey(size: .bits256)
    }

    mutating func next() -> UInt64 {
        if index == buffer.count { refill() }
        defer { index += 1 }
        return buffer[index]
    }

    private mutating func refill() {
        counter += 1
        var nonce = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: counter.bigEndian) { nonce.replaceSubrange(4..<12, with: $0) }
        // The ciphertext of zeros is the keystream; a nonce is never reused under one key.
        guard let chacha = try? ChaChaPoly.Nonce(data: nonce), let sealed = try? ChaChaPoly.seal(Self.zeros, using: key, nonce: chacha) else {
            // Cannot happen with a 12-byte nonce; fall back to the system generator, never to
            // anything predictable.
            var system = SystemRandomNumberGenerator()
            buffer = (0..<(Self.blockBytes / 8)).map { _ in system.next() }
            index = 0
            return
        }
        buffer = sealed.ciphertext.withUnsafeBytes { bytes in
            (0..<(Self.blockBytes / 8)).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
        index = 0
    }
}
