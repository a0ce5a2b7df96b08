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
    public static let presetNames = ["redact", "null", "hash", "email", "phone_cn", "id_card_cn", "first4", "last4", "year"]

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
        case "year": return regex(#"^(\d{4})-\d{2}-\d{2}(?:[ T].*)?$"#, "$1")
        default: return nil
        }
    }
}
