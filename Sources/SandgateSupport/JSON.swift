/// JSON string literals: the one escaper (RFC 8259: quote, backslash and control characters
/// escaped; everything else written as UTF-8).
public enum JSONText {
    /// Appends `text` as a JSON string literal (quoted and escaped) to `output`.
    public static func appendString(_ text: String, to output: inout String) {
        output.append("\"")
        // Most values need no escape and are appended whole (native strings are contiguous UTF-8).
        var escaped = text
        let plain = escaped.withUTF8 { bytes in
            guard bytes.contains(where: needsEscape) else { return true }
            appendEscaped(UnsafeRawBufferPointer(bytes), to: &output)
            return false
        }
        if plain { output.append(text) }
        output.append("\"")
    }

    /// Appends UTF-8 bytes as a JSON string literal; invalid UTF-8 is replaced by U+FFFD.
    public static func appendString(bytes: UnsafeRawBufferPointer, to output: inout String) {
        if UTF8Text.isValid(bytes) {
            output.append("\"")
            appendEscaped(bytes, to: &output)
            output.append("\"")
        } else {
            appendString(String(decoding: bytes, as: UTF8.self), to: &output)
        }
    }

    /// The JSON string literal for `text`.
    public static func quoted(_ text: String) -> String {
        var output = ""
        appendString(text, to: &output)
        return output
    }

    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20
    }

    /// Appends valid UTF-8 `bytes` escaped, copying the runs between escapes whole.
    private static func appendEscaped(_ bytes: UnsafeRawBufferPointer, to output: inout String) {
        var runStart = 0
        for index in bytes.indices where needsEscape(bytes[index]) {
            let byte = bytes[index]
            if runStart < index {
                output.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]), as: UTF8.self))
            }
            switch byte {
            case UInt8(ascii: "\""): output.append("\\\"")
            case UInt8(ascii: "\\"): output.append("\\\\")
            case 0x0A: output.append("\\n")
            case 0x0D: output.append("\\r")
            case 0x09: output.append("\\t")
            default:
                output.append("\\u00")
                output.unicodeScalars.append(Unicode.Scalar(Hex.digit(byte >> 4)))
                output.unicodeScalars.append(Unicode.Scalar(Hex.digit(byte)))
            }
            runStart = index + 1
        }
        if runStart < bytes.count {
            output.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[runStart...]), as: UTF8.self))
        }
    }
}

/// Writes JSON text: objects and arrays by closure, commas placed by the writer, every string
/// escaped by ``JSONText`` — the one way sandgate builds JSON, so no caller can forget a comma
/// or a quote. Keys keep the order they are written in (the wire format documents that order).
public struct JSONWriter: Sendable {
    public private(set) var text: String
    /// True after a value at the current level: the next one needs a comma first.
    private var afterValue = false

    public init(reservingCapacity capacity: Int = 0) {
        text = ""
        text.reserveCapacity(capacity)
    }

    /// The JSON text of one object.
    public static func object(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        writer.object(body)
        return writer.text
    }

    /// The JSON text of one array.
    public static func array(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        writer.array(body)
        return writer.text
    }

    // MARK: values (in an array, or after `key`)

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        open("{")
        body(&self)
        close("}")
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        open("[")
        body(&self)
        close("]")
    }

    public mutating func string(_ value: String) {
        separate()
        JSONText.appendString(value, to: &text)
    }

    /// UTF-8 bytes as a string (invalid UTF-8 becomes U+FFFD), without an intermediate String.
    public mutating func string(bytes: UnsafeRawBufferPointer) {
        separate()
        JSONText.appendString(bytes: bytes, to: &text)
    }

    public mutating func number<Integer: BinaryInteger>(_ value: Integer) {
        separate()
        text += String(value)
    }

    public mutating func bool(_ value: Bool) {
        separate()
        text += value ? "true" : "false"
    }

    public mutating func null() {
        separate()
        text += "null"
    }

    /// A value that is JSON text already (a number formatted by its owner, a nested document).
    public mutating func raw(_ json: String) {
        separate()
        text += json
    }

    // MARK: object members

    /// Starts a member: the next value written is its value.
    public mutating func key(_ name: String) {
        separate()
        JSONText.appendString(name, to: &text)
        text += ":"
        afterValue = false
    }

    public mutating func field(_ name: String, _ value: String) { key(name); string(value) }
    public mutating func field(_ name: String, _ value: String?) {
        key(name)
        if let value { string(value) } else { null() }
    }
    public mutating func field<Integer: BinaryInteger>(_ name: String, _ value: Integer) { key(name); number(value) }
    public mutating func field<Integer: BinaryInteger>(_ name: String, _ value: Integer?) {
        key(name)
        if let value { number(value) } else { null() }
    }
    public mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }
    public mutating func field(_ name: String, raw json: String) { key(name); raw(json) }
    public mutating func field(_ name: String, strings values: some Sequence<String>) {
        key(name)
        array { for value in values { $0.string(value) } }
    }
    public mutating func object(_ name: String, _ body: (inout JSONWriter) -> Void) { key(name); object(body) }
    public mutating func array(_ name: String, _ body: (inout JSONWriter) -> Void) { key(name); array(body) }

    // MARK: -

    private mutating func separate() {
        if afterValue { text += "," }
        afterValue = true
    }

    private mutating func open(_ bracket: String) {
        separate()
        text += bracket
        afterValue = false
    }

    private mutating func close(_ bracket: String) {
        text += bracket
        afterValue = true
    }
}
