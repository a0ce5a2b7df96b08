import Foundation
@testable import SandgateFixtures
import SandgateSQLite
import Testing

@Suite struct RetailFixtureTests {
    func generate(_ rows: Int) throws -> (String, Data) {
        let path = NSTemporaryDirectory() + "sandgate-fixture-\(UUID().uuidString).sqlite"
        try RetailFixture.generate(customers: rows, path: path)
        return (path, try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test("the same row count gives a byte-identical file")
    func deterministic() throws {
        let (first, a) = try generate(300)
        let (second, b) = try generate(300)
        defer { try? FileManager.default.removeItem(atPath: first); try? FileManager.default.removeItem(atPath: second) }
        #expect(a == b)
        let (third, c) = try generate(301)
        defer { try? FileManager.default.removeItem(atPath: third) }
        #expect(a != c)
    }

    @Test("customers look real: names, 11-digit phones, valid ID check digits, emails, skewed cities")
    func realisticValues() throws {
        let (path, _) = try generate(2000)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let db = try Connection(path: path, mode: .readOnly)
        let rows = try db.rows("SELECT name, phone, id_card, email, city, birth_date, status FROM customers")
        #expect(rows.count == 2000)
        var cities: [String: Int] = [:]
        for row in rows {
            guard case .text(let name) = row[0], case .text(let phone) = row[1], case .text(let id) = row[2],
                  case .text(let email) = row[3], case .text(let city) = row[4], case .text(let birth) = row[5] else {
                Issue.record("wrong types")
                continue
            }
            #expect((2...3).contains(name.count))
            #expect(phone.count == 11 && phone.hasPrefix("1") && phone.allSatisfy(\.isNumber))
            #expect(id.count == 18)
            #expect(String(id.suffix(1)) == RetailFixture.checkCharacter(String(id.prefix(17))))
            #expect(id.dropFirst(6).prefix(8) == birth.replacing("-", with: ""))
            #expect(email.contains("@"))
            cities[city, default: 0] += 1
        }
        #expect((15...20).contains(cities.count))
        let sizes = cities.values.sorted()
        #expect(sizes.last! > 4 * sizes.first!)
        let orders = try db.scalar("SELECT count(*) FROM orders")
        guard case .integer(let count) = orders else { Issue.record("no orders"); return }
        #expect(count > 4000)
    }

    @Test("the check character follows GB 11643")
    func checkCharacter() {
        #expect(RetailFixture.checkCharacter("11010519491231002") == "X")
        #expect(RetailFixture.checkCharacter("44052418800101001") == "4")
    }

    @Test("the output directory is created when missing")
    func createsDirectory() throws {
        let directory = NSTemporaryDirectory() + "sandgate-fixture-dir-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try RetailFixture.generate(customers: 10, path: directory + "/nested/retail.sqlite")
        #expect(FileManager.default.fileExists(atPath: directory + "/nested/retail.sqlite"))
    }

    @Test func rejectsBadCounts() {
        #expect(throws: FixtureError.self) { try RetailFixture.generate(customers: 0, path: "/tmp/never.sqlite") }
    }
}
