import Foundation
import Testing

/// Issue 13 on the command line: `--purpose`, `describe`, `policy check`, `usage settle` and `trace`.
@Suite struct PurposeCommandTests {
    static var today: String { String(ISO8601DateFormatter().string(from: Date()).prefix(10)) }

    /// The shipped policy with purposes and per-consumer tokens, and a grant for credit_risk.
    static func purposeful(rows: Int = 300) throws -> CLIWorkspace {
        let workspace = try CLIWorkspace(rows: rows)
        try workspace.edit("Policies/retail.yaml", replacing: "owner: retail-data-office\n", with: """
            owner: retail-data-office
            tokens: per_consumer
            purposes:
              credit_risk: Scoring the credit risk of applicants
              public_health_research: Aggregate studies approved by the ethics board

            """)
        try workspace.edit("Policies/consumers.yaml", replacing: "retail: { max_rows: 200, daily_queries: 1000, daily_rows: 50000 }",
                           with: "retail: { max_rows: 200, daily_queries: 1000, daily_rows: 50000, purposes: [credit_risk] }")
        return workspace
    }

    @Test("query and explain take --purpose; a missing one exits 1 with the code and the allowed purposes; describe lists them")
    func purposeOption() throws {
        let workspace = try Self.purposeful()
        let refused = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "SELECT city FROM customers LIMIT 2")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("purpose_not_allowed: dataset 'retail' requires a purpose") && refused.stderr.contains("credit_risk"), "\(refused.stderr)")
        let ok = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--purpose", "credit_risk", "--format", "csv", "SELECT city FROM customers LIMIT 2")
        #expect(ok.status == 0, "\(ok.stderr)")
        let explain = try workspace.run("explain", "--dataset", "retail", "--as", "analyst-a", "--purpose", "public_health_research", "SELECT city FROM customers")
        #expect(explain.status == 1 && explain.stderr.contains("unknown purpose 'public_health_research'"), "\(explain.stderr)")
        let described = try workspace.run("describe", "--dataset", "retail", "--as", "analyst-a")
        #expect(described.stdout.contains("purposes (required):\n    credit_risk — Scoring the credit risk of applicants\n"), "\(described.stdout)")
        #expect(!described.stdout.contains("public_health_research"))
        #expect(described.stdout.contains("tokens: per consumer"))
        let export = try workspace.run("usage", "export", "--format", "csv")
        #expect(export.stdout.contains(",credit_risk,ok,"), "\(export.stdout)")
    }

    @Test("policy test: cases declare a purpose (file default or per case) where the dataset requires one")
    func policyTestPurpose() throws {
        let workspace = try Self.purposeful(rows: 5000)
        let without = try workspace.run("policy", "test")
        #expect(without.status == 1)
        #expect(without.stdout.contains("purpose_not_allowed"), "\(without.stdout)")
        try workspace.edit("Policies/tests/retail.yaml", replacing: "consumer: analyst-a\n", with: "consumer: analyst-a\npurpose: credit_risk\n")
        let with = try workspace.run("policy", "test")
        #expect(with.status == 0 && with.stdout.contains(", 0 failed"), "\(with.stdout)")
    }

    @Test("policy check: a grant purpose the dataset does not list is a warning with the nearest name; a bad holder_share an error")
    func policyCheck() throws {
        let workspace = try Self.purposeful()
        try workspace.edit("Policies/consumers.yaml", replacing: "purposes: [credit_risk]", with: "purposes: [credit_risc]")
        let warned = try workspace.run("policy", "check", "Policies")
        #expect(warned.status == 0, "\(warned.stdout)\(warned.stderr)")
        #expect((warned.stdout + warned.stderr).contains("consumers.yaml:8:"), "\(warned.stdout)\(warned.stderr)")
        #expect((warned.stdout + warned.stderr).contains("warning: purpose 'credit_risc' is not listed by dataset 'retail', so it is refused (did you mean credit_risk?)"))
        try workspace.edit("Policies/retail.yaml", replacing: "holder_share: 0.80", with: "holder_share: 0.805x")
        let broken = try workspace.run("policy", "check", "Policies")
        #expect(broken.status == 1)
        #expect((broken.stdout + broken.stderr).contains("retail.yaml:20:17: holder_share must be a decimal from 0 to 1"), "\(broken.stdout)\(broken.stderr)")
    }

    @Test("usage settle: per holder, dataset and purpose; sums to the invoice total exactly; names the ledger range and tail hash")
    func settle() throws {
        let workspace = try CLIWorkspace()
        for (purpose, sql) in [("credit_risk", "SELECT city FROM customers LIMIT 3"), ("credit_risk", "SELECT city, phone FROM customers LIMIT 7"),
                               ("", "SELECT city, count(*) FROM customers GROUP BY city"), ("audit", "SELECT salary FROM customers")] {
            var arguments = ["query", "--dataset", "retail", "--as", "analyst-a"]
            if !purpose.isEmpty { arguments += ["--purpose", purpose] }
            _ = try CLI.run(arguments + [sql], in: workspace.root)
        }
        let invoice = try workspace.run("usage", "invoice", "--from", Self.today, "--to", Self.today, "--format", "json")
        let invoiceObject = try #require(try JSONSerialization.jsonObject(with: Data(invoice.stdout.utf8)) as? [String: Any])
        let invoiceLines = try #require(invoiceObject["lines"] as? [[String: Any]])
        #expect(invoiceLines.compactMap { $0["purpose"] as? String } == ["", "credit_risk"], "a free refusal keeps no free-form purpose: \(invoiceLines)")
        #expect(invoiceLines.first?["refused"] as? Int == 1)
        let invoiced = invoiceLines.reduce(0) { $0 + ($1["cost_micros"] as? Int ?? 0) }

        let json = try workspace.run("usage", "settle", "--from", Self.today, "--to", Self.today, "--format", "json")
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let statements = try #require(object["statements"] as? [[String: Any]])
        #expect(statements.map { $0["holder"] as? String } == ["retail-data-office"])
        let lines = try #require(statements.first?["lines"] as? [[String: Any]])
        #expect(lines.compactMap { $0["purpose"] as? String } == ["", "credit_risk"])
        var gross = 0
        for line in lines {
            let g = line["gross_micros"] as? Int ?? -1, fee = line["platform_fee_micros"] as? Int ?? -1, holder = line["holder_revenue_micros"] as? Int ?? -1
            #expect(holder + fee == g)
            #expect(holder == g * 800_000 / 1_000_000, "the holder's 80%, rounded down")
            #expect(line["holder_share_ppm"] as? Int == 800_000)
            gross += g
        }
        #expect(gross == invoiced && gross > 0, "statements and invoices of the same period sum to the same total")
        let coverage = try #require((object["coverage"] as? [[String: Any]])?.first)
        var tail = ""
        _ = try workspace.run("usage", "export", "--format", "jsonl").stdout.split(separator: "\n").last.map { line in
            tail = (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["record_hash"] as? String ?? ""
        }
        #expect(coverage["first_seq"] as? Int == 1 && coverage["last_seq"] as? Int == 4 && coverage["records"] as? Int == 4)
        #expect(coverage["tail_hash"] as? String == tail && tail.count == 64)

        let csv = try workspace.run("usage", "settle", "--from", Self.today, "--to", Self.today)
        #expect(csv.stdout.hasPrefix("holder,dataset,purpose,currency,holder_share_ppm,records,gross_micros,platform_fee_micros,holder_revenue_micros,from,to,ledger_range,tail_hash\r\n"))
        #expect(csv.stdout.contains("retail-data-office,retail,credit_risk,CNY,800000,2,"))

        let mine = try workspace.run("usage", "settle", "--from", Self.today, "--to", Self.today, "--holder", "retail-data-office")
        #expect(mine.stdout == csv.stdout)
        let other = try workspace.run("usage", "settle", "--from", Self.today, "--to", Self.today, "--holder", "hospital")
        #expect(other.stdout == "holder,dataset,purpose,currency,holder_share_ppm,records,gross_micros,platform_fee_micros,holder_revenue_micros,from,to,ledger_range,tail_hash\r\n")

        // A period with no records: no statements, nothing covered.
        let empty = try workspace.run("usage", "settle", "--from", "2020-01-01", "--to", "2020-01-31", "--format", "json")
        #expect(empty.stdout.contains(#""coverage":[],"statements":[]"#), "\(empty.stdout)")
    }

    @Test("trace: names the consumer and the query of a leaked CSV; exit 1 for a file without tokens")
    func trace() throws {
        let workspace = try Self.purposeful()
        let leaked = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--purpose", "credit_risk", "--format", "json",
                                       "SELECT customer_id, city FROM customers ORDER BY customer_id LIMIT 20")
        let response = try #require(try JSONSerialization.jsonObject(with: Data(leaked.stdout.utf8)) as? [String: Any])
        let queryID = try #require((response["usage"] as? [String: Any])?["query_id"] as? String)
        let csv = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--purpose", "credit_risk", "--format", "csv",
                                    "SELECT customer_id, city FROM customers ORDER BY customer_id LIMIT 20")
        try csv.stdout.write(toFile: workspace.root + "/leak.csv", atomically: true, encoding: .utf8)
        let traced = try workspace.run("trace", "leak.csv", "--dataset", "retail")
        #expect(traced.status == 0, "\(traced.stderr)")
        #expect(traced.stdout.contains("consumer analyst-a: 20 tokens (customers.customer_id: 20)"), "\(traced.stdout)")
        #expect(traced.stdout.contains("query \(queryID) at ") && traced.stdout.contains("purpose credit_risk rows 20: holds 20 of them"), "\(traced.stdout)")

        let json = try workspace.run("trace", "leak.csv", "--dataset", "retail", "--format", "json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let match = try #require((object["matches"] as? [[String: Any]])?.first)
        #expect(match["consumer"] as? String == "analyst-a" && match["tokens"] as? Int == 20)
        let queries = try #require(match["queries"] as? [[String: Any]])
        #expect(queries.contains { $0["query_id"] as? String == queryID && $0["contains"] as? Int == 20 && $0["purpose"] as? String == "credit_risk" })
        #expect(object["traceable"] as? Bool == true && object["candidates"] as? Int == 20)

        let plain = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--purpose", "credit_risk", "--format", "csv", "SELECT city, phone FROM customers LIMIT 20")
        try plain.stdout.write(toFile: workspace.root + "/plain.csv", atomically: true, encoding: .utf8)
        let none = try workspace.run("trace", "plain.csv", "--dataset", "retail")
        #expect(none.status == 1)
        #expect(none.stdout.contains("cannot trace") && none.stderr.contains("cannot trace"))
        let missing = try workspace.run("trace", "nowhere.csv", "--dataset", "retail")
        #expect(missing.status == 1 && missing.stderr.contains("cannot read nowhere.csv"), "\(missing.stderr)")
    }

    @Test("trace: past its cap of distinct values it says the result is incomplete, never 'not released', and exits 1 without matches")
    func traceCap() throws {
        let workspace = try Self.purposeful()
        let csv = try workspace.run("query", "--dataset", "retail", "--as", "analyst-a", "--purpose", "credit_risk", "--format", "csv",
                                    "SELECT customer_id, city FROM customers ORDER BY customer_id LIMIT 20")
        #expect(csv.status == 0, "\(csv.stderr)")
        // 200,000 distinct token-shaped values that are nobody's, then the real tokens.
        var filler = ""
        filler.reserveCapacity(200_000 * 33)
        for index in 0..<200_000 { filler += String(repeating: "0", count: 24) + String(format: "%08x", index) + "\n" }
        try (filler + csv.stdout).write(toFile: workspace.root + "/big.csv", atomically: true, encoding: .utf8)
        let capped = try workspace.run("trace", "big.csv", "--dataset", "retail")
        #expect(capped.status == 1, "\(capped.stdout) \(capped.stderr)")
        #expect(capped.stdout.contains("incomplete: reading stopped at 200000 distinct token-shaped values"), "\(capped.stdout)")
        #expect(capped.stdout.contains("the rest of the file was not examined"), "\(capped.stdout)")
        #expect(!capped.stdout.contains("not released"), "\(capped.stdout)")
        #expect(capped.stderr.contains("trace incomplete"), "\(capped.stderr)")
        let json = try workspace.run("trace", "big.csv", "--dataset", "retail", "--format", "json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["complete"] as? Bool == false && object["capped"] as? Bool == true)

        // Real tokens before the cap are reported, and the report still says it is incomplete.
        try (csv.stdout + filler + String(repeating: "f", count: 32) + "\n").write(toFile: workspace.root + "/found.csv", atomically: true, encoding: .utf8)
        let found = try workspace.run("trace", "found.csv", "--dataset", "retail")
        #expect(found.status == 0, "\(found.stderr)")
        #expect(found.stdout.contains("consumer analyst-a: 20 tokens"), "\(found.stdout)")
        #expect(found.stdout.contains("incomplete:"), "\(found.stdout)")
    }

}
