import Foundation
import SandgateSupport
import SandgateTestSupport
import Testing

@Suite struct JSONWriterTests {
    @Test("members and elements are separated by exactly one comma at every depth")
    func commas() {
        let text = JSONWriter.object { json in
            json.field("a", 1)
            json.object("b") { json in
                json.field("c", true)
                json.array("d") { json in
                    json.number(1)
                    json.object { $0.field("e", "f") }
                    json.array { _ in }
                    json.null()
                }
            }
            json.object("empty") { _ in }
            json.field("g", nil as String?)
        }
        #expect(text == #"{"a":1,"b":{"c":true,"d":[1,{"e":"f"},[],null]},"empty":{},"g":null}"#)
    }

    @Test("keys and values are escaped; the text parses back to the same strings")
    func escaping() throws {
        let hostile = "q\"uote\\ \n\r\t\u{01}\u{1F} 王 \u{2028}"
        let text = JSONWriter.object { json in json.field(hostile, hostile) }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(object == [hostile: hostile])
    }

    @Test("any string, plain or with escapes anywhere (first, last, runs), parses back to itself")
    func escapingRoundTrip() throws {
        let pieces = ["a", "王", "\"", "\\", "\n", "\u{00}", "\u{1F}", "xyz", "\u{2028}", "🙂"]
        var generator = SeededGenerator(seed: 18)
        for _ in 0..<500 {
            let text = (0..<Int.random(in: 0...12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            let json = JSONWriter.array { json in
                json.string(text)
                Array(text.utf8).withUnsafeBytes { json.string(bytes: $0) }
            }
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String])
            #expect(parsed == [text, text], "\(json)")
        }
    }

    @Test("invalid UTF-8 bytes become U+FFFD, never raw bytes in the text")
    func invalidBytes() throws {
        let bytes: [UInt8] = [0x61, 0xFF, 0xC3, 0x62]
        let text = JSONWriter.array { json in bytes.withUnsafeBytes { json.string(bytes: $0) } }
        #expect(text == "[\"a\u{FFFD}\u{FFFD}b\"]")
    }

    @Test("optional integers write null when absent; raw values are kept as they are")
    func optionalsAndRaw() {
        let text = JSONWriter.object { json in
            json.field("some", Int64(7) as Int64?)
            json.field("none", nil as Int64?)
            json.field("real", raw: "0.5")
            json.field("list", strings: ["x", "y"])
        }
        #expect(text == #"{"some":7,"none":null,"real":0.5,"list":["x","y"]}"#)
    }
}

@Suite struct EncodingTests {
    @Test("hex encodes lower case, decodes either case, refuses odd or non-hex text")
    func hex() {
        #expect(Hex.encode([0x00, 0x0F, 0xA5, 0xFF]) == "000fa5ff")
        #expect(Hex.decode("000FA5ff") == [0x00, 0x0F, 0xA5, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect((0...15).map { Hex.digit(UInt8($0)) } == Array("0123456789abcdef".utf8))
        #expect(Hex.digit(0xFA) == UInt8(ascii: "a"))
    }

    @Test("base64 matches Foundation's for every length remainder", arguments: [0, 1, 2, 3, 4, 5, 64, 65])
    func base64(length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let encoded = bytes.withUnsafeBytes { Base64.encode($0) }
        #expect(encoded == Data(bytes).base64EncodedString())
    }

    @Test("random tokens are 32 lower-case hex digits and differ")
    func randomTokens() {
        let tokens = (0..<64).map { _ in RandomToken.hex128() }
        #expect(tokens.allSatisfy { $0.utf8.count == 32 && Hex.decode($0) != nil && $0 == $0.lowercased() })
        #expect(Set(tokens).count == tokens.count)
    }

    @Test("UTF-8 prefixes cut on a scalar boundary")
    func utf8Prefix() {
        #expect(UTF8Text.prefix("a王b", maxBytes: 3) == "a")
        #expect(UTF8Text.prefix("a王b", maxBytes: 4) == "a王")
        #expect(UTF8Text.prefix("abc", maxBytes: 10) == "abc")
    }

    @Test("civil dates round-trip through days since the epoch")
    func civilDates() {
        for days: Int64 in [-719_468, -1, 0, 10_957, 11_016, 20_000, 2_932_896] {
            let (year, month, day) = Timestamp.civilDate(daysSinceEpoch: days)
            #expect(Timestamp.daysSinceEpoch(year: year, month: month, day: day) == days)
        }
        #expect(Timestamp.civilDate(daysSinceEpoch: 11_016) == (2000, 2, 29))
    }
}
