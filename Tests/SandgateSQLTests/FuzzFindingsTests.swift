import SandgateSQL
import Testing

/// Inputs the parser fuzzer (`Scripts/fuzz.sh`) found; each must parse to a tree whose rendering
/// is a fixed point, or be refused with a syntax error.
@Suite struct FuzzFindingsTests {
    @Test("fuzzer findings round-trip or are refused", arguments: [
        // A reserved word followed by "(" was parsed as a function call named SELECT.
        "SELECT SELECT (cutomeme)-\u{FFFD}FROM custiderTgroT",
        "SELECT VALUES (1)",
        "SELECT FROM (1)",
    ])
    func roundTrip(sql: String) throws {
        guard let select = try? Parser.parseSelect(sql) else { return }
        let rendered = Renderer.render(select)
        let again = try Parser.parseSelect(rendered, maximumDepth: 10_000)
        #expect(Renderer.render(again) == rendered, "\(sql) → \(rendered)")
    }

    @Test("a reserved word before ( is not a function call")
    func reservedWordsAreNotFunctions() {
        #expect(throws: SQLSyntaxError.self) { try Parser.parseSelect("SELECT SELECT (1)") }
        #expect((try? Parser.parseSelect("SELECT like('a%', 'abc'), glob('a*', 'abc')")) != nil)
    }
}
