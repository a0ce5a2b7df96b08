/// Minimal JSON text writing shared by the ledger export and the gateway's responses.
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
                    let hex = Array("0123456789abcdef".utf8)
                    output.append("\\u00")
                    output.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                    output.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
                }
                runStart = bytes.index(after: index)
            }
            index = bytes.index(after: index)
        }
        flush(bytes.endIndex)
    }
}
