import Foundation
import SandgateSQL
import Testing

/// Inputs the parser fuzzer (`Scripts/fuzz.sh`) found; each must parse to a tree whose rendering
/// is a fixed point, or be refused with a syntax error — which one is part of each finding.
@Suite struct FuzzFindingsTests {
    @Test("fuzzer findings that are not SQL are refused", arguments: [
        // A reserved word followed by "(" was parsed as a function call named SELECT.
        "SELECT SELECT (cutomeme)-\u{FFFD}FROM custiderTgroT",
        "SELECT VALUES (1)",
        "SELECT FROM (1)",
    ])
    func refused(sql: String) {
        #expect(throws: SQLSyntaxError.self) { try Parser.parseSelect(sql) }
    }

    @Test("fuzzer findings that are SQL round-trip", arguments: [
        // NUL bytes and invalid UTF-8 inside quoted identifiers and in the alias taken from the text.
        "SELECT \"c\0\0ity\" NOT NULL AND b99",
        "SELECT \"c\0ity\" NOT NULL AND b99, 'it''s', \"ci\u{FFFD}ty\" NOT NULL A",
        "SELECT x'00ff', -8e980 -8e9808, 1e999, 'it''s', \"c\0\0\u{FFFD}\u{13}\0ity\" NOT NULL AND b99, 'it''s', \"ci\u{FFFD}ty\" NOT NULL A, 1e999",
        "SELECT 1 AS \"\0\"",
        "SELECT '\0' || \"a\0\"",
    ])
    func roundTrip(sql: String) throws {
        try Self.expectFixedPoint(sql)
    }

    /// `sql` parses, and its rendering parses to a tree that renders the same.
    static func expectFixedPoint(_ sql: String) throws {
        let rendered = Renderer.render(try Parser.parseSelect(sql))
        let again = try Parser.parseSelect(rendered, maximumDepth: 10_000)
        #expect(Renderer.render(again) == rendered, "\(sql.debugDescription) → \(rendered.debugDescription)")
    }

    /// Crash files of `Scripts/fuzz.sh`, as base64 of their bytes.
    @Test("fuzzer crash files round-trip", arguments: [
        "U0VMRUNUIGNoYW5uZWwsICIiIgEAAAAAAAAmIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiTUFUQ0gi37NfX1NHIiIiIiIiIiIiKyBMMzMzYWwgRlJPTSBvcmRlcnMgR/////8=",
    ])
    func crashFile(base64: String) throws {
        let bytes = try #require(Data(base64Encoded: base64))
        try Self.expectFixedPoint(String(decoding: bytes, as: UTF8.self))
    }

    @Test("a reserved word before ( is not a function call")
    func reservedWordsAreNotFunctions() {
        #expect(throws: SQLSyntaxError.self) { try Parser.parseSelect("SELECT SELECT (1)") }
        #expect((try? Parser.parseSelect("SELECT like('a%', 'abc'), glob('a*', 'abc')")) != nil)
    }
}
