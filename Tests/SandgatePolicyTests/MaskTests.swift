import CPCRE2
@testable import SandgatePolicy
import Testing

/// Applies `mask` to `input` and returns the text, or nil for NULL.
func apply(_ mask: Mask, _ input: String, key: [UInt8]? = Array(repeating: 7, count: 32)) -> String? {
    let evaluator = MaskEvaluator(mask: mask, key: key)
    return Array(input.utf8).withUnsafeBufferPointer { buffer in
        switch evaluator.apply(buffer) {
        case .null: return nil
        case .text(let output): return String(decoding: output, as: UTF8.self)
        }
    }
}

func regexMask(_ pattern: String, _ replacement: String, flags: String = "", onNoMatch: NoMatchAction = .redact) throws -> Mask {
    Mask(kind: .regex(try RegexProgram.compile(pattern: pattern, replacement: replacement, flags: flags)), name: "regex", onNoMatch: onNoMatch)
}

@Suite struct PresetTests {
    @Test("every preset of DESIGN.md §3", arguments: [
        ("phone_cn", "13812345678", "138****5678"),
        ("phone_cn", "12345", "*****"),
        ("id_card_cn", "110101195102020011", "110101********0011"),
        ("id_card_cn", "11010119510202001X", "110101********001X"),
        ("id_card_cn", "1101011951", "**********"),
        ("email", "li.lei@example.cn", "***@example.cn"),
        ("email", "not-an-email", "************"),
        ("first4", "abcdefgh", "abcd****"),
        ("first4", "abc", "abc"),
        ("first4", "北京市朝阳区", "北京市朝**"),
        ("last4", "6222021234567890", "************7890"),
        ("last4", "上海浦东新区", "**浦东新区"),
        ("year", "1951-02-02", "1951-01-01"),
        ("year", "1951-02-02 10:00:00", "1951-01-01 00:00:00"),
        ("year", "1951-02-02T10:00:00.123+08:00", "1951-01-01 00:00:00"),
        ("year", "02/02/1951", "**********"),
        ("month", "1951-02-02", "1951-02-01"),
        ("month", "2024-12-31 23:59:59Z", "2024-12-01 00:00:00"),
        ("redact", "secret", "******"),
        ("redact", "王小明", "***"),
    ])
    func preset(name: String, input: String, expected: String) throws {
        let mask = try #require(Mask.preset(name))
        #expect(apply(mask, input) == expected)
    }

    @Test func nullPreset() throws {
        #expect(apply(try #require(Mask.preset("null")), "anything") == nil)
    }

    @Test("hash is keyed SHA-256 hex: stable per key, different across keys")
    func hashPreset() throws {
        let mask = try #require(Mask.preset("hash"))
        let first = try #require(apply(mask, "13812345678"))
        #expect(first.count == 64 && first.allSatisfy(\.isHexDigit))
        #expect(apply(mask, "13812345678") == first)
        #expect(apply(mask, "13812345679") != first)
        #expect(apply(mask, "13812345678", key: Array(repeating: 8, count: 32)) != first)
        // Without a key the mask fails closed.
        #expect(apply(mask, "13812345678", key: nil) == "***********")
    }

    @Test("join tokens differ from hash masks of the same value")
    func joinTokens() throws {
        let token = try #require(apply(Mask.joinKey, "42"))
        #expect(token.count == 32)
        #expect(try apply(#require(Mask.preset("hash")), "42")?.hasPrefix(token) == false)
    }

    @Test func unknownPreset() {
        #expect(Mask.preset("phone_us") == nil)
    }
}

/// `year` and `month` keep a value's shape, and only for values that are exactly a valid date
/// or timestamp: anything else is redacted, never passed through or half-kept.
@Suite struct DateMaskTests {
    @Test("values that are not exactly a date or timestamp are redacted, not parsed loosely", arguments: [
        "1951", "1951-02", "1951-2-02", "1951-02-30", "1951-13-01", "1951-00-10", "1900-02-29",
        "1951-02-02 ", "1951-02-02 25:00", "1951-02-02 10:60", "1951-02-02 10:00:61", "1951-02-02x",
        "1951-02-02 10:00:00 extra", "1951-02-02 10:00:00.", "1951-02-02 10:00:00+8", "1951-02-02 10:00:00+08:00Z",
        "secret 1951-02-02", "２０２４-01-01", "1951-02-02\n", "2451545.5", "-4707",
    ])
    func oddValuesRedacted(input: String) throws {
        for name in ["year", "month"] {
            let mask = try #require(Mask.preset(name))
            let masked = try #require(apply(mask, input))
            #expect(masked == String(repeating: "*", count: input.count), "\(name) of \(input)")
        }
    }

    @Test("a leap day is a date; the masked value is a valid date whose year (and month) are the input's")
    func leapDay() throws {
        let year = try #require(Mask.preset("year")), month = try #require(Mask.preset("month"))
        #expect(apply(year, "2000-02-29") == "2000-01-01")
        #expect(apply(month, "2000-02-29 12:00") == "2000-02-01 00:00:00")
    }

    @Test("invalid UTF-8 never reaches the date reader's output")
    func invalidUTF8() throws {
        let evaluator = MaskEvaluator(mask: try #require(Mask.preset("year")), key: nil)
        let bytes: [UInt8] = [0x31, 0x39, 0x35, 0x31, 0xFF, 0x30, 0x32]
        let output = bytes.withUnsafeBufferPointer { buffer -> String? in
            if case .text(let text) = evaluator.apply(buffer) { return String(decoding: text, as: UTF8.self) }
            return nil
        }
        #expect(output?.allSatisfy { $0 == "*" } == true)
    }

    @Test("describe's words for every preset", arguments: Mask.presetNames)
    func summaries(name: String) throws {
        let mask = try #require(Mask.preset(name))
        #expect(!mask.summary.isEmpty)
    }
}

@Suite struct RegexMaskTests {
    @Test("a Chinese name masks to its first character plus **")
    func chineseName() throws {
        let mask = try regexMask("^(.).*$", "$1**")
        #expect(apply(mask, "王小明") == "王**")
        #expect(apply(mask, "欧阳娜娜") == "欧**")
        #expect(apply(mask, "Li Lei") == "L**")
    }

    @Test("named groups in ${name} and $name form")
    func namedGroups() throws {
        let mask = try regexMask("^(?<user>[^@]+)@(?<domain>.+)$", "${user}-at-$domain")
        #expect(apply(mask, "li.lei@example.cn") == "li.lei-at-example.cn")
    }

    @Test("global by default; unmatched text between matches is kept")
    func globalByDefault() throws {
        #expect(apply(try regexMask("\\d", "#"), "a1b22c") == "a#b##c")
    }

    @Test("a non-matching value is redacted, nulled or kept as the policy says")
    func onNoMatch() throws {
        #expect(apply(try regexMask("^\\d+$", "N"), "abc") == "***")
        #expect(apply(try regexMask("^\\d+$", "N", onNoMatch: .null), "abc") == nil)
        #expect(apply(try regexMask("^\\d+$", "N", onNoMatch: .keep), "abc") == "abc")
        #expect(apply(try regexMask("^\\d+$", "N", onNoMatch: .keep), "123") == "N")
    }

    @Test("invalid UTF-8 is redacted, never matched or kept")
    func invalidUTF8() throws {
        let mask = try regexMask("^(.).*$", "$1**", onNoMatch: .keep)
        let evaluator = MaskEvaluator(mask: mask, key: nil)
        let bytes: [UInt8] = [0x61, 0xFF, 0xFE, 0x62]
        let output = bytes.withUnsafeBufferPointer { buffer -> String? in
            if case .text(let text) = evaluator.apply(buffer) { return String(decoding: text, as: UTF8.self) }
            return nil
        }
        #expect(output == "****")
    }

    @Test("flags i, m, s, x compile; others are refused")
    func flags() throws {
        #expect(apply(try regexMask("abc", "X", flags: "i"), "ABC") == "X")
        #expect(throws: MaskCompileError.self) { try regexMask("abc", "X", flags: "g") }
    }

    @Test("compile errors carry PCRE2's message and offset", arguments: [
        ("^(abc$", "$1", MaskCompileError.Part.pattern),
        ("(a)", "$2", .replacement),
        ("(a)", "${nope}", .replacement),
        ("(a)", "$", .replacement),
        ("(a)", "${1", .replacement),
        ("(a)", "$*MARK", .replacement),
    ])
    func compileErrors(pattern: String, replacement: String, part: MaskCompileError.Part) {
        do {
            _ = try RegexProgram.compile(pattern: pattern, replacement: replacement)
            Issue.record("compiled")
        } catch {
            #expect(error.part == part)
            #expect(!error.message.isEmpty)
        }
    }

    @Test("the match limit turns catastrophic backtracking into redaction")
    func matchLimit() throws {
        let mask = try regexMask("^(a+)+$", "ok", onNoMatch: .keep)
        let input = String(repeating: "a", count: 40) + "b"
        #expect(apply(mask, input) == String(repeating: "*", count: 41))
    }
}

/// The fast path must equal `pcre2_substitute` (global, unset groups as empty) on every pattern and input.
@Suite struct SubstituteEquivalenceTests {
    static let patterns: [(String, String)] = [
        ("\\d", "*"), ("(\\d{3})\\d{4}(\\d{4})", "$1****$2"), ("^(.).*$", "$1**"),
        ("(?<user>[^@]+)@(?<domain>.+)", "${domain}:$user"), ("a*", "-"), ("", "x"), ("(a)|(b)", "[$1|$2]"),
        ("\\b", "|"), ("(?i)ab", "$$"), ("(.)(.)", "$2$1"), ("x*?", "_"), ("\\p{Han}", "某"), ("(?=a)", "^"),
        ("[aeiou]+", "${0}${0}"), ("(?m)^", ">"), ("\\s+", " "), ("(\\w)(\\w)?", "<$2$1>"), ("$", "!"),
        ("(?<=a)b", "B"), ("[^@]+(?=@)", "***"), (".", "$0$0"), ("\\X", "."),
    ]
    static let inputs = [
        "", "a", "abc", "13812345678", "李娜", "王小明abc", "aaa", "baab", "li.lei@example.cn", "a\nb\nc",
        "12 34  56", "AbAB", "🙂x🙂", "110101195102020011", "x", "ab@cd@ef", "  ", "é́",
    ]

    @Test("fast path equals pcre2_substitute", arguments: patterns)
    func equivalence(pattern: String, replacement: String) throws {
        let program = try RegexProgram.compile(pattern: pattern, replacement: replacement)
        let mask = Mask(kind: .regex(program), name: "regex", onNoMatch: .keep)
        for input in Self.inputs {
            let expected = reference(program.code, input, replacement)
            #expect(apply(mask, input) == expected, "pattern \(pattern) replace \(replacement) input \(input.debugDescription)")
        }
    }

    /// `pcre2_substitute` with the options the masks promise to match.
    func reference(_ code: OpaquePointer, _ input: String, _ replacement: String) -> String? {
        let subject = Array(input.utf8)
        let template = Array(replacement.utf8)
        var output = [UInt8](repeating: 0, count: 4096)
        var length = output.count
        let options = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY
        let rc = subject.withUnsafeBufferPointer { s in
            template.withUnsafeBufferPointer { t in
                output.withUnsafeMutableBufferPointer { o in
                    pcre2_substitute_8(code, s.baseAddress ?? UnsafePointer(bitPattern: 1), s.count, 0, options, nil, nil,
                                       t.baseAddress ?? UnsafePointer(bitPattern: 1), t.count, o.baseAddress, &length)
                }
            }
        }
        guard rc >= 0 else { return "error \(rc)" }
        return String(decoding: output[0..<length], as: UTF8.self)
    }
}
