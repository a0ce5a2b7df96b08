/// JSON string literals: the one escaper (RFC 8259: quote, backslash and control characters
/// escaped; everything else written as UTF-8).
public enum JSONText {
    /// Appends `text` as a JSON string literal (quoted and escaped) to `output`.
    public static func appendString(_ text: String, to output: inout String) {
        output.append("\"")
        appendEscaped(text.utf8, to: &output)
        output.append("\"")
    }

    /// Appends UTF-8 bytes as a JSON string literal; invalid UTF-8 is replaced by U+FFFD.
    public static func appendString(bytes: UnsafeRawBufferPointer, to output: inout String) {
        output.append("\"")
        if UTF8Text.isValid(bytes) {
            appendEscaped(bytes, to: &output)
        } else {
            appendEscaped(String(decoding: bytes, as: UTF8.self).utf8, to: &output)
        }
        output.append("\"")
    }

    /// The JSON string literal for `text`.
    public static func quoted(_ text: String) -> String {
        var output = ""
        appendString(text, to: &output)
        return output
    }

    private static func appendEscaped<C: Collection<UInt8>>(_ bytes: C, to output: inout String) {
        var runStart = bytes.startIndex
        var index = bytes.startIndex
        func flush(_ end: C.Index) {
            if runStart < end {
                output.append(String(decoding: bytes[runStart..<end], as: UTF8.self))
            }
        }
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                flush(index)
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
                runStart = bytes.index(after: index)
            }
            index = bytes.index(after: index)
        }
        flush(bytes.endIndex)
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
