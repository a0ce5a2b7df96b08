import Foundation
@testable import SandgateCore
import SandgateServer
import SandgateTestSupport
import Testing

/// The JSON encodings of the core's typed responses (the front end's job, not the core's).
@Suite struct ResponseFormatTests {
    @Test("the JSON form is one object with sql, rules, limits and quote")
    func json() throws {
        let workspace = try TestWorkspace()
        let outcome = try workspace.gateway().explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT city FROM customers"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(ResponseFormat.json(outcome, id: "\"9\"").utf8)) as? [String: Any])
        #expect(object["id"] as? String == "9")
        #expect(object["ok"] as? Bool == true)
        #expect((object["sql"] as? String)?.hasPrefix("SELECT \"city\"") == true)
        #expect((object["quote"] as? [String: Any])?["max_cost_micros"] as? Int == 30000)
    }

    @Test("query results carry one type per column: declared where the source declares it, else from the values")
    func types() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.run(QueryRequest(
            consumer: "analyst-a", dataset: "retail",
            sql: "SELECT customer_id, city, birth_date, 1.5 AS r, x'00' AS b, NULL AS n, length(city) AS l FROM customers LIMIT 3"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(ResponseFormat.json(response).utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        // customer_id is a join token and birth_date is masked (text); the rest as the values are.
        #expect(object["types"] as? [String] == ["text", "text", "text", "real", "blob", "text", "integer"])
    }

    @Test("a declared date or timestamp is one only while every value has its ISO shape", arguments: [
        ("DATE", ["1973-05-01"], ColumnType.Kind.date), ("TIMESTAMP", ["2024-01-02 03:04:05"], .timestamp),
        ("DATETIME", ["2024-01-02T03:04:05.123"], .timestamp), ("DATE", ["1973"], .text), ("DATE", ["1973-13-01"], .text),
        ("INTEGER", ["12"], .text), ("TEXT", ["1973-05-01"], .text),
    ])
    func declaredTemporal(declared: String, values: [String], kind: ColumnType.Kind) {
        let shaped = values.allSatisfy { value in Array(value.utf8).withUnsafeBytes { ColumnType.hasTemporalShape($0) } }
        #expect(ColumnType(declared: declared, seen: [.text], temporalValues: shaped).kind == kind)
        #expect(ColumnType(declared: "INTEGER", seen: [.integer, .null]).kind == .integer)
        #expect(ColumnType(declared: nil, seen: [.integer, .real]).kind == .real)
        #expect(ColumnType(declared: nil, seen: [.integer, .text]).kind == .text)
        #expect(ColumnType(declared: "BLOB", seen: [.null]).kind == .blob)
    }
}

@Suite struct ErrorObjectTests {
    @Test("an error without a hint carries no empty hint field")
    func noEmptyHint() {
        #expect(ResponseFormat.error(GatewayError(.badRequest, "bad")) == "{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"bad\"}}")
        #expect(ResponseFormat.error(GatewayError(.badRequest, "bad", hint: "try x")).contains("\"hint\":\"try x\""))
    }
}
