import CPCRE2

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
    private let matchData: OpaquePointer?
    private let matchContext: OpaquePointer?
    private let ovector: UnsafeMutablePointer<Int>?
    private var buffer: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// Non-NULL values masked so far (the `masked_cells` meter reads and resets it).
    public var evaluations = 0

    /// Upper bound on PCRE2 backtracking per match; a pattern that hits it redacts the value.
    static let matchLimit: UInt32 = 1_000_000

    /// `key` is required for `hash` and join tokens; without it those masks fail closed (redact).
    public init(mask: Mask, key: [UInt8]?) {
        self.mask = mask
        self.hasher = key.map(KeyedHasher.init(key:))
        if case .regex(let program) = mask.kind {
            let data = pcre2_match_data_create_from_pattern_8(program.code, nil)
            matchData = data
            ovector = data.map { pcre2_get_ovector_pointer_8($0) }
            let context = pcre2_match_context_create_8(nil)
            if let context { pcre2_set_match_limit_8(context, Self.matchLimit) }
            matchContext = context
        } else {
            matchData = nil
            matchContext = nil
            ovector = nil
        }
        capacity = 256
        buffer = .allocate(capacity: capacity)
    }

    deinit {
        buffer.deallocate()
        if let matchData { pcre2_match_data_free_8(matchData) }
        if let matchContext { pcre2_match_context_free_8(matchContext) }
    }

    /// Masks `input` (UTF-8 text, or the text form of a number). NULL inputs never reach here:
    /// the caller keeps NULL as NULL.
    public func apply(_ input: UnsafeBufferPointer<UInt8>) -> MaskOutcome {
        evaluations += 1
        count = 0
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
        case .regex(let program):
            guard UTF8Validation.isValid(input) else { return redact(input) }
            switch substitute(program, input) {
            case .matched:
                break
            case .noMatch:
                switch mask.onNoMatch {
                case .redact: return redact(input)
                case .null: return .null
                case .keep:
                    count = 0
                    append(input)
                }
            case .failed:
                return redact(input)
            }
        }
        return .text(UnsafeBufferPointer(start: buffer, count: count))
    }

    // MARK: Regex

    private enum SubstituteResult { case matched, noMatch, failed }

    /// Global substitution with `pcre2_substitute`'s semantics (including its handling of empty
    /// matches), but with the template parsed at load time.
    private func substitute(_ program: RegexProgram, _ subject: UnsafeBufferPointer<UInt8>) -> SubstituteResult {
        guard let matchData, let ovector else { return .failed }
        let base = subject.baseAddress ?? UnsafePointer(bitPattern: 1)!
        let length = subject.count
        var start = 0
        var retryOptions: UInt32 = 0
        var matched = false
        while true {
            let options = retryOptions | PCRE2_NO_UTF_CHECK
            let rc = program.usesJIT
                ? pcre2_jit_match_8(program.code, base, length, start, options, matchData, matchContext)
                : pcre2_match_8(program.code, base, length, start, options, matchData, matchContext)
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
            appendTemplate(program, subject: subject, setPairs: Int(rc))
            start = matchEnd
            retryOptions = matchStart == matchEnd ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0
        }
        guard matched else { return .noMatch }
        append(UnsafeBufferPointer(rebasing: subject[start..<length]))
        return .matched
    }

    private func appendTemplate(_ program: RegexProgram, subject: UnsafeBufferPointer<UInt8>, setPairs: Int) {
        guard let ovector else { return }
        let unset = sandgate_pcre2_unset()
        for part in program.template {
            switch part {
            case .literal(let from, let length):
                program.literals.withUnsafeBufferPointer {
                    append(UnsafeBufferPointer(rebasing: $0[from..<(from + length)]))
                }
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
        count = 0
        appendStars(characterCount(input))
        return .text(UnsafeBufferPointer(start: buffer, count: count))
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

    private func characterCount(_ input: UnsafeBufferPointer<UInt8>) -> Int {
        var characters = 0
        for byte in input where byte & 0xC0 != 0x80 { characters += 1 }
        return characters
    }

    // MARK: Output buffer

    private func reserve(_ extra: Int) {
        let needed = count + extra
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.update(from: buffer, count: count)
        buffer.deallocate()
        buffer = grown
        capacity = newCapacity
    }

    private func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (buffer + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    private func appendStars(_ number: Int) {
        reserve(number)
        (buffer + count).update(repeating: UInt8(ascii: "*"), count: number)
        count += number
    }

    private func appendHex<D: Sequence<UInt8>>(_ digest: D, bytes: Int) {
        reserve(bytes * 2)
        var written = 0
        for byte in digest where written < bytes {
            buffer[count] = hexDigits[Int(byte >> 4)]
            buffer[count + 1] = hexDigits[Int(byte & 0x0F)]
            count += 2
            written += 1
        }
    }
}

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

/// Strict UTF-8 validation (no overlong forms, no surrogates, nothing above U+10FFFF).
public enum UTF8Validation {
    public static func isValid(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        let count = bytes.count
        while index < count {
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
