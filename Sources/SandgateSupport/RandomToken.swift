/// Unguessable identifiers from the system CSPRNG (query ids, sandbox schema and function names).
public enum RandomToken {
    /// 128 random bits as 32 lower-case hex digits.
    public static func hex128() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for _ in 0..<2 {
            let word: UInt64 = generator.next()
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return Hex.encode(bytes)
    }
}
