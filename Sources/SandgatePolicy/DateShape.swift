/// The parts of a date or timestamp that the `year` and `month` masks keep, read strictly from
/// its text: `YYYY-MM-DD`, optionally followed by ` ` or `T`, `HH:MM[:SS[.fff…]]` and `Z` or
/// `±HH:MM`. Anything else — another layout, an impossible date (`2023-02-30`), trailing text —
/// is not a date here, so the mask redacts it instead of guessing which digits are a year.
public struct DateShape: Sendable, Equatable {
    public let year: Int
    public let month: Int
    /// The value carries a time of day: the masked value is a timestamp too.
    public let hasTime: Bool

    /// Reads `bytes` (UTF-8); nil when they are not exactly one valid date or timestamp.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> DateShape? {
        var reader = DigitReader(bytes: bytes)
        guard let year = reader.number(4), reader.skip("-"), let month = reader.number(2), reader.skip("-"),
              let day = reader.number(2), (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year)
        else { return nil }
        guard !reader.atEnd else { return DateShape(year: year, month: month, hasTime: false) }
        guard reader.skip(" ") || reader.skip("T"), let hour = reader.number(2), hour <= 23, reader.skip(":"),
              let minute = reader.number(2), minute <= 59 else { return nil }
        if reader.skip(":") {
            guard let second = reader.number(2), second <= 59 else { return nil }
            if reader.skip(".") {
                var digits = 0
                while reader.number(1) != nil { digits += 1 }
                guard (1...9).contains(digits) else { return nil }
            }
        }
        if reader.skip("Z") {
            // UTC marker: nothing may follow.
        } else if reader.skip("+") || reader.skip("-") {
            guard let offsetHours = reader.number(2), offsetHours <= 14, reader.skip(":"),
                  let offsetMinutes = reader.number(2), offsetMinutes <= 59 else { return nil }
        }
        return reader.atEnd ? DateShape(year: year, month: month, hasTime: true) : nil
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

/// Reads ASCII digits and separators from the front of a byte buffer.
private struct DigitReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    var atEnd: Bool { index == bytes.count }

    /// Exactly `count` ASCII digits as a number, or nil (and nothing consumed).
    mutating func number(_ count: Int) -> Int? {
        guard index + count <= bytes.count else { return nil }
        var value = 0
        for offset in 0..<count {
            let byte = bytes[index + offset]
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        index += count
        return value
    }

    /// Consumes `character` if it comes next.
    mutating func skip(_ character: Unicode.Scalar) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }
}
