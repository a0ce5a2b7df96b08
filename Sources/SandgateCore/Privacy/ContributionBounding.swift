import Foundation
import SandgateSQLite

/// Contribution bounding of a private plan's stage 1, in one pass over its rows and without a
/// sort: for each privacy unit, at most `maxRows` rows in each group (a uniform random choice:
/// reservoir sampling) and at most `maxGroups` groups (a uniform random choice among the unit's
/// groups: a partial Fisher–Yates shuffle), each row's measures already clamped to their bounds
/// by the SQL. Draws come from a `KeystreamGenerator` keyed afresh per query.
///
/// Why in Swift: the same bounding written as two window functions over the rows cost three
/// sorts of every row (3.1× a thresholds-only `GROUP BY channel` over 1,000,000 orders); hash
/// tables cost one pass.
///
/// Groups are told apart by their keys' values as `SQLValue`s, with an integral real folded into
/// the integer of the same value (as SQLite's GROUP BY does); text keys compare as bytes (the
/// checker refuses COLLATE in GROUP BY).
struct ContributionBounder {
    let keyCount: Int
    let measureCount: Int
    let maxRows: Int
    let maxGroups: Int
    private var generator = KeystreamGenerator()

    private var groupIndex: [[SQLValue]: Int32] = [:]
    /// The keys of each group as first seen.
    private var groupKeys: [[SQLValue]] = []
    private var unitIndex: [UnitToken: Int32] = [:]
    private var pairIndex: [UInt64: Int32] = [:]
    private var pairUnit: [Int32] = []
    private var pairGroup: [Int32] = []
    /// Rows of the unit seen in the group.
    private var pairSeen: [Int32] = []
    /// The kept rows' measures, `measureCount` per row, NaN for NULL (at most `maxRows` rows).
    private var pairKept: [[Double]] = []

    init(keyCount: Int, measureCount: Int, maxRows: Int, maxGroups: Int) {
        self.keyCount = keyCount
        self.measureCount = measureCount
        self.maxRows = maxRows
        self.maxGroups = maxGroups
    }

    /// One stage-1 row: group keys, the unit's token, the clamped measures (NaN for NULL).
    mutating func add(keys: [SQLValue], unit: UnitToken, measures: [Double]) {
        let normalized = keys.map(Self.normalized)
        let group: Int32
        if let found = groupIndex[normalized] {
            group = found
        } else {
            group = Int32(groupKeys.count)
            groupIndex[normalized] = group
            groupKeys.append(keys)
        }
        let unitNumber: Int32
        if let found = unitIndex[unit] {
            unitNumber = found
        } else {
            unitNumber = Int32(unitIndex.count)
            unitIndex[unit] = unitNumber
        }
        let key = UInt64(UInt32(bitPattern: unitNumber)) << 32 | UInt64(UInt32(bitPattern: group))
        let pair: Int
        if let found = pairIndex[key] {
            pair = Int(found)
        } else {
            pair = pairUnit.count
            pairIndex[key] = Int32(pair)
            pairUnit.append(unitNumber)
            pairGroup.append(group)
            pairSeen.append(0)
            pairKept.append([])
        }
        pairSeen[pair] += 1
        let seen = Int(pairSeen[pair])
        if seen <= maxRows {
            pairKept[pair].append(contentsOf: measures)
        } else {
            // Reservoir sampling (Algorithm R): after n rows, each is kept with probability R/n.
            let slot = Int(generator.next(upperBound: UInt64(seen)))
            if slot < maxRows {
                for index in 0..<measureCount { pairKept[pair][slot * measureCount + index] = measures[index] }
            }
        }
    }

    /// Per group, in key order: the keys, distinct units, rows kept, and per measure the
    /// non-NULL values kept and their sum — after keeping at most `maxGroups` groups per unit.
    mutating func finish() -> [(keys: [SQLValue], units: Int64, rows: Int64, counts: [Int64], sums: [Double])] {
        let groupCount = groupKeys.count
        var units = [Int64](repeating: 0, count: groupCount)
        var rows = [Int64](repeating: 0, count: groupCount)
        var counts = [[Int64]](repeating: [Int64](repeating: 0, count: measureCount), count: groupCount)
        var sums = [[Double]](repeating: [Double](repeating: 0, count: measureCount), count: groupCount)
        // The pairs of each unit, by a counting sort on the unit.
        let unitCount = unitIndex.count
        var start = [Int](repeating: 0, count: unitCount + 1)
        for unit in pairUnit { start[Int(unit) + 1] += 1 }
        for index in 0..<unitCount { start[index + 1] += start[index] }
        var next = start
        var ordered = [Int32](repeating: 0, count: pairUnit.count)
        for (pair, unit) in pairUnit.enumerated() {
            ordered[next[Int(unit)]] = Int32(pair)
            next[Int(unit)] += 1
        }
        for unit in 0..<unitCount {
            var run = Array(ordered[start[unit]..<start[unit + 1]])
            if run.count > maxGroups {
                // A uniform choice of maxGroups of the unit's groups.
                for index in 0..<maxGroups {
                    let other = index + Int(generator.next(upperBound: UInt64(run.count - index)))
                    run.swapAt(index, other)
                }
                run.removeLast(run.count - maxGroups)
            }
            for pair in run.map(Int.init) {
                let group = Int(pairGroup[pair])
                units[group] += 1
                let kept = pairKept[pair]
                rows[group] += Int64(min(Int(pairSeen[pair]), maxRows))
                for (offset, value) in kept.enumerated() where !value.isNaN {
                    counts[group][offset % measureCount] += 1
                    sums[group][offset % measureCount] += value
                }
            }
        }
        // A group whose every unit kept other groups has no bounded rows: it does not exist.
        return (0..<groupCount).filter { units[$0] > 0 }
            .sorted { Self.precedes(groupKeys[$0], groupKeys[$1]) }
            .map { (groupKeys[$0], units[$0], rows[$0], counts[$0], sums[$0]) }
    }

    /// An integral real as the integer of the same value (SQLite groups 1 and 1.0 together).
    static func normalized(_ value: SQLValue) -> SQLValue {
        if case .real(let number) = value, number == number.rounded(), abs(number) < 9.2e18 { return .integer(Int64(number)) }
        return value
    }

    /// SQLite's order of keys: NULL, numbers, text (as bytes), blobs.
    static func precedes(_ left: [SQLValue], _ right: [SQLValue]) -> Bool {
        for (a, b) in zip(left, right) {
            let order = compare(a, b)
            if order != 0 { return order < 0 }
        }
        return false
    }

    static func compare(_ a: SQLValue, _ b: SQLValue) -> Int {
        func rank(_ value: SQLValue) -> Int {
            switch value {
            case .null: 0
            case .integer, .real: 1
            case .text: 2
            case .blob: 3
            }
        }
        if rank(a) != rank(b) { return rank(a) < rank(b) ? -1 : 1 }
        switch (a, b) {
        case (.integer(let x), .integer(let y)): return x < y ? -1 : x == y ? 0 : 1
        case (.text(let x), .text(let y)): return bytes(Array(x.utf8), Array(y.utf8))
        case (.blob(let x), .blob(let y)): return bytes(x, y)
        default:
            let x = number(a), y = number(b)
            return x < y ? -1 : x == y ? 0 : 1
        }
    }

    private static func number(_ value: SQLValue) -> Double {
        switch value {
        case .integer(let number): Double(number)
        case .real(let number): number
        default: 0
        }
    }

    private static func bytes(_ x: [UInt8], _ y: [UInt8]) -> Int {
        for (a, b) in zip(x, y) where a != b { return a < b ? -1 : 1 }
        return x.count < y.count ? -1 : x.count == y.count ? 0 : 1
    }
}

/// A privacy unit's token: the 128 bits of its 32 hex digits, or (any other spelling) its text.
struct UnitToken: Hashable {
    let high: UInt64
    let low: UInt64
    let text: String?

    init(_ bytes: UnsafeRawBufferPointer) {
        var high: UInt64 = 0, low: UInt64 = 0
        var valid = bytes.count == 32
        if valid {
            for (index, byte) in bytes.enumerated() {
                let digit: UInt64
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
                default: digit = 0; valid = false
                }
                if index < 16 { high = high << 4 | digit } else { low = low << 4 | digit }
            }
        }
        self.high = valid ? high : 0
        self.low = valid ? low : 0
        text = valid ? nil : String(decoding: bytes, as: UTF8.self)
    }
}
