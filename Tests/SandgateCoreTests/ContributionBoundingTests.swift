import Foundation
@testable import SandgateCore
import SandgateSQLite
import Testing

/// `ContributionBounder`: which rows and groups a unit keeps is a uniform random choice, and the
/// groups come out in SQLite's key order.
@Suite struct ContributionBoundingTests {
    static func token(_ number: Int) -> UnitToken {
        let text = String(repeating: "0", count: 32 - String(number, radix: 16).count) + String(number, radix: 16)
        return Array(text.utf8).withUnsafeBytes { UnitToken($0) }
    }

    @Test("a unit's 10 rows in a group: each of them is among the 3 kept with probability 3/10")
    func reservoirIsUniform() {
        let trials = 10_000
        var kept = [Int](repeating: 0, count: 10)
        for _ in 0..<trials {
            var bounder = ContributionBounder(keyCount: 1, measureCount: 1, maxRows: 3, maxGroups: 1)
            // Row i carries the value 2^i, so the kept sum says which rows were kept.
            for row in 0..<10 { bounder.add(keys: [.text("g")], unit: Self.token(1), measures: [Double(1 << row)]) }
            let groups = bounder.finish()
            let sum = Int(groups[0].sums[0])
            #expect(groups[0].rows == 3 && groups[0].counts == [3] && sum.nonzeroBitCount == 3)
            for row in 0..<10 where sum & (1 << row) != 0 { kept[row] += 1 }
        }
        // Each count is Binomial(10,000, 0.3): standard deviation about 46; 5 of them.
        for count in kept { #expect(abs(Double(count) - 0.3 * Double(trials)) < 5 * 46, "\(kept)") }
    }

    @Test("a unit in 5 groups keeps 2, each with probability 2/5; other units are not affected")
    func groupChoiceIsUniform() {
        let trials = 5_000
        var chosen = [String: Int]()
        for _ in 0..<trials {
            var bounder = ContributionBounder(keyCount: 1, measureCount: 0, maxRows: 1, maxGroups: 2)
            for group in ["a", "b", "c", "d", "e"] { bounder.add(keys: [.text(group)], unit: Self.token(7), measures: []) }
            bounder.add(keys: [.text("a")], unit: Self.token(8), measures: [])
            let groups = bounder.finish()
            #expect(groups.reduce(0) { $0 + $1.units } == 3)
            for group in groups { if case .text(let key) = group.keys[0] { chosen[key, default: 0] += Int(group.units) } }
        }
        // "a" also holds unit 8 every time.
        for key in ["a", "b", "c", "d", "e"] {
            let expected = 0.4 * Double(trials) + (key == "a" ? Double(trials) : 0)
            #expect(abs(Double(chosen[key] ?? 0) - expected) < 5 * 35, "\(chosen)")
        }
    }

    @Test("groups come out in SQLite's order (NULL, numbers, text by bytes, blobs); 1 and 1.0 are one group")
    func keyOrder() {
        var bounder = ContributionBounder(keyCount: 1, measureCount: 0, maxRows: 10, maxGroups: 10)
        let keys: [SQLValue] = [.blob([1]), .text("b"), .text("B"), .real(2.5), .integer(1), .real(1.0), .null, .integer(-3)]
        for key in keys { bounder.add(keys: [key], unit: Self.token(1), measures: []) }
        let groups = bounder.finish()
        #expect(groups.map(\.keys) == [[.null], [.integer(-3)], [.integer(1)], [.real(2.5)], [.text("B")], [.text("b")], [.blob([1])]])
        #expect(groups.map(\.rows) == [1, 1, 2, 1, 1, 1, 1])
    }
}
