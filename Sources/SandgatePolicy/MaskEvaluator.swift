import CPCRE2
import SandgateSupport

/// The result of masking one value: NULL, or text that stays valid until the evaluator's next call.
public enum MaskOutcome {
    case null
    case text(UnsafeBufferPointer<UInt8>)
}

/// Applies one mask to values, one at a time, on one thread.
///
/// Each sandbox connection owns its evaluators, so PCRE2 match data and the output buffer are
/// reused for every cell: masking a value is one `pcre2_jit_match` per match plus byte copies.
public final class MaskEvaluator {
    public let mask: Mask
    private let hasher: KeyedHasher?
    /// Kept alive for `code`, `template` and `literals`, which the hot path reads without ARC.
    private let program: RegexProgram?
    private let code: OpaquePointer?
    private let usesJIT: Bool
    /// A lower bound on the bytes a match consumes (`PCRE2_INFO_MINLENGTH`, in characters, so also
    /// a lower bound in bytes); no match is attempted where fewer bytes remain.
    private let minimumLength: Int
    private let template: UnsafeMutableBufferPointer<RegexProgram.TemplatePart>
    private let literals: UnsafeMutableBufferPointer<UInt8>
    private let matchData: OpaquePointer?
    private let matchContext: OpaquePointer?
    private let ovector: UnsafeMutablePointer<Int>?
    /// Mutable state lives behind a pointer: the hot path then pays no dynamic exclusivity checks
    /// (class `var`s cost a `swift_beginAccess` per touch).
    private let output: UnsafeMutablePointer<OutputBuffer>

    /// Upper bound on PCRE2 backtracking per match; a pattern that hits it redacts the value.
    static let matchLimit: UInt32 = 1_000_000

    /// `key` is required for `hash` and join tokens; without it those masks fail closed (redact).
    public init(mask: Mask, key: [UInt8]?) {
        self.mask = mask
        self.hasher = key.map(KeyedHasher.init(key:))
        if case .regex(let program) = mask.kind {
            self.program = program
            code = program.code
            usesJIT = program.usesJIT
            var length: UInt32 = 0
            pcre2_pattern_info_8(program.code, UInt32(PCRE2_INFO_MINLENGTH), &length)
            minimumLength = Int(length)
            template = .allocate(capacity: program.template.count)
            _ = template.initialize(from: program.template)
            literals = .allocate(capacity: max(program.literals.count, 1))
            _ = literals.initialize(from: program.literals)
            let data = pcre2_match_data_create_from_pattern_8(program.code, nil)
            matchData = data
            ovector = data.map { pcre2_get_ovector_pointer_8($0) }
            let context = pcre2_match_context_create_8(nil)
            if let context { pcre2_set_match_limit_8(context, Self.matchLimit) }
            matchContext = context
        } else {
            program = nil
            code = nil
            usesJIT = false
            minimumLength = 0
            template = .allocate(capacity: 0)
            literals = .allocate(capacity: 1)
            matchData = nil
            matchContext = nil
            ovector = nil
        }
        output = .allocate(capacity: 1)
        output.initialize(to: OutputBuffer(capacity: 256))
    }

    deinit {
        output.pointee.deallocate()
        output.deallocate()
        template.deallocate()
        literals.deallocate()
        if let matchData { pcre2_match_data_free_8(matchData) }
        if let matchContext { pcre2_match_context_free_8(matchContext) }
    }

    /// Masks `input` (UTF-8 text, or the text form of a number). NULL inputs never reach here:
    /// the caller keeps NULL as NULL.
    public func apply(_ input: UnsafeBufferPointer<UInt8>) -> MaskOutcome {
        output.pointee.count = 0
        switch mask.kind {
        case .null:
            return .null
        case .redact:
            appendStars(characterCount(input))
        case .hash:
            guard let hasher else { return redact(input) }
            appendHex(hasher.authenticate(domain: 0x01, input), bytes: 32)
        case .joinToken:
            guard let hasher else { return redact(input) }
            appendHex(hasher.authenticate(domain: 0x02, input), bytes: 16)
        case .keepFirst(let keep):
            guard UTF8Validation.isValid(input) else { return redact(input) }
            keepFirst(keep, of: input)
        case .keepLast(let keep):
            guard UTF8Validation.isValid(input) else { return redact(input) }
            keepLast(keep, of: input)
        case .truncateDate(let part):
            // Only a value that is exactly a valid date or timestamp keeps its year (and month);
            // anything else follows `on_no_match` like an unmatched pattern (redacted by default).
            guard let date = DateShape.parse(input) else {
                switch mask.onNoMatch {
                case .null: return .null
                case .redact, .keep: return redact(input)
                }
            }
            appendDate(date, keepMonth: part == .month)
        case .regex:
            guard UTF8Validation.isValid(input) else { return redact(input) }
            switch substitute(input) {
            case .matched:
                break
            case .noMatch:
                switch mask.onNoMatch {
                case .redact: return redact(input)
                case .null: return .null
                case .keep:
                    output.pointee.count = 0
                    append(input)
                }
            case .failed:
                return redact(input)
            }
        }
        return .text(output.pointee.bytes)
    }

    // MARK: Regex

    private enum SubstituteResult { case matched, noMatch, failed }

    /// Global substitution with `pcre2_substitute`'s semantics (including its handling of empty
    /// matches), but with the template parsed at load time.
    private func substitute(_ subject: UnsafeBufferPointer<UInt8>) -> SubstituteResult {
        guard let code, let matchData, let ovector else { return .failed }
        let base = subject.baseAddress ?? UnsafePointer(bitPattern: 1)!
        let length = subject.count
        var start = 0
        var retryOptions: UInt32 = 0
        var matched = false
        while true {
            let options = retryOptions | PCRE2_NO_UTF_CHECK
            // Fewer bytes left than any match needs: no call can match (the common case after an
            // anchored pattern matched the whole value).
            let rc = length - start < minimumLength
                ? PCRE2_ERROR_NOMATCH
                : usesJIT
                ? pcre2_jit_match_8(code, base, length, start, options, matchData, matchContext)
                : pcre2_match_8(code, base, length, start, options, matchData, matchContext)
            if rc == PCRE2_ERROR_NOMATCH {
                guard retryOptions != 0, start < length else { break }
                // The empty match could not be repeated here: copy one character and go on.
                let from = start
                start += 1
                while start < length, subject[start] & 0xC0 == 0x80 { start += 1 }
                append(UnsafeBufferPointer(rebasing: subject[from..<start]))
                retryOptions = 0
                continue
            }
            guard rc > 0 else { return .failed }
            let matchStart = ovector[0]
            let matchEnd = ovector[1]
            guard matchStart >= start, matchEnd >= matchStart, matchEnd <= length else { return .failed }
            matched = true
            append(UnsafeBufferPointer(rebasing: subject[start..<matchStart]))
            appendTemplate(subject: subject, setPairs: Int(rc))
            start = matchEnd
            retryOptions = matchStart == matchEnd ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0
        }
        guard matched else { return .noMatch }
        append(UnsafeBufferPointer(rebasing: subject[start..<length]))
        return .matched
    }

    private func appendTemplate(subject: UnsafeBufferPointer<UInt8>, setPairs: Int) {
        guard let ovector else { return }
        let unset = sandgate_pcre2_unset()
        for part in template {
            switch part {
            case .literal(let from, let length):
                append(UnsafeBufferPointer(rebasing: literals[from..<(from + length)]))
            case .group(let number):
                // Groups beyond the returned count, or unset, insert nothing (PCRE2_SUBSTITUTE_UNSET_EMPTY).
                guard number < setPairs else { continue }
                let groupStart = ovector[2 * number]
                let groupEnd = ovector[2 * number + 1]
                guard groupStart != unset, groupEnd >= groupStart, groupEnd <= subject.count else { continue }
                append(UnsafeBufferPointer(rebasing: subject[groupStart..<groupEnd]))
            }
        }
    }

    // MARK: Presets

    private func redact(_ input: UnsafeBufferPointer<UInt8>) -> MaskOutcome {
        output.pointee.count = 0
        appendStars(characterCount(input))
        return .text(output.pointee.bytes)
    }

    private func keepFirst(_ keep: Int, of input: UnsafeBufferPointer<UInt8>) {
        var characters = 0
        var index = 0
        while index < input.count, characters < keep {
            index += 1
            while index < input.count, input[index] & 0xC0 == 0x80 { index += 1 }
            characters += 1
        }
        append(UnsafeBufferPointer(rebasing: input[0..<index]))
        appendStars(characterCount(UnsafeBufferPointer(rebasing: input[index...])))
    }

    private func keepLast(_ keep: Int, of input: UnsafeBufferPointer<UInt8>) {
        var characters = 0
        var index = input.count
        while index > 0, characters < keep {
            index -= 1
            while index > 0, input[index] & 0xC0 == 0x80 { index -= 1 }
            characters += 1
        }
        appendStars(characterCount(UnsafeBufferPointer(rebasing: input[0..<index])))
        append(UnsafeBufferPointer(rebasing: input[index...]))
    }

    /// `YYYY-01-01` or `YYYY-MM-01`, plus ` 00:00:00` for a timestamp: the shape of the input.
    private func appendDate(_ date: DateShape, keepMonth: Bool) {
        appendDigits(date.year, 4)
        output.pointee.appendByte(UInt8(ascii: "-"))
        appendDigits(keepMonth ? date.month : 1, 2)
        ("-01" as StaticString).withUTF8Buffer { append($0) }
        if date.hasTime { (" 00:00:00" as StaticString).withUTF8Buffer { append($0) } }
    }

    private func appendDigits(_ value: Int, _ width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            output.pointee.appendByte(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    private func characterCount(_ input: UnsafeBufferPointer<UInt8>) -> Int {
        var characters = 0
        for byte in input where byte & 0xC0 != 0x80 { characters += 1 }
        return characters
    }

    // MARK: Output buffer

    @inline(__always) private func append(_ bytes: UnsafeBufferPointer<UInt8>) { output.pointee.append(bytes) }

    @inline(__always) private func appendStars(_ number: Int) { output.pointee.appendStars(number) }

    private func appendHex<D: Sequence<UInt8>>(_ digest: D, bytes: Int) {
        output.pointee.reserve(bytes * 2)
        var written = 0
        for byte in digest where written < bytes {
            output.pointee.appendByte(Hex.digit(byte >> 4))
            output.pointee.appendByte(Hex.digit(byte))
            written += 1
        }
    }
}

/// A growable byte buffer reused for every value an evaluator masks.
struct OutputBuffer {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func deallocate() { base.deallocate() }

    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    mutating func reserve(_ extra: Int) {
        let needed = count + extra
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    @inline(__always) mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    @inline(__always) mutating func appendByte(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    mutating func appendStars(_ number: Int) {
        reserve(number)
        (base + count).update(repeating: UInt8(ascii: "*"), count: number)
        count += number
    }
}


/// Strict UTF-8 validation (no overlong forms, no surrogates, nothing above U+10FFFF).
public enum UTF8Validation {
    public static func isValid(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        let count = bytes.count
        guard let base = bytes.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        while index < count {
            // Eight ASCII bytes at a time: the common case for phones, IDs and e-mails.
            while index + 8 <= count, raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                index += 8
            }
            guard index < count else { break }
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            let length: Int
            var minimum: UInt32
            var scalar: UInt32
            switch lead {
            case 0xC2...0xDF: length = 2; minimum = 0x80; scalar = UInt32(lead & 0x1F)
            case 0xE0...0xEF: length = 3; minimum = 0x800; scalar = UInt32(lead & 0x0F)
            case 0xF0...0xF4: length = 4; minimum = 0x10000; scalar = UInt32(lead & 0x07)
            default: return false
            }
            guard index + length <= count else { return false }
            for offset in 1..<length {
                let continuation = bytes[index + offset]
                guard continuation & 0xC0 == 0x80 else { return false }
                scalar = (scalar << 6) | UInt32(continuation & 0x3F)
            }
            if scalar < minimum || scalar > 0x10FFFF || (scalar >= 0xD800 && scalar <= 0xDFFF) { return false }
            index += length
        }
        return true
    }
}
