import Foundation
@testable import SandgateCore
import SandgateSQL
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Attack and fuzz material written by others (`../shared/corpora/injection/`), thrown at the
/// parser, the checker and the whole gateway: nothing may crash, hang or leak.
@Suite struct CorpusAttackTests {
    static let corpus = CLIPaths.packageRoot.deletingLastPathComponent().appendingPathComponent("shared/corpora/injection")

    static func requireCorpus(_ path: URL) -> Bool {
        Corpora.available(path.path, what: "the injection corpus")
    }

    /// Every payload line of PayloadsAllTheThings (snippets and Intruder lists).
    static func payloads() throws -> [String] {
        var payloads: [String] = []
        let snippets = corpus.appendingPathComponent("payloadsallthethings/sqlite_injection_snippets.json")
        if let data = FileManager.default.contents(atPath: snippets.path),
           let entries = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] {
            payloads += entries.compactMap { $0["sql"] as? String }
        }
        let intruder = corpus.appendingPathComponent("payloadsallthethings/SQL Injection/Intruder")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: intruder.path)) ?? [] {
            guard let text = try? String(contentsOfFile: intruder.appendingPathComponent(name).path, encoding: .utf8) else { continue }
            payloads += text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        }
        return payloads
    }

    @Test("injection payloads, as whole queries and spliced into one, are refused or answered masked")
    func injectionPayloads() throws {
        guard Self.requireCorpus(Self.corpus) else { return }
        let payloads = try Self.payloads()
        #expect(payloads.count > 1000)
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let secrets = TestData.shared.rawPhones + TestData.shared.rawIDCards + TestData.shared.rawEmails
        var answered = 0, refused = 0
        for payload in payloads {
            for sql in [payload, "SELECT name, phone FROM customers WHERE city = '\(payload)'", "SELECT name, phone FROM customers WHERE city = 'x' \(payload)"] {
                let response = gateway.query(sql)
                guard let result = response.result else {
                    refused += 1
                    #expect(response.error?.code != .internal, "\(sql): \(String(describing: response.error))")
                    continue
                }
                answered += 1
                for case .text(let value) in result.rows.flatMap({ $0 }) {
                    #expect(!secrets.contains { value.contains($0) }, "\(sql) leaked a raw value")
                    #expect(!value.contains("CREATE TABLE"), "\(sql) leaked the schema")
                }
            }
        }
        print("injection corpus: \(payloads.count) payloads, \(answered) answers (masked), \(refused) refusals")
        #expect(!FileManager.default.fileExists(atPath: workspace.root + "/x.db"))
    }

    /// SQLite's own fuzzed SQL scripts, split into statements: every statement goes through the
    /// parser; every SELECT that parses goes through the checker against the demo policy.
    @Test("SQLite's fuzzed SQL never crashes the parser or the checker")
    func sqliteFuzzData() throws {
        let databases = ["fuzzdata4.db", "fuzzdata6.db"].map { Self.corpus.appendingPathComponent("sqlite-upstream/test/\($0)") }
        guard databases.allSatisfy(Self.requireCorpus) else { return }
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let policy = try #require(gateway.runtime("retail")?.policy)
        var statements = 0, parsed = 0, checked = 0
        for database in databases {
            let db = try Connection(path: database.path, mode: .readOnly)
            for row in try db.rows("SELECT sqltext FROM xsql") {
                let script: String
                switch row.first {
                case .text(let text)?: script = text
                case .blob(let bytes)?: script = String(decoding: bytes, as: UTF8.self)
                default: continue
                }
                for statement in Self.statements(of: script) {
                    statements += 1
                    guard let select = try? Parser.parseSelect(statement) else { continue }
                    parsed += 1
                    // Rendering is a fixed point for everything the parser accepts. (The rendering
                    // parenthesises every operation, so it may nest deeper than the text it came from.)
                    let rendered = Renderer.render(select)
                    let again = Result { () throws(SQLSyntaxError) -> String in Renderer.render(try Parser.parseSelect(rendered, maximumDepth: 1000)) }
                    #expect((try? again.get()) == rendered, "\(statement)\n→ \(rendered)\n→ \(again)")
                    var checker = Checker(policy: policy, facts: SnapshotFacts())
                    if (try? checker.check(select)) != nil { checked += 1 }
                }
            }
        }
        print("fuzzdata: \(statements) statements, \(parsed) parsed as SELECT, \(checked) passed the checker")
        #expect(statements > 10_000)
    }

    /// Splits a script at top-level `;` using the lexer's token offsets (scripts that do not even
    /// tokenize are passed whole, so the parser sees them too).
    static func statements(of script: String) -> [String] {
        guard let tokens = try? Lexer.tokenize(script) else { return [script] }
        let bytes = Array(script.utf8)
        var result: [String] = []
        var start = 0
        for token in tokens where token.isSymbol(";") {
            result.append(String(decoding: bytes[start..<token.position.offset], as: UTF8.self))
            start = token.position.offset + 1
        }
        if start < bytes.count { result.append(String(decoding: bytes[start...], as: UTF8.self)) }
        return result.filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    }
}
