/// UTC timestamps as microseconds since the Unix epoch, printed as RFC 3339 with microseconds,
/// and the proleptic Gregorian calendar under them (the one copy: ledger periods, PostgreSQL dates).
public enum Timestamp {
    /// `2026-11-29T01:02:03.000004Z`.
    public static func rfc3339(_ microseconds: Int64) -> String {
        let (seconds, micros) = microseconds.quotientAndRemainder(dividingBy: 1_000_000)
        let (adjustedSeconds, adjustedMicros) = micros < 0 ? (seconds - 1, micros + 1_000_000) : (seconds, micros)
        let (days, secondOfDay) = floorDivide(adjustedSeconds, 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let hour = secondOfDay / 3600, minute = secondOfDay % 3600 / 60, second = secondOfDay % 60
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(adjustedMicros, 6))Z"
    }

    /// Microseconds at 00:00:00 UTC of `YYYY-MM-DD`, or nil if the text is not such a date.
    public static func startOfDay(_ text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int64(parts[0]), let month = Int64(parts[1]), let day = Int64(parts[2]),
              (1...12).contains(month), (1...31).contains(day), day <= daysIn(month: month, year: year)
        else { return nil }
        return daysSinceEpoch(year: year, month: month, day: day) * 86_400 * 1_000_000
    }

    /// Microseconds at the start of the UTC day that contains `microseconds`.
    public static func startOfDay(containing microseconds: Int64) -> Int64 {
        let day: Int64 = 86_400 * 1_000_000
        return floorDivide(microseconds, day).0 * day
    }

    /// Microseconds at the start of the UTC calendar month that contains `microseconds`.
    public static func startOfMonth(containing microseconds: Int64) -> Int64 {
        let day: Int64 = 86_400 * 1_000_000
        let (year, month, _) = civilDate(daysSinceEpoch: floorDivide(microseconds, day).0)
        return daysSinceEpoch(year: year, month: month, day: 1) * day
    }

    public static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let (q, r) = a.quotientAndRemainder(dividingBy: b)
        return r < 0 ? (q - 1, r + b) : (q, r)
    }

    /// Howard Hinnant's civil-from-days: (year, month, day) of a day counted from 1970-01-01.
    public static func civilDate(daysSinceEpoch z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Howard Hinnant's days-from-civil: the day counted from 1970-01-01.
    public static func daysSinceEpoch(year y0: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// `value` in decimal, left-padded with zeros to `width` digits.
    public static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}
