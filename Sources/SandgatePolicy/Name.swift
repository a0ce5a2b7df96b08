/// The one spelling of consumer and dataset names: `[a-z0-9][a-z0-9_.-]{0,63}`, ASCII only.
///
/// Swift compares `String`s by canonical equivalence, so `"\u{212A}ate"` (KELVIN SIGN) equals
/// `"Kate"` in a dictionary lookup while the bytes differ in the ledger and in quota counts. Names
/// are therefore checked byte by byte, never normalised or case-folded, before anything looks
/// them up; within this set canonical equivalence and byte equality coincide.
public enum Name {
    /// The longest name, in bytes.
    public static let maxBytes = 64

    /// The rule as text, for messages.
    public static let rule = "1 to 64 characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit"

    /// True when `text` is a valid consumer or dataset name.
    public static func isValid(_ text: String) -> Bool {
        let bytes = text.utf8
        guard let first = bytes.first, bytes.count <= maxBytes, isLowerAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
