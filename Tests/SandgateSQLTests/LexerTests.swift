import SandgateSQL
import Testing

@Suite struct LexerTests {
    @Test("tokens of every literal and identifier form")
    func forms() throws {
        let tokens = try Lexer.tokenize("SELECT \"a\"\"b\", [c d], `e`, 'it''s', x'0aFF', 1.5e-3, 0x1F, .5, ?, ?12, :name, @n, $v FROM t -- c\n/* x */;")
        let kinds = tokens.map(\.kind)
        #expect(kinds.contains(.quotedIdentifier))
        #expect(tokens[1].value == "a\"b")
        #expect(tokens[3].value == "c d")
        #expect(tokens[5].value == "e")
        #expect(tokens[7].kind == .string && tokens[7].value == "it's" && tokens[7].length == 7)
        #expect(tokens[9].kind == .blob && tokens[9].value == "0aFF")
        #expect(tokens.filter { $0.kind == .number }.map(\.value) == ["1.5e-3", "0x1F", ".5"])
        #expect(tokens.filter { $0.kind == .parameter }.map(\.value) == ["?", "?12", ":name", "@n", "$v"])
        #expect(tokens.last?.isSymbol(";") == true)
    }

    @Test("operators of one to three characters")
    func operators() throws {
        let symbols = try Lexer.tokenize("a || b <= c <> d != e == f << g >> h -> i ->> j").filter { $0.kind == .symbol }.map(\.value)
        #expect(symbols == ["||", "<=", "<>", "!=", "==", "<<", ">>", "->", "->>"])
    }

    @Test("positions count lines and characters, not bytes")
    func positions() throws {
        let tokens = try Lexer.tokenize("SELECT '王'\n  , name")
        #expect(tokens[2].position.line == 2 && tokens[2].position.column == 3)
        let chinese = try Lexer.tokenize("'王小明' x")
        #expect(chinese[1].position.column == 7)
    }

    @Test("errors say where", arguments: [
        ("SELECT 'open", "unterminated string literal", 8),
        ("SELECT \"open", "unterminated quoted identifier", 8),
        ("SELECT /* open", "unterminated comment", 8),
        ("SELECT x'0g'", "malformed blob literal", 8),
        ("SELECT x'0'", "malformed blob literal", 8),
        ("SELECT 12abc", "unrecognized token", 8),
        ("SELECT #", "unrecognized token", 8),
        ("SELECT :", "parameter without a name", 8),
    ])
    func errors(sql: String, message: String, column: Int) {
        do {
            _ = try Lexer.tokenize(sql)
            Issue.record("no error for \(sql)")
        } catch {
            #expect(error.message.hasPrefix(message))
            #expect(error.position.column == column)
        }
    }

    @Test("adversarial input is handled in one pass")
    func adversarial() throws {
        let nots = String(repeating: "NOT ", count: 250_000)
        #expect(try Lexer.tokenize(nots).count == 250_000)
        #expect(throws: LexerError.self) { try Lexer.tokenize("'" + String(repeating: "a", count: 1_000_000)) }
        #expect(try Lexer.tokenize(String(repeating: "(", count: 100_000)).count == 100_000)
    }

    @Test func caseInsensitiveNames() throws {
        let token = try #require(try Lexer.tokenize("sElEcT").first)
        #expect(token.isWord("SELECT"))
        #expect(equalNames("Customers", "CUSTOMERS"))
        #expect(!equalNames("Ä", "ä"))
    }
}
