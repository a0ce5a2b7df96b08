import Foundation
@testable import SandgateCore
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Masks that keep types (issue 11): `year` and `month` return dates, so SQLite's date functions
/// and comparisons over the masked column give valid dates — computed from the masked value only.
@Suite struct DateMaskTests {
    static func workspace(mask: String) throws -> TestWorkspace {
        try TestWorkspace(policy: TestWorkspace.retailPolicy.replacingOccurrences(of: "birth_date:  { mask: year }", with: "birth_date:  { mask: \(mask) }"))
    }

    @Test("date functions over a year-masked column return valid dates, never -4707", arguments: ["year", "month"])
    func dateFunctions(mask: String) throws {
        let workspace = try Self.workspace(mask: mask)
        let gateway = try workspace.gateway()
        let response = gateway.query("""
            SELECT birth_date, date(birth_date), strftime('%Y', birth_date), strftime('%m', birth_date), julianday(birth_date),
                   date(birth_date, '+1 month') FROM customers LIMIT 50
            """)
        let rows = try #require(response.result?.rows, "\(String(describing: response.error))")
        #expect(rows.count == 50)
        for row in rows {
            guard case .text(let masked) = row[0], case .text(let date) = row[1], case .text(let year) = row[2],
                  case .text(let month) = row[3], case .real(let julian) = row[4], case .text(let next) = row[5] else {
                Issue.record("not dates: \(row)")
                continue
            }
            #expect(masked == date, "a masked date is a date")
            #expect(masked.hasSuffix(mask == "year" ? "-01-01" : "-01"))
            #expect(year == String(masked.prefix(4)) && Int(year).map { (1900...2030).contains($0) } == true)
            if mask == "year" { #expect(month == "01") }
            #expect(julian > 2_400_000)
            #expect(next.count == 10)
        }
    }

    @Test("comparisons with dates compare dates: the year-masked filter agrees with the year")
    func comparisons() throws {
        let workspace = try Self.workspace(mask: "year")
        let gateway = try workspace.gateway()
        func count(_ sql: String) throws -> Int64 {
            let rows = try #require(gateway.query(sql).result?.rows)
            guard case .integer(let value) = rows.first?.first else { throw Failure() }
            return value
        }
        let later = try count("SELECT count(*) FROM customers WHERE birth_date >= '1990-01-01'")
        let byYear = try count("SELECT count(*) FROM customers WHERE CAST(strftime('%Y', birth_date) AS INTEGER) >= 1990")
        #expect(later == byYear && later > 0)
        // The masked value is all a query can see: no comparison finds a day inside the year.
        #expect(try count("SELECT count(*) FROM customers WHERE birth_date > '1990-01-01' AND birth_date < '1991-01-01'") == 0)
    }

    @Test("describe says each column's type, role and mask in words")
    func describe() throws {
        let workspace = try Self.workspace(mask: "year")
        let description = try workspace.gateway().describe(dataset: "retail", consumer: "analyst-a").get()
        let customers = try #require(description.tables.first { $0.name == "customers" })
        let birth = try #require(customers.columns.first { $0.name == "birth_date" })
        #expect(birth.type == "TEXT" && birth.role == "visible" && birth.maskSummary == "year only (YYYY-01-01)")
        let city = try #require(customers.columns.first { $0.name == "city" })
        #expect(city.type == "TEXT" && city.maskSummary == nil)
        let orders = try #require(description.tables.first { $0.name == "orders" })
        #expect(orders.columns.first { $0.name == "amount" }?.type == "REAL")
        #expect(orders.columns.first { $0.name == "customer_id" }?.maskSummary?.hasPrefix("keyed token") == true)
    }

    struct Failure: Error {}
}
