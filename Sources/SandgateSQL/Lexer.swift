/// A lexical error: where it is and what was wrong.
public struct LexerError: Error, Sendable, Equatable, CustomStringConvertible {
    public let position: SourcePosition
    public let message: String

    public var description: String { "\(message) at \(position)" }
}

/// Splits SQL text into tokens the way SQLite's tokenizer does; comments and whitespace are dropped.
///
/// Runs in one pass over the UTF-8 bytes, so its time is linear in the input, whatever it holds.
public struct Lexer: Sendable {
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0
    /// Columns count Unicode scalars; continuation bytes seen since the line start are subtracted.
    private var continuationBytesInLine = 0

    public init(_ sql: String) {
        bytes = Array(sql.utf8)
    }

    /// Tokenizes the whole input.
    public static func tokenize(_ sql: String) throws(LexerError) -> [Token] {
        var lexer = Lexer(sql)
        var tokens: [Token] = []
        while let token = try lexer.next() {
            tokens.append(token)
        }
        return tokens
    }

    private var position: SourcePosition {
        SourcePosition(offset: index, line: line, column: index - lineStart - continuationBytesInLine + 1)
    }

    private func peek(_ ahead: Int = 0) -> UInt8? {
        let at = index + ahead
        return at < bytes.count ? bytes[at] : nil
    }

    private mutating func advance() {
        let byte = bytes[index]
        index += 1
        if byte == UInt8(ascii: "\n") {
            line += 1
            lineStart = index
            continuationBytesInLine = 0
        } else if byte & 0xC0 == 0x80 {
            continuationBytesInLine += 1
        }
    }

    private func text(_ start: Int, _ end: Int) -> String {
        String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// The next token, or nil at the end of input.
    public mutating func next() throws(LexerError) -> Token? {
        try skipTrivia()
        guard let byte = peek() else { return nil }
        let start = position
        let startIndex = index

        func token(_ kind: Token.Kind, _ value: String) -> Token {
            Token(kind: kind, value: value, position: start, length: index - startIndex)
        }

        switch byte {
        case UInt8(ascii: "'"):
            let value = try quoted(closing: UInt8(ascii: "'"), doubledEscape: true, what: "string literal", start: start)
            return token(.string, value)
        case UInt8(ascii: "\""):
            let value = try quoted(closing: UInt8(ascii: "\""), doubledEscape: true, what: "quoted identifier", start: start)
            return token(.quotedIdentifier, value)
        case UInt8(ascii: "`"):
            let value = try quoted(closing: UInt8(ascii: "`"), doubledEscape: true, what: "quoted identifier", start: start)
            return token(.quotedIdentifier, value)
        case UInt8(ascii: "["):
            let value = try quoted(closing: UInt8(ascii: "]"), doubledEscape: false, what: "quoted identifier", start: start)
            return token(.quotedIdentifier, value)
        case UInt8(ascii: "x") where peek(1) == UInt8(ascii: "'"), UInt8(ascii: "X") where peek(1) == UInt8(ascii: "'"):
            advance()
            let digits = try quoted(closing: UInt8(ascii: "'"), doubledEscape: false, what: "blob literal", start: start)
            guard digits.utf8.count % 2 == 0, digits.utf8.allSatisfy(isHexDigit) else {
                throw LexerError(position: start, message: "malformed blob literal")
            }
            return token(.blob, digits)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            return token(.number, try number(start: start))
        case UInt8(ascii: ".") where peek(1).map(isDigit) == true:
            return token(.number, try number(start: start))
        case UInt8(ascii: "?"):
            advance()
            while let next = peek(), isDigit(next) { advance() }
            return token(.parameter, text(startIndex, index))
        case UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "$"):
            advance()
            let nameStart = index
            while let next = peek(), isIdentifierByte(next) { advance() }
            guard index > nameStart else {
                throw LexerError(position: start, message: "parameter without a name")
            }
            return token(.parameter, text(startIndex, index))
        default:
            if isIdentifierStart(byte) {
                while let next = peek(), isIdentifierByte(next) { advance() }
                return token(.word, text(startIndex, index))
            }
            if let symbol = symbolLength(byte) {
                for _ in 0..<symbol { advance() }
                return token(.symbol, text(startIndex, index))
            }
            throw LexerError(position: start, message: "unrecognized token \"\(printable(byte))\"")
        }
    }

    private mutating func skipTrivia() throws(LexerError) {
        while let byte = peek() {
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0C || byte == 0x0D {
                advance()
            } else if byte == UInt8(ascii: "-"), peek(1) == UInt8(ascii: "-") {
                while let next = peek(), next != UInt8(ascii: "\n") { advance() }
            } else if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "*") {
                let start = position
                advance(); advance()
                var closed = false
                while let next = peek() {
                    if next == UInt8(ascii: "*"), peek(1) == UInt8(ascii: "/") {
                        advance(); advance()
                        closed = true
                        break
                    }
                    advance()
                }
                if !closed { throw LexerError(position: start, message: "unterminated comment") }
            } else {
                return
            }
        }
    }

    /// Reads a quoted run starting at the opening quote and returns its content.
    private mutating func quoted(closing: UInt8, doubledEscape: Bool, what: String, start: SourcePosition) throws(LexerError) -> String {
        advance()
        var content: [UInt8] = []
        while let byte = peek() {
            advance()
            if byte == closing {
                if doubledEscape, peek() == closing {
                    advance()
                    content.append(closing)
                    continue
                }
                return String(decoding: content, as: UTF8.self)
            }
            content.append(byte)
        }
        throw LexerError(position: start, message: "unterminated \(what)")
    }

    private mutating func number(start: SourcePosition) throws(LexerError) -> String {
        let startIndex = index
        if peek() == UInt8(ascii: "0"), let x = peek(1), x == UInt8(ascii: "x") || x == UInt8(ascii: "X"),
           let digit = peek(2), isHexDigit(digit) {
            advance(); advance()
            while let next = peek(), isHexDigit(next) { advance() }
        } else {
            while let next = peek(), isDigit(next) { advance() }
            if peek() == UInt8(ascii: ".") {
                advance()
                while let next = peek(), isDigit(next) { advance() }
            }
            if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
                var ahead = 1
                if let sign = peek(1), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { ahead = 2 }
                if let digit = peek(ahead), isDigit(digit) {
                    for _ in 0..<ahead { advance() }
                    while let next = peek(), isDigit(next) { advance() }
                }
            }
        }
        if let next = peek(), isIdentifierByte(next) {
            while let more = peek(), isIdentifierByte(more) { advance() }
            throw LexerError(position: start, message: "unrecognized token \"\(text(startIndex, index))\"")
        }
        return text(startIndex, index)
    }

    private func symbolLength(_ byte: UInt8) -> Int? {
        let next = peek(1)
        switch byte {
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "+"),
             UInt8(ascii: "*"), UInt8(ascii: "/"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "~"),
             UInt8(ascii: "."):
            return 1
        case UInt8(ascii: "-"):
            if next == UInt8(ascii: ">") { return peek(2) == UInt8(ascii: ">") ? 3 : 2 }
            return 1
        case UInt8(ascii: "="):
            return next == UInt8(ascii: "=") ? 2 : 1
        case UInt8(ascii: "<"):
            if let next, next == UInt8(ascii: "=") || next == UInt8(ascii: ">") || next == UInt8(ascii: "<") { return 2 }
            return 1
        case UInt8(ascii: ">"):
            if let next, next == UInt8(ascii: "=") || next == UInt8(ascii: ">") { return 2 }
            return 1
        case UInt8(ascii: "!"):
            return next == UInt8(ascii: "=") ? 2 : nil
        case UInt8(ascii: "|"):
            return next == UInt8(ascii: "|") ? 2 : 1
        default:
            return nil
        }
    }

    private func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(Unicode.Scalar(byte)) : "0x" + String(byte, radix: 16)
    }
}

@inline(__always) private func isDigit(_ byte: UInt8) -> Bool { byte >= 48 && byte <= 57 }

@inline(__always) private func isHexDigit(_ byte: UInt8) -> Bool {
    isDigit(byte) || (byte >= 65 && byte <= 70) || (byte >= 97 && byte <= 102)
}

@inline(__always) private func isIdentifierStart(_ byte: UInt8) -> Bool {
    (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 95 || byte >= 0x80
}

@inline(__always) private func isIdentifierByte(_ byte: UInt8) -> Bool {
    isIdentifierStart(byte) || isDigit(byte) || byte == 36
}
