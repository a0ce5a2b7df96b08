/// UTF-8 helpers shared by the ledger and its writers: one copy of each.
public enum UTF8Text {
    /// The longest prefix of `text` that is at most `maxBytes` UTF-8 bytes and ends on a scalar
    /// boundary. Cuts by bytes, not characters: one character can be any number of bytes (a
    /// base letter with 100,000 combining accents is one `Character`).
    public static func prefix(_ text: String, maxBytes: Int) -> String {
        let bytes = text.utf8
        guard bytes.count > maxBytes else { return text }
        var end = bytes.index(bytes.startIndex, offsetBy: max(0, maxBytes))
        // Step back over continuation bytes (10xxxxxx) to the start of the cut scalar.
        while end > bytes.startIndex, bytes[end] & 0xC0 == 0x80 { end = bytes.index(before: end) }
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    /// True when `bytes` are valid UTF-8 (decoders would silently repair invalid text otherwise).
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
