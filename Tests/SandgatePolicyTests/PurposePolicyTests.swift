import Foundation
import SandgatePolicy
import Testing

/// Issue 13: `purposes:`, `tokens:` and `pricing.holder_share` in dataset policies, `purposes`
/// in grants, and the one rule that decides a query's purpose.
@Suite struct PurposePolicyTests {
    static let purposeful = """
        source: data.sqlite
        tokens: per_consumer
        purposes:
          credit_risk: Scoring the credit risk of applicants
          public_health_research: Aggregate studies approved by the ethics board
        pricing:
          per_query: 1000
          holder_share: 0.80
        tables:
          customers:
            columns:
              city: {}
        """

    static let goodKey = String(repeating: "ab", count: 32)

    @Test("purposes, tokens and holder_share load into typed values")
    func loads() throws {
        let directory = try PolicyDirectory(["retail.yaml": Self.purposeful])
        let result = directory.load()
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let policy = try #require(result.datasets["retail"])
        #expect(policy.purposes.map(\.name) == ["credit_risk", "public_health_research"])
        #expect(policy.purposes[0].description == "Scoring the credit risk of applicants")
        #expect(policy.purposes[0].location.line == 4)
        #expect(policy.tokens == .perConsumer)
        #expect(policy.pricing.holderSharePPM == 800_000)
    }

    @Test("a policy without the new keys: no purposes, shared tokens, the holder gets everything")
    func defaults() throws {
        let directory = try PolicyDirectory(["retail.yaml": validPolicy])
        let policy = try #require(directory.load().datasets["retail"])
        #expect(policy.purposes.isEmpty)
        #expect(policy.tokens == .shared)
        #expect(policy.pricing.holderSharePPM == 1_000_000)
    }

    @Test("holder_share is read from its decimal text, never through a float", arguments: [
        ("0.80", 800_000), ("0.8", 800_000), ("1", 1_000_000), ("0", 0), ("0.123456", 123_456), ("1.0", 1_000_000), ("0.000001", 1),
    ] as [(String, Int64)])
    func holderShare(text: String, ppm: Int64) throws {
        let yaml = "source: data.sqlite\npricing:\n  holder_share: \(text)\ntables:\n  t:\n    columns: { a: {} }\n"
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        let policy = try #require(directory.load().datasets["retail"])
        #expect(policy.pricing.holderSharePPM == ppm)
    }

    @Test("each purpose problem is reported at file:line:column", arguments: [
        ("share above one", "source: data.sqlite\npricing:\n  holder_share: 1.5\ntables:\n  t:\n    columns: { a: {} }\n", 3, 17, "holder_share must be a decimal from 0 to 1"),
        ("share with seven decimals", "source: data.sqlite\npricing:\n  holder_share: 0.1234567\ntables:\n  t:\n    columns: { a: {} }\n", 3, 17, "at most six decimals"),
        ("share as a percentage", "source: data.sqlite\npricing:\n  holder_share: 80%\ntables:\n  t:\n    columns: { a: {} }\n", 3, 17, "holder_share must be"),
        ("share negative", "source: data.sqlite\npricing:\n  holder_share: -0.2\ntables:\n  t:\n    columns: { a: {} }\n", 3, 17, "holder_share must be"),
        ("purpose name", "source: data.sqlite\npurposes:\n  Credit Risk: scoring\ntables:\n  t:\n    columns: { a: {} }\n", 3, 3, "is not a purpose name"),
        ("empty description", "source: data.sqlite\npurposes:\n  credit_risk: ''\ntables:\n  t:\n    columns: { a: {} }\n", 3, 16, "one non-empty line"),
        ("empty purposes", "source: data.sqlite\npurposes: {}\ntables:\n  t:\n    columns: { a: {} }\n", 2, 11, "purposes is empty"),
        ("duplicate in a list", "source: data.sqlite\npurposes: [a, a]\ntables:\n  t:\n    columns: { a: {} }\n", 2, 15, "listed twice"),
        ("misspelt tokens", "source: data.sqlite\ntokens: per_consumr\ntables:\n  t:\n    columns: { a: {} }\n", 2, 9, "did you mean per_consumer?"),
    ] as [(String, String, Int, Int, String)])
    func problems(kind: String, yaml: String, line: Int, column: Int, message: String) throws {
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        let result = directory.load()
        #expect(result.datasets["retail"] == nil, "\(kind): a broken policy must not load")
        let problem = try #require(result.diagnostics.first { $0.message.contains(message) }, "\(kind): \(result.diagnostics)")
        #expect(problem.location.line == line, "\(kind): \(problem)")
        #expect(problem.location.column == column, "\(kind): \(problem)")
    }

    @Test("warnings: per-consumer tokens with nothing to trace, a holder share without an owner")
    func warnings() throws {
        let yaml = "source: data.sqlite\ntokens: per_consumer\npricing:\n  holder_share: 0.5\ntables:\n  t:\n    columns: { a: {} }\n"
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        let result = directory.load()
        #expect(result.datasets["retail"] != nil, "warnings never stop a policy: \(result.diagnostics)")
        let tokens = try #require(result.warnings.first { $0.message.contains("nothing released is traceable") })
        #expect(tokens.location.line == 2 && tokens.location.column == 9)
        let share = try #require(result.warnings.first { $0.message.contains("holder_share without an owner") })
        #expect(share.location.line == 4 && share.location.column == 17)
        let traced = try PolicyDirectory(["retail.yaml": Self.purposeful.replacingOccurrences(of: "city: {}", with: "id: { role: join_key }")])
        #expect(!traced.load().warnings.contains { $0.message.contains("traceable") })
    }

    @Test("grant purposes: limits per purpose, a misspelt purpose warned at its position with the nearest name")
    func grantPurposes() throws {
        let directory = try PolicyDirectory([
            "retail.yaml": Self.purposeful,
            "consumers.yaml": """
                consumers:
                  a:
                    key_sha256: \(Self.goodKey)
                    grants:
                      retail:
                        max_rows: 100
                        purposes:
                          credit_risk: { max_rows: 5 }
                          public_helth_research: {}
                  b:
                    key_sha256: \(Self.goodKey)
                    grants:
                      retail: { purposes: [public_health_research] }
                  c:
                    key_sha256: \(Self.goodKey)
                    grants:
                      retail: { purposes: { "Bad Name": {} } }
                """,
        ])
        let result = directory.load()
        let a = try #require(result.consumers.consumers["a"]?.grants["retail"])
        #expect(a.purposes?["credit_risk"]?.maxRows == 5)
        #expect(a.purposes?["public_helth_research"] == PurposeLimits.none)
        #expect(result.consumers.consumers["b"]?.grants["retail"]?.purposes?.keys.sorted() == ["public_health_research"])
        let warning = try #require(result.warnings.first { $0.message.contains("public_helth_research") })
        #expect(warning.message.contains("did you mean public_health_research?"))
        #expect(warning.location.line == 9 && warning.location.column == 11, "\(warning)")
        let error = try #require(result.diagnostics.first { $0.message.contains("not a purpose name") })
        #expect(error.location.line == 17, "\(error)")
        #expect(result.consumers.consumers["c"]?.grants["retail"] == nil, "an invalid grant stays out")
    }

    static func policy(_ purposes: [String]) -> DatasetPolicy {
        DatasetPolicy(
            name: "retail", description: "", owner: "o", sourcePath: "", limits: .defaults, pricing: .free, tables: [], version: "v", file: "f",
            sourceLocation: SourceLocation(file: "f", line: 1, column: 1),
            purposes: purposes.map { PurposeDeclaration(name: $0, description: "d", location: SourceLocation(file: "f", line: 1, column: 1)) })
    }

    @Test("the purpose rule: each kind of refusal, and what is allowed", arguments: [
        // dataset purposes, grant purposes, requested, expected
        (["credit_risk", "health"], ["credit_risk"], nil, "missing"),
        (["credit_risk", "health"], ["credit_risk"], "", "missing"),
        (["credit_risk", "health"], ["credit_risk"], "fraud", "unknown"),
        (["credit_risk", "health"], ["credit_risk"], "Credit_Risk", "unknown"),
        (["credit_risk", "health"], ["credit_risk"], "credit_risk -- x", "unknown"),
        (["credit_risk", "health"], ["credit_risk"], "health", "not granted"),
        (["credit_risk", "health"], ["credit_risk", "marketing"], "marketing", "not allowed by dataset"),
        (["credit_risk", "health"], nil, "credit_risk", "not granted"),
        (["credit_risk", "health"], ["credit_risk"], "credit_risk", "ok credit_risk"),
        ([], nil, nil, "ok "),
        ([], nil, "anything", "ok anything"),
        ([], nil, "not a name!", "unknown"),
        ([], ["marketing"], nil, "missing"),
        ([], ["marketing"], "marketing", "ok marketing"),
        ([], ["marketing"], "sales", "unknown"),
    ] as [([String], [String]?, String?, String)])
    func rule(dataset: [String], granted: [String]?, requested: String?, expected: String) {
        let grant = Grant(purposes: granted.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, PurposeLimits.none) }) })
        let outcome = PurposeRule.decide(requested, dataset: Self.policy(dataset), grant: grant)
        let described: String = switch outcome {
        case .success(let decision): "ok \(decision.purpose)"
        case .failure(.missing): "missing"
        case .failure(.unknown): "unknown"
        case .failure(.notGranted): "not granted"
        case .failure(.notAllowedByDataset): "not allowed by dataset"
        }
        #expect(described == expected)
        if case .failure(let refusal) = outcome {
            let (_, hint) = PurposeRule.explain(refusal, dataset: Self.policy(dataset), grant: grant)
            let allowed = PurposeRule.allowed(dataset: Self.policy(dataset), grant: grant).names
            for name in allowed { #expect(hint.contains(name), "the hint names every allowed purpose: \(hint)") }
            #expect(!hint.contains("health") || allowed.contains("health"), "the hint names only purposes this consumer may use")
        }
    }
}
