import Foundation
import SandgateCore
import SandgateLedger
import SandgateServer
import SandgateTestSupport
import Testing

/// Issue 13 on the wire: the purpose as a JSON-lines session default and per query, and over
/// PostgreSQL as a startup option or `SET sandgate.purpose`.
@Suite struct PurposeProtocolTests {
    static func withHarness(_ body: (ServerHarness) async throws -> Void) async throws {
        try await withServerHarness(workspace: TestWorkspace(policy: TestWorkspace.purposePolicy, consumers: TestWorkspace.purposeConsumers()), body)
    }

    static func purposes(_ harness: ServerHarness) throws -> [String] {
        var records: [UsageRecord] = []
        try harness.gateway.ledger.records { records.append($0); return true }
        return records.filter { !$0.dataset.isEmpty }.map(\.purpose)
    }

    @Test("JSON lines: purpose on auth is the session default, a query's own purpose wins, a bad one is refused")
    func jsonLines() async throws {
        try await Self.withHarness { harness in
            let client = try harness.client()
            let key = TestWorkspace.demoKey
            let sql = #""sql":"SELECT city FROM customers LIMIT 2""#
            #expect(try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(key)"}"#).contains(#""ok":true"#))
            let missing = try client.request(#"{"id":1,"op":"query","dataset":"retail",\#(sql)}"#)
            #expect(errorCode(missing) == "purpose_not_allowed")
            #expect(missing.contains("credit_risk"), "the hint names the allowed purposes: \(missing)")
            #expect(try client.request(#"{"id":2,"op":"query","dataset":"retail",\#(sql),"purpose":"credit_risk"}"#).contains(#""ok":true"#))
            #expect(errorCode(try client.request(#"{"id":3,"op":"query","dataset":"retail",\#(sql),"purpose":7}"#)) == "bad_request")

            #expect(try client.request(#"{"op":"auth","consumer":"analyst-a","key":"\#(key)","purpose":"credit_risk"}"#).contains(#""ok":true"#))
            #expect(try client.request(#"{"id":4,"op":"query","dataset":"retail",\#(sql)}"#).contains(#""ok":true"#))
            #expect(errorCode(try client.request(#"{"id":5,"op":"query","dataset":"retail",\#(sql),"purpose":"public_health_research"}"#)) == "purpose_not_allowed",
                    "another consumer's purpose is not granted to this one")
            let explained = try client.request(#"{"id":6,"op":"explain","dataset":"retail",\#(sql)}"#)
            #expect(explained.contains("purpose: credit_risk"), "\(explained)")
            let described = try client.request(#"{"id":7,"op":"describe","dataset":"retail"}"#)
            #expect(described.contains(#""purposes":[{"name":"credit_risk","description":"Scoring the credit risk of applicants"}],"purpose_required":true,"tokens":"per_consumer""#), "\(described)")
            #expect(try Self.purposes(harness) == ["", "credit_risk", "credit_risk", ""], "refusals record no purpose")
        }
    }

    @Test("pgwire: options=-c sandgate.purpose=…, SET, SHOW and RESET; a comment declares nothing")
    func postgres() async throws {
        try await Self.withHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey, options: "-c sandgate.purpose=credit_risk")
            #expect(try client.query("SELECT city FROM customers LIMIT 2").rows.count == 2)
            #expect(try client.query("SHOW sandgate.purpose").rows == [["credit_risk"]])
            #expect(try client.query("RESET sandgate.purpose").error == nil)
            let refused = try #require(try client.query("SELECT city FROM customers /* sandgate.purpose=credit_risk */ LIMIT 2").error)
            #expect(refused["C"] == "42501" && refused["M"]?.hasPrefix("purpose_not_allowed: ") == true)
            #expect(refused["H"]?.contains("credit_risk") == true)
            #expect(try client.query("SET sandgate.purpose = 'public_health_research'").error == nil)
            #expect(try client.query("SELECT city FROM customers LIMIT 1").error?["M"]?.contains("unknown purpose") == true)
            #expect(try client.query("SET SESSION sandgate.purpose TO credit_risk; SELECT city FROM customers LIMIT 3").rows.count == 3)
            #expect(try Self.purposes(harness) == ["credit_risk", "", "", "credit_risk"])

            let other = try PGTestClient(port: harness.pgPort)
            _ = try other.login(user: "analyst-b", password: TestWorkspace.demoKey, options: "-c sandgate.purpose=credit_risk")
            #expect(try other.query("SELECT city FROM customers LIMIT 1").error?["M"]?.contains("unknown purpose") == true,
                    "analyst-b cannot use analyst-a's purpose")
        }
    }

    @Test("pgwire: a SET of sandgate.* takes effect as written or is an error; other SETs answer SET as before")
    func strictSandgateSet() async throws {
        try await Self.withHarness { harness in
            let client = try PGTestClient(port: harness.pgPort)
            _ = try client.login(user: "analyst-a", password: TestWorkspace.demoKey, options: "-c sandgate.purpose=credit_risk")
            #expect(try client.query(#"SET "sandgate.purpose" = 'public_health_research'"#).error == nil)
            #expect(try client.query("SHOW sandgate.purpose").rows == [["public_health_research"]], "a quoted name is the same parameter")
            #expect(try client.query("SET sandgate.purpose = 'credit_risk';").error == nil)
            let refused: [(sql: String, code: String, text: String)] = [
                ("SET LOCAL sandgate.purpose = 'public_health_research'", "22000", "SET LOCAL is not supported"),
                ("SET sandgate.purpse = 'public_health_research'", "22000", "did you mean 'sandgate.purpose'?"),
                ("SET sandgate.purpose FROM CURRENT", "42601", "FROM CURRENT is not supported"),
                ("SET sandgate.purpose = 'public_health_research' garbage", "42601", "trailing text"),
                ("SET sandgate.purpose TO public_health_research garbage", "42601", "trailing text"),
            ]
            for (sql, code, text) in refused {
                let error = try #require(try client.query(sql).error, "\(sql) must be an error")
                #expect(error["C"] == code && error["M"]?.contains(text) == true, "\(sql): \(error)")
                #expect(try client.query("SHOW sandgate.purpose").rows == [["credit_risk"]], "the purpose in force is unchanged after \(sql)")
            }
            // BEGIN; SET LOCAL …; ROLLBACK cannot leave a purpose behind.
            _ = try client.query("BEGIN; SET LOCAL sandgate.purpose = 'public_health_research'")
            _ = try client.query("ROLLBACK")
            #expect(try client.query("SHOW sandgate.purpose").rows == [["credit_risk"]])
            for sql in ["SET client_encoding = 'UTF8'", "SET extra_float_digits = 3", "SET application_name = 'psql'", "SET TIME ZONE 'UTC'",
                        "SET LOCAL statement_timeout = 0", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET datestyle TO ISO, MDY"] {
                let messages = try client.query(sql)
                #expect(messages.error == nil, "\(sql)")
            }
            #expect(try client.query("SELECT city FROM customers LIMIT 2").rows.count == 2)
        }
    }
}
