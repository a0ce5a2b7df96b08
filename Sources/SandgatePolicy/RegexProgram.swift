import CPCRE2

/// A problem with a mask's pattern, replacement or flags, with the offset (in bytes) where PCRE2 or
/// the template parser found it.
public struct MaskCompileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Part: String, Sendable { case pattern, replacement, flags }
    public let part: Part
    public let message: String
    /// Byte offset inside the pattern or replacement.
    public let offset: Int

    public var description: String { "invalid \(part.rawValue) at offset \(offset): \(message)" }
}

/// A PCRE2 pattern compiled (and JIT-compiled) once per policy load, with its replacement template
/// parsed once into literal and group parts.
///
/// The compiled code is never modified after `compile`; PCRE2 documents that compiled patterns
/// may be used by several threads at once as long as each has its own match data, which
/// `MaskEvaluator` provides. That makes the class `@unchecked Sendable`.
public final class RegexProgram: @unchecked Sendable {
    let code: OpaquePointer
    let usesJIT: Bool
    /// Number of capture groups in the pattern.
    public let captureCount: Int
    let template: [TemplatePart]
    /// The literal bytes that template parts point into.
    let literals: [UInt8]

    enum TemplatePart: Equatable {
        case literal(start: Int, count: Int)
        case group(Int)
    }

    private init(code: OpaquePointer, usesJIT: Bool, captureCount: Int, template: [TemplatePart], literals: [UInt8]) {
        self.code = code
        self.usesJIT = usesJIT
        self.captureCount = captureCount
        self.template = template
        self.literals = literals
    }

    deinit {
        pcre2_code_free_8(code)
    }

    /// Compile options for mask flags; `imsx` as in Perl.
    static func options(for flags: String) throws(MaskCompileError) -> UInt32 {
        var options: UInt32 = 0
        for (offset, flag) in flags.unicodeScalars.enumerated() {
            switch flag {
            case "i": options |= PCRE2_CASELESS
            case "m": options |= PCRE2_MULTILINE
            case "s": options |= PCRE2_DOTALL
            case "x": options |= PCRE2_EXTENDED
            default:
                throw MaskCompileError(part: .flags, message: "unknown flag '\(flag)' (allowed: i, m, s, x)", offset: offset)
            }
        }
        return options
    }

    /// Compiles `pattern` in UTF mode and parses `replacement` with `pcre2_substitute`'s syntax
    /// (`$$`, `$n`, `${n}`, `$name`, `${name}`).
    public static func compile(pattern: String, replacement: String, flags: String = "") throws(MaskCompileError) -> RegexProgram {
        let options = try options(for: flags) | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF
        var errorCode: Int32 = 0
        var errorOffset = 0
        let patternBytes = Array(pattern.utf8)
        let compiled = patternBytes.withUnsafeBufferPointer { buffer in
            pcre2_compile_8(buffer.baseAddress ?? UnsafePointer(bitPattern: 1), buffer.count, options, &errorCode, &errorOffset, nil)
        }
        guard let compiled else {
            throw MaskCompileError(part: .pattern, message: pcre2Message(errorCode), offset: errorOffset)
        }
        let jit = pcre2_jit_compile_8(compiled, PCRE2_JIT_COMPLETE) == 0
        var captures: UInt32 = 0
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_CAPTURECOUNT), &captures)
        do {
            let (template, literals) = try parseTemplate(replacement, captureCount: Int(captures), code: compiled)
            return RegexProgram(code: compiled, usesJIT: jit, captureCount: Int(captures), template: template, literals: literals)
        } catch {
            pcre2_code_free_8(compiled)
            throw error
        }
    }

    static func pcre2Message(_ code: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = buffer.withUnsafeMutableBufferPointer { pcre2_get_error_message_8(code, $0.baseAddress, $0.count) }
        return length > 0 ? String(decoding: buffer[0..<Int(length)], as: UTF8.self) : "PCRE2 error \(code)"
    }

    private static func parseTemplate(
        _ replacement: String, captureCount: Int, code: OpaquePointer
    ) throws(MaskCompileError) -> ([TemplatePart], [UInt8]) {
        let bytes = Array(replacement.utf8)
        var parts: [TemplatePart] = []
        var literals: [UInt8] = []
        var literalStart = 0

        func flushLiteral() {
            if literals.count > literalStart {
                parts.append(.literal(start: literalStart, count: literals.count - literalStart))
            }
            literalStart = literals.count
        }
        func isNameStart(_ b: UInt8) -> Bool { (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 95 }
        func isNameByte(_ b: UInt8) -> Bool { isNameStart(b) || (b >= 48 && b <= 57) }
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }

        func resolve(_ reference: ArraySlice<UInt8>, at offset: Int) throws(MaskCompileError) -> Int {
            if let first = reference.first, isDigit(first) {
                guard reference.allSatisfy(isDigit), reference.count <= 5, let number = Int(String(decoding: reference, as: UTF8.self)) else {
                    throw MaskCompileError(part: .replacement, message: "bad group number", offset: offset)
                }
                guard number <= captureCount else {
                    throw MaskCompileError(
                        part: .replacement,
                        message: "refers to group \(number) but the pattern has \(captureCount) group\(captureCount == 1 ? "" : "s")",
                        offset: offset)
                }
                return number
            }
            var name = Array(reference)
            name.append(0)
            let number = name.withUnsafeBufferPointer { pcre2_substring_number_from_name_8(code, $0.baseAddress) }
            guard number >= 0 else {
                let text = String(decoding: reference, as: UTF8.self)
                throw MaskCompileError(part: .replacement, message: "refers to group '\(text)', which the pattern does not define", offset: offset)
            }
            return Int(number)
        }

        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "$") else {
                literals.append(byte)
                index += 1
                continue
            }
            let dollar = index
            index += 1
            guard index < bytes.count else {
                throw MaskCompileError(part: .replacement, message: "'$' at the end (write '$$' for a dollar sign)", offset: dollar)
            }
            let next = bytes[index]
            if next == UInt8(ascii: "$") {
                literals.append(next)
                index += 1
            } else if next == UInt8(ascii: "{") {
                let start = index + 1
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: "}") { end += 1 }
                guard end < bytes.count else {
                    throw MaskCompileError(part: .replacement, message: "'${' without a closing '}'", offset: dollar)
                }
                let reference = bytes[start..<end]
                guard let first = reference.first, isDigit(first) || isNameStart(first), reference.allSatisfy(isNameByte) else {
                    throw MaskCompileError(part: .replacement, message: "'${…}' must hold a group number or name", offset: dollar)
                }
                flushLiteral()
                parts.append(.group(try resolve(reference, at: dollar)))
                index = end + 1
            } else if isDigit(next) {
                var end = index
                while end < bytes.count, isDigit(bytes[end]) { end += 1 }
                flushLiteral()
                parts.append(.group(try resolve(bytes[index..<end], at: dollar)))
                index = end
            } else if isNameStart(next) {
                var end = index
                while end < bytes.count, isNameByte(bytes[end]) { end += 1 }
                flushLiteral()
                parts.append(.group(try resolve(bytes[index..<end], at: dollar)))
                index = end
            } else {
                throw MaskCompileError(
                    part: .replacement,
                    message: "'$' must be followed by '$', a group number, a name or '{' (mark names are not supported)",
                    offset: dollar)
            }
        }
        flushLiteral()
        return (parts, literals)
    }
}
