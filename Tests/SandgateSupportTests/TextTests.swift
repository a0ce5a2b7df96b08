import Foundation
import SandgateSupport
import Testing

@Suite struct CalendarAndJSONTextTests {
    @Test("timestamps are UTC RFC 3339 with microseconds", arguments: [
        (Int64(0), "1970-01-01T00:00:00.000000Z"),
        (Int64(1_795_000_000_123_456), "2026-11-18T11:06:40.123456Z"),
        (Int64(951_782_400_000_001), "2000-02-29T00:00:00.000001Z"),
        (Int64(-1), "1969-12-31T23:59:59.999999Z"),
    ])
    func timestamps(micros: Int64, text: String) {
        #expect(Timestamp.rfc3339(micros) == text)
    }

    @Test func dayParsing() {
        #expect(Timestamp.startOfDay("2000-02-29") == 951_782_400_000_000)
        #expect(Timestamp.startOfDay("2001-02-29") == nil)
        #expect(Timestamp.startOfDay("2026-13-01") == nil)
        #expect(Timestamp.startOfDay("yesterday") == nil)
        #expect(Timestamp.startOfDay(containing: 951_782_400_123_456) == 951_782_400_000_000)
    }

    @Test func jsonEscaping() {
        #expect(JSONText.quoted("a\"b\\c\n\u{01}王") == "\"a\\\"b\\\\c\\n\\u0001王\"")
    }
}

/// Red team: control characters and fullwidth signs at the start of a field are neutralised too.
@Suite struct SpreadsheetSafeCSVTests {
    @Test("fields a spreadsheet could run as formulas get a leading quote", arguments: [
        "\u{0}=1+1", "\n=1+1", "\r=1+1", "\t=1+1", "＝1+1", "＋1", "－1", "＠SUM(A1)", "=HYPERLINK(\"x\")", "@x", "+1+1", "-1+1",
    ])
    func neutralised(text: String) {
        let field = CSV.field(text, spreadsheetSafe: true)
        #expect(field.hasPrefix("'") || field.hasPrefix("\"'"), "\(field.debugDescription)")
    }

    @Test("plain values and numbers stay as they are", arguments: ["-5", "1.5", "analyst-a", "retail", ""])
    func untouched(text: String) {
        #expect(CSV.field(text, spreadsheetSafe: true) == text)
    }

    @Test("a quote followed by a combining mark is doubled (quoting by scalar)")
    func combiningMark() {
        #expect(CSV.field("a\"\u{0301},b") == "\"a\"\"\u{0301},b\"")
    }
}

