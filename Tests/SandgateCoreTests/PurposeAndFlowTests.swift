import Foundation
@testable import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Issue 13: purposes decided on every query, recorded and limited; per-consumer tokens; trace.
@Suite struct PurposeAndFlowTests {
    static let policy = TestWorkspace.purposePolicy
    static let consumers = TestWorkspace.purposeConsumers()

    static func run(_ gateway: Gateway, _ sql: String, as consumer: String = "analyst-a", purpose: String?) -> QueryResponse {
        gateway.run(QueryRequest(consumer: consumer, dataset: "retail", sql: sql, purpose: purpose))
    }

    static func records(_ gateway: Gateway) throws -> [UsageRecord] {
        var records: [UsageRecord] = []
        try gateway.ledger.records { records.append($0); return true }
        return records
    }

    // MARK: Purposes

    @Test("a purpose missing, unknown, not granted or not allowed by the dataset is refused with the allowed ones in the hint", arguments: [
        (nil, "requires a purpose"),
        ("fraud_detection", "unknown purpose 'fraud_detection'"),
        ("credit_risc", "did you mean credit_risk?"),
        ("public_health_research", "unknown purpose 'public_health_research'"),
        ("marketing", "does not allow purpose 'marketing'"),
        ("credit_risk' OR 1=1 --", "unknown purpose"),
    ] as [(String?, String)])
    func refusals(purpose: String?, message: String) throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        let response = Self.run(gateway, "SELECT city FROM customers LIMIT 3", purpose: purpose)
        let error = try #require(response.error)
        #expect(error.code == .purposeNotAllowed)
        #expect(error.message.contains(message), "\(error)")
        #expect(error.hint.contains("credit_risk"), "the hint names the purposes this consumer may use: \(error.hint)")
        #expect(!error.hint.contains("public_health_research"), "…and only those: \(error.hint)")
        let record = try #require(try Self.records(gateway).last)
        #expect(record.status == .refused && record.errorCode == "purpose_not_allowed" && record.costMicros == 0)
        // explain decides the purpose the same way (it quotes a price and the purpose's limits).
        #expect(gateway.explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT city FROM customers", purpose: purpose)).failureCode == .purposeNotAllowed)
    }

    @Test("a purpose the dataset lists but the grant does not reads exactly like one that does not exist")
    func notGrantedIsIndistinguishable() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        let notGranted = try #require(Self.run(gateway, "SELECT city FROM customers LIMIT 3", purpose: "public_health_research").error)
        let nonexistent = try #require(Self.run(gateway, "SELECT city FROM customers LIMIT 3", purpose: "nonexistent_purpose_x").error)
        #expect(notGranted.code == nonexistent.code)
        #expect(notGranted.message.replacingOccurrences(of: "public_health_research", with: "P")
                == nonexistent.message.replacingOccurrences(of: "nonexistent_purpose_x", with: "P"), "\(notGranted.message) | \(nonexistent.message)")
        #expect(notGranted.hint == nonexistent.hint)
    }

    @Test("a purpose in an SQL comment declares nothing")
    func commentIsNotAPurpose() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        let response = Self.run(gateway, "SELECT city FROM customers /* purpose: credit_risk */ LIMIT 1 -- sandgate.purpose=credit_risk", purpose: nil)
        #expect(response.error?.code == .purposeNotAllowed)
    }

    @Test("an allowed purpose runs under its own lower limits and is recorded with the holder and share")
    func allowedPurposeIsRecordedAndLimited() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        let response = Self.run(gateway, "SELECT city FROM customers LIMIT 50", purpose: "credit_risk")
        let result = try #require(response.result, "\(String(describing: response.error))")
        #expect(result.rowCount == 5, "credit_risk allows 5 rows a query")
        #expect(response.truncated)
        let other = Self.run(gateway, "SELECT city FROM customers LIMIT 50", as: "analyst-b", purpose: "public_health_research")
        #expect(other.result?.rowCount == 50, "analyst-b's purpose has the grant's own limit")
        let records = try Self.records(gateway)
        #expect(records.map(\.purpose) == ["credit_risk", "public_health_research"])
        #expect(records.allSatisfy { $0.holder == "retail-data-office" && $0.holderSharePPM == 800_000 })
        let explanation = try #require(try? gateway.explain(QueryRequest(consumer: "analyst-a", dataset: "retail", sql: "SELECT city FROM customers", purpose: "credit_risk")).get())
        #expect(explanation.limits.maxRows == 5)
        #expect(explanation.rules.contains { $0.contains("purpose: credit_risk") })
        // The export carries the purpose (it is part of the record's canonical bytes).
        let export = UsageExport.csvHeader + records.map(UsageExport.csvLine).joined()
        #expect(export.contains(",credit_risk,") && export.contains(",public_health_research,"))
        #expect(try gateway.ledger.verify() == nil)
    }

    @Test("a dataset that lists no purposes: the purpose is optional and recorded when given")
    func optionalPurpose() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(Self.run(gateway, "SELECT city FROM customers LIMIT 1", purpose: nil).isOK)
        #expect(Self.run(gateway, "SELECT city FROM customers LIMIT 1", purpose: "audit").isOK)
        #expect(Self.run(gateway, "SELECT city FROM customers LIMIT 1", purpose: "no such thing!").error?.code == .purposeNotAllowed)
        #expect(Self.run(gateway, "SELECT salary FROM customers", purpose: "audit").error?.code == .noSuchColumn)
        #expect(try Self.records(gateway).map(\.purpose) == ["", "audit", "", ""], "a free refusal keeps no free-form purpose")

        // Where a list checked the purpose, a later refusal keeps it (the audit sees what it was for).
        let listed = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let strict = try listed.gateway()
        #expect(Self.run(strict, "SELECT salary FROM customers", purpose: "credit_risk").error?.code == .noSuchColumn)
        #expect(try Self.records(strict).map(\.purpose) == ["credit_risk"])
    }

    @Test("describe shows the purposes this consumer may use, and whether one is required")
    func describeShowsPurposes() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        let a = try gateway.describe(dataset: "retail", consumer: "analyst-a").get()
        #expect(a.purposes.map(\.name) == ["credit_risk"])
        #expect(a.purposes.first?.description == "Scoring the credit risk of applicants")
        #expect(a.purposeRequired)
        #expect(a.tokens == "per_consumer")
        let operatorView = try gateway.describe(dataset: "retail", consumer: nil).get()
        #expect(operatorView.purposes.map(\.name) == ["credit_risk", "public_health_research"])
    }

    // MARK: Per-consumer tokens

    static let tokenSQL = "SELECT customer_id FROM customers ORDER BY customer_id LIMIT 100"

    static func tokens(_ gateway: Gateway, as consumer: String, purpose: String) throws -> [String] {
        let response = run(gateway, tokenSQL, as: consumer, purpose: purpose)
        let result = try #require(response.result, "\(String(describing: response.error))")
        return result.rows.compactMap { if case .text(let text) = $0[0] { text } else { nil } }
    }

    @Test("per-consumer tokens: stable across queries and a restart, different between consumers")
    func perConsumerTokens() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: TestWorkspace.purposeConsumers(creditRiskLimit: "{}"))
        var gateway = try workspace.gateway()
        let first = try Self.tokens(gateway, as: "analyst-a", purpose: "credit_risk")
        #expect(first.count == 100 && first.allSatisfy { $0.utf8.count == 32 })
        #expect(try Self.tokens(gateway, as: "analyst-a", purpose: "credit_risk") == first)
        let b = try Self.tokens(gateway, as: "analyst-b", purpose: "public_health_research")
        #expect(b.count == 100)
        #expect(Set(first).isDisjoint(with: b), "no token of one consumer is another's")
        gateway.reload()
        #expect(try Self.tokens(gateway, as: "analyst-a", purpose: "credit_risk") == first)
        gateway = try workspace.gateway()
        #expect(try Self.tokens(gateway, as: "analyst-a", purpose: "credit_risk") == first, "stable across a restart")

        // A token of one consumer matches nothing in another consumer's query.
        let list = first.prefix(20).map { "'\($0)'" }.joined(separator: ",")
        let sql = "SELECT count(*) FROM customers WHERE customer_id IN (\(list))"
        #expect(Self.run(gateway, sql, as: "analyst-a", purpose: "credit_risk").result?.value(row: 0, column: 0) == .integer(20))
        #expect(Self.run(gateway, sql, as: "analyst-b", purpose: "public_health_research").result?.value(row: 0, column: 0) == .integer(0))
    }

    @Test("per-consumer tokens: joins inside one consumer's query give the raw data's answer")
    func joinsStayCorrect() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: TestWorkspace.purposeConsumers(creditRiskLimit: "{}"))
        let gateway = try workspace.gateway()
        let raw = try Connection(path: workspace.source, mode: .readOnly)
        let active = try raw.scalar("SELECT count(*) FROM customers WHERE status = 'active'")
        let selfJoin = "SELECT count(*) FROM customers c JOIN customers d ON c.customer_id = d.customer_id"
        #expect(Self.run(gateway, selfJoin, purpose: "credit_risk").result?.value(row: 0, column: 0) == active)
        #expect(Self.run(gateway, selfJoin, as: "analyst-b", purpose: "public_health_research").result?.value(row: 0, column: 0) == active)

        // A join of the aggregate table through the tokens: per channel, orders of active customers.
        let expected = try raw.rows("""
            SELECT o.channel, sum(o.amount) FROM orders o JOIN customers c ON o.customer_id = c.customer_id
            WHERE c.status = 'active' GROUP BY o.channel HAVING count(DISTINCT o.customer_id) >= 10 ORDER BY o.channel
            """)
        let sql = "SELECT o.channel, sum(o.amount) AS total FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY o.channel ORDER BY o.channel"
        for (consumer, purpose) in [("analyst-a", "credit_risk"), ("analyst-b", "public_health_research")] {
            let response = Self.run(gateway, sql, as: consumer, purpose: purpose)
            let result = try #require(response.result, "\(String(describing: response.error))")
            #expect(result.rows == expected, "\(consumer)")
        }
        #expect(!expected.isEmpty)
    }

    // MARK: Trace

    /// Writes `rows` as CSV (header first), as a consumer would save a result.
    static func writeCSV(_ columns: [String], _ rows: [[SQLValue]], to path: String) throws {
        var text = columns.joined(separator: ",") + "\n"
        for row in rows {
            text += row.map { value -> String in
                switch value {
                case .text(let text): "\"\(text)\""
                case .integer(let number): String(number)
                default: ""
                }
            }.joined(separator: ",") + "\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test("trace: a leaked file of 20 rows names its consumer and query; a mixed file both; a file without tokens cannot be traced")
    func trace() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: TestWorkspace.purposeConsumers(creditRiskLimit: "{}"))
        let gateway = try workspace.gateway()
        let leaked = Self.run(gateway, "SELECT customer_id, city, phone FROM customers ORDER BY customer_id LIMIT 20", purpose: "credit_risk")
        let leakedRows = try #require(leaked.result).rows
        _ = Self.run(gateway, "SELECT city FROM customers LIMIT 7", purpose: "credit_risk")
        _ = Self.run(gateway, "SELECT customer_id FROM customers ORDER BY customer_id DESC LIMIT 30", purpose: "credit_risk")
        let other = Self.run(gateway, "SELECT customer_id, city FROM customers ORDER BY city, customer_id LIMIT 10", as: "analyst-b", purpose: "public_health_research")
        let otherRows = try #require(other.result).rows

        let file = workspace.root + "/leak.csv"
        try Self.writeCSV(["customer_id", "city", "phone"], leakedRows, to: file)
        let report = try gateway.trace(path: file, dataset: "retail")
        #expect(report.candidates == 20)
        #expect(report.matches.map(\.consumer) == ["analyst-a"])
        let match = try #require(report.matches.first)
        #expect(match.tokens == 20)
        #expect(match.columns == ["customers.customer_id": 20])
        let named = try #require(match.queries.first)
        #expect(named.queryID == leaked.usage.queryID, "the query that released them comes first")
        #expect(named.contains == 20 && named.purpose == "credit_risk")
        #expect(match.queries.filter { ($0.contains ?? 0) > 0 }.count == 1, "the other queries hold none of them: \(match.queries)")
        #expect(report.text.contains("consumer analyst-a: 20 tokens") && report.text.contains(leaked.usage.queryID))

        // JSON lines mixing both consumers' rows.
        let mixed = workspace.root + "/mixed.jsonl"
        let lines = (leakedRows.prefix(10) + otherRows).map { row -> String in
            let id = if case .text(let text) = row[0] { text } else { "" }
            return "{\"customer_id\":\"\(id)\"}"
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: mixed, atomically: true, encoding: .utf8)
        let both = try gateway.trace(path: mixed, dataset: "retail")
        #expect(both.matches.map(\.consumer) == ["analyst-a", "analyst-b"])
        #expect(both.matches.map(\.tokens) == [10, 10])
        #expect(both.matches[1].queries.first?.queryID == other.usage.queryID)

        // Masked values that are not tokens do not trace.
        let plain = workspace.root + "/plain.csv"
        let masked = Self.run(gateway, "SELECT city, phone, birth_date FROM customers LIMIT 20", purpose: "credit_risk")
        try Self.writeCSV(["city", "phone", "birth_date"], try #require(masked.result).rows, to: plain)
        let none = try gateway.trace(path: plain, dataset: "retail")
        #expect(none.candidates == 0 && none.matches.isEmpty)
        #expect(none.text.contains("cannot trace"))
    }

    @Test("hash masks are keyed per consumer too, and a leaked file of hash values traces to its consumer")
    func hashValuesTrace() throws {
        let policy = Self.policy.replacingOccurrences(of: "email:       { mask: email }", with: "email:       { mask: hash }")
        let workspace = try TestWorkspace(policy: policy, consumers: TestWorkspace.purposeConsumers(creditRiskLimit: "{}"))
        let gateway = try workspace.gateway()
        let sql = "SELECT email FROM customers ORDER BY email LIMIT 20"
        let a = try #require(Self.run(gateway, sql, purpose: "credit_risk").result).rows
        let b = try #require(Self.run(gateway, sql, as: "analyst-b", purpose: "public_health_research").result).rows
        let hashes = a.compactMap { if case .text(let text) = $0[0] { text } else { nil } }
        #expect(hashes.count == 20 && hashes.allSatisfy { $0.utf8.count == 64 })
        #expect(Set(hashes).isDisjoint(with: b.compactMap { if case .text(let text) = $0[0] { text } else { nil } }))
        let file = workspace.root + "/emails.jsonl"
        try hashes.map { "{\"email\":\"\($0)\"}" }.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let report = try gateway.trace(path: file, dataset: "retail")
        #expect(report.matches.map(\.consumer) == ["analyst-a"])
        #expect(report.matches.first?.columns == ["customers.email": 20])
    }

    @Test("trace never confirms a query answered under another policy version (shared tokens before a switch to per_consumer)")
    func traceAcrossPolicyVersions() throws {
        let workspace = try TestWorkspace(consumers: TestWorkspace.purposeConsumers(creditRiskLimit: "{}"))
        let gateway = try workspace.gateway()
        let sql = "SELECT customer_id FROM customers ORDER BY customer_id LIMIT 20"
        let before = Self.run(gateway, sql, purpose: "credit_risk")
        #expect(before.isOK, "\(String(describing: before.error))")
        try workspace.write("retail.yaml", TestWorkspace.purposePolicy)
        gateway.reload()
        let after = Self.run(gateway, sql, purpose: "credit_risk")
        let file = workspace.root + "/leak.csv"
        try Self.writeCSV(["customer_id"], try #require(after.result).rows, to: file)
        let match = try #require(try gateway.trace(path: file, dataset: "retail").matches.first)
        #expect(match.queries.map(\.queryID) == [after.usage.queryID, before.usage.queryID])
        #expect(match.queries.map(\.contains) == [20, nil])
        #expect(match.queries.last?.note == "not re-run: the policy changed since")
    }

    @Test("trace on a shared-token dataset finds the dataset's tokens but names nobody")
    func traceShared() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT customer_id FROM customers LIMIT 20")
        let file = workspace.root + "/leak.csv"
        try Self.writeCSV(["customer_id"], try #require(response.result).rows, to: file)
        let report = try gateway.trace(path: file, dataset: "retail")
        #expect(report.sharedTokens == 20 && report.matches.isEmpty)
        #expect(report.text.contains("cannot be named"))
    }

    @Test("trace refuses an unreadable file and an unknown dataset with a clear error")
    func traceErrors() throws {
        let workspace = try TestWorkspace(policy: Self.policy, consumers: Self.consumers)
        let gateway = try workspace.gateway()
        #expect(throws: TraceError.self) { try gateway.trace(path: workspace.root + "/missing.csv", dataset: "retail") }
        #expect(throws: TraceError.self) { try gateway.trace(path: workspace.policies + "/retail.yaml", dataset: "nowhere") }
    }

    @Test("trace collects only words of exactly 32 or 64 hex digits")
    func candidateShapes() throws {
        let workspace = try TestWorkspace()
        let a32 = String(repeating: "ab", count: 16), b64 = String(repeating: "CD", count: 32)
        let text = "\(a32),x\(a32),\(a32)0,\"\(b64)\",\(String(repeating: "a", count: 33)),\(a32)g\n\(a32)"
        let path = workspace.root + "/shapes.txt"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let found = try Trace.candidates(path: path)
        #expect(found.tokens == [a32, b64.lowercased()])
        #expect(found.lines == 1)
    }
}
