import Foundation
import SandgateSQL

/// The functions a query on an aggregate table may call in WHERE and GROUP BY (stage 1 of
/// DESIGN.md §3). Stage 1 runs on every row, those of withheld groups too, so each function here
/// must be deterministic and unable to raise an error on any input: an error, or a different
/// answer on a second evaluation, would tell the consumer something about a withheld group.
/// `StageOneFunctionTests` calls each with edge values (NULL, ±2⁶³, ±Inf, empty, huge, invalid
/// UTF-8, invalid JSON, blobs) twice and expects no error and the same result.
///
/// Left out on purpose: `abs` (integer overflow on −2⁶³), `||`, `hex`, `quote`, `replace`,
/// `printf`, `char`, `zeroblob` (can build a value past the length limit), every JSON function and
/// `->`/`->>` (malformed JSON is an error), `likelihood` (its second argument must be a constant
/// in 0…1), `random`/`randomblob` and date functions of `'now'` (not deterministic).
public enum StageOneFunctions {
    /// Allowed names with their allowed argument counts.
    public static let arities: [String: ClosedRange<Int>] = [
        "coalesce": 2...32, "ifnull": 2...2, "nullif": 2...2, "iif": 3...3,
        "lower": 1...1, "upper": 1...1, "length": 1...1, "typeof": 1...1, "unicode": 1...1,
        "substr": 2...3, "substring": 2...3, "trim": 1...2, "ltrim": 1...2, "rtrim": 1...2, "instr": 2...2,
        "round": 1...2, "sign": 1...1, "floor": 1...1, "ceil": 1...1, "ceiling": 1...1, "trunc": 1...1, "mod": 2...2,
        "min": 2...32, "max": 2...32, "likely": 1...1, "unlikely": 1...1,
        "date": 1...16, "time": 1...16, "datetime": 1...16, "julianday": 1...16, "unixepoch": 1...16, "strftime": 2...16,
    ]

    /// Longest strftime format in stage 1 (its output grows with the format).
    public static let maximumFormatBytes = 100

    /// Date and time functions: refused with no time value or with `'now'` anywhere.
    static let dateFunctions: Set<String> = ["date", "time", "datetime", "julianday", "unixepoch", "strftime"]

    /// Functions that are not deterministic: refused anywhere in a query on an aggregate table.
    static let nonDeterministic: Set<String> = ["random", "randomblob", "changes", "last_insert_rowid", "total_changes"]

    /// Operators stage 1 refuses (they can fail or build values past the length limit).
    static let refusedOperators: Set<BinaryOperator> = [.concat, .extract, .extractText]

    /// Collations SQLite always has.
    static let collations: Set<String> = ["binary", "nocase", "rtrim"]

    /// True when `call` reads the clock: a date function without a time value, or with `'now'`.
    static func readsClock(_ call: FunctionCall) -> Bool {
        let name = call.name.lowercased()
        guard dateFunctions.contains(name) else { return false }
        let timeValues = name == "strftime" ? Array(call.arguments.dropFirst()) : call.arguments
        if timeValues.isEmpty { return true }
        return call.arguments.contains { argument in
            if case .literal(.string(let text)) = argument {
                return text.trimmingCharacters(in: .whitespaces).lowercased() == "now"
            }
            return false
        }
    }
}
