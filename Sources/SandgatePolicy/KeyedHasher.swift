import Crypto

/// HMAC-SHA256 under a dataset's secret key, with the padded-key states computed once so that each
/// value costs two SHA-256 runs and no heap allocation.
public struct KeyedHasher {
    private let inner: SHA256
    private let outer: SHA256

    /// `key` is the dataset's 256-bit secret.
    public init(key: [UInt8]) {
        var block = [UInt8](repeating: 0, count: 64)
        if key.count > 64 {
            let digest = SHA256.hash(data: key)
            for (index, byte) in digest.enumerated() { block[index] = byte }
        } else {
            for (index, byte) in key.enumerated() { block[index] = byte }
        }
        var inner = SHA256()
        inner.update(data: block.map { $0 ^ 0x36 })
        var outer = SHA256()
        outer.update(data: block.map { $0 ^ 0x5C })
        self.inner = inner
        self.outer = outer
    }

    /// HMAC of `domain` ‖ `message`; the domain separates hash masks from join tokens.
    public func authenticate(domain: UInt8, _ message: UnsafeBufferPointer<UInt8>) -> SHA256.Digest {
        var first = inner
        withUnsafeBytes(of: domain) { first.update(bufferPointer: $0) }
        first.update(bufferPointer: UnsafeRawBufferPointer(message))
        let innerDigest = first.finalize()
        var second = outer
        innerDigest.withUnsafeBytes { second.update(bufferPointer: $0) }
        return second.finalize()
    }
}
