/// What a regex mask does with a non-NULL value its pattern does not match.
public enum NoMatchAction: String, Sendable {
    /// Every character becomes `*` (the default: a value never passes unmasked).
    case redact
    /// The value becomes NULL.
    case null
    /// The value is returned as it is; allowed only when written out in the policy.
    case keep
}

/// A compiled column mask: a preset or a PCRE2 pattern with a replacement.
public struct Mask: Sendable {
    public enum Kind: Sendable {
        case regex(RegexProgram)
        case redact
        case null
        /// Keyed SHA-256, hex (the `hash` preset).
        case hash
        /// Keyed token for `join_key` columns: equal inputs give equal tokens within a dataset.
        case joinToken
        case keepFirst(Int)
        case keepLast(Int)
        /// A date or timestamp cut to the start of its year or month, keeping its shape
        /// (`year`, `month`): date functions and comparisons on the masked value keep working.
        case truncateDate(DatePart)
    }

    /// How much of a date the `year` and `month` presets keep.
    public enum DatePart: Sendable {
        case year
        case month
    }

    public let kind: Kind
    /// The preset name, or `regex` for a pattern written in the policy.
    public let name: String
    public let onNoMatch: NoMatchAction

    public init(kind: Kind, name: String, onNoMatch: NoMatchAction = .redact) {
        self.kind = kind
        self.name = name
        self.onNoMatch = onNoMatch
    }

    /// True when the mask needs the dataset's secret key.
    public var needsKey: Bool {
        switch kind {
        case .hash, .joinToken: true
        default: false
        }
    }

    /// The names of the presets of DESIGN.md §3.
    public static let presetNames = ["redact", "null", "hash", "email", "phone_cn", "id_card_cn", "first4", "last4", "year", "month"]

    /// The mask for join_key columns.
    public static let joinKey = Mask(kind: .joinToken, name: "join_key")

    /// Builds a preset; nil for an unknown name. Regex presets are compiled here (once per load).
    public static func preset(_ name: String) -> Mask? {
        func regex(_ pattern: String, _ replacement: String) -> Mask? {
            guard let program = try? RegexProgram.compile(pattern: pattern, replacement: replacement) else { return nil }
            return Mask(kind: .regex(program), name: name)
        }
        switch name {
        case "redact": return Mask(kind: .redact, name: name)
        case "null": return Mask(kind: .null, name: name)
        case "hash": return Mask(kind: .hash, name: name)
        case "first4": return Mask(kind: .keepFirst(4), name: name)
        case "last4": return Mask(kind: .keepLast(4), name: name)
        case "email": return regex(#"^[^@\s]+@([^@\s]+)$"#, "***@$1")
        case "phone_cn": return regex(#"^(1\d{2})\d{4}(\d{4})$"#, "$1****$2")
        case "id_card_cn": return regex(#"^(\d{6})\d{8}(\d{3}[0-9Xx])$"#, "$1********$2")
        case "year": return Mask(kind: .truncateDate(.year), name: name)
        case "month": return Mask(kind: .truncateDate(.month), name: name)
        default: return nil
        }
    }
}

extension Mask {
    /// What the mask does, in words, for `describe` (never the pattern of a holder's own mask:
    /// the pattern can say more about the data than the holder meant to publish).
    public var summary: String {
        switch kind {
        case .regex:
            switch name {
            case "email": "domain only (***@domain)"
            case "phone_cn": "first 3 and last 4 digits (138****5678)"
            case "id_card_cn": "first 6 and last 4 characters"
            default: "by the data holder's pattern"
            }
        case .redact: "every character replaced by *"
        case .null: "always NULL"
        case .hash: "keyed hash (64 hex digits)"
        case .joinToken: "keyed token (32 hex digits; joins only)"
        case .keepFirst(let count): "first \(count) characters only"
        case .keepLast(let count): "last \(count) characters only"
        case .truncateDate(.year): "year only (YYYY-01-01)"
        case .truncateDate(.month): "year and month only (YYYY-MM-01)"
        }
    }
}
