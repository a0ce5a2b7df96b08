/// Why SQL text was not accepted by the parser.
public struct SQLSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Not valid SQL (or not the SELECT dialect sandgate understands).
        case syntax
        /// A statement other than SELECT (PRAGMA, INSERT, CREATE, …); `keyword` is its first word.
        case notASelect(keyword: String)
        /// Nested deeper than the parser's limit.
        case tooDeep
    }

    public let kind: Kind
    public let message: String
    public let position: SourcePosition?

    public init(_ kind: Kind, _ message: String, at position: SourcePosition?) {
        self.kind = kind
        self.message = message
        self.position = position
    }

    public var description: String {
        guard let position else { return message }
        return "\(message) at line \(position.line), column \(position.column)"
    }
}
