/// A position in SQL text: 1-based line and column (columns count Unicode scalars), and the UTF-8 offset.
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    public let offset: Int
    public let line: Int
    public let column: Int

    public init(offset: Int, line: Int, column: Int) {
        self.offset = offset
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column)" }
}

/// One lexical token of SQLite's dialect.
public struct Token: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// A bare word: a keyword or an unquoted identifier (the parser decides).
        case word
        /// An identifier written in `"…"`, `[…]` or `` `…` ``.
        case quotedIdentifier
        /// A string literal `'…'`.
        case string
        /// A blob literal `x'…'`.
        case blob
        /// A numeric literal (decimal, real with exponent, or hex).
        case number
        /// A parameter: `?`, `?NNN`, `:name`, `@name`, `$name`.
        case parameter
        /// An operator or punctuation: `(`, `)`, `,`, `;`, `.`, `||`, `<=`, `->>`, …
        case symbol
    }

    public let kind: Kind
    /// The token's value: the identifier without quotes, the string without quotes and with
    /// doubled quotes undone, the hex digits of a blob, or the literal text otherwise.
    public let value: String
    public let position: SourcePosition
    /// The token's length in UTF-8 bytes in the source.
    public let length: Int

    /// True for a bare word equal to `keyword` (ASCII case-insensitive).
    public func isWord(_ keyword: String) -> Bool {
        kind == .word && value.utf8.count == keyword.utf8.count
            && zip(value.utf8, keyword.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }

    /// True for the symbol `symbol`.
    public func isSymbol(_ symbol: String) -> Bool { kind == .symbol && value == symbol }
}

/// SQLite compares identifiers case-insensitively for ASCII letters only.
public func equalNames(_ a: String, _ b: String) -> Bool {
    a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
}

@inline(__always)
func asciiLower(_ byte: UInt8) -> UInt8 {
    byte >= 65 && byte <= 90 ? byte + 32 : byte
}
