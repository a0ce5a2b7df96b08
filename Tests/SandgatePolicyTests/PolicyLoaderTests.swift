import Foundation
import SandgatePolicy
import Testing

/// A directory with one dataset file (and a source file that exists) for loader tests.
final class PolicyDirectory {
    let path: String

    init(_ files: [String: String]) throws {
        path = NSTemporaryDirectory() + "sandgate-policy-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: path + "/data.sqlite", contents: Data())
        for (name, text) in files { try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func load() -> PolicyLoadResult { PolicyLoader.load(directory: path) }
}

let validPolicy = """
    source: data.sqlite
    limits:
      max_rows: 100
    tables:
      customers:
        columns:
          name: { mask: { pattern: '^(.).*$', replace: '$1**' } }
          city: {}
    """

@Suite struct PolicyLoaderTests {
    @Test("a valid policy loads into typed values")
    func validPolicyLoads() throws {
        let directory = try PolicyDirectory(["retail.yaml": validPolicy])
        let result = directory.load()
        #expect(result.diagnostics.isEmpty)
        let policy = try #require(result.datasets["retail"])
        #expect(policy.limits.maxRows == 100)
        #expect(policy.limits.timeoutMilliseconds == DatasetLimits.defaults.timeoutMilliseconds)
        #expect(policy.tables.map(\.name) == ["customers"])
        #expect(policy.tables[0].columns.map(\.name) == ["name", "city"])
        #expect(policy.tables[0].columns[0].mask?.name == "regex")
        #expect(policy.version.count == 64)
    }

    /// Each kind of problem with the exact line and column it is reported at.
    @Test("each problem is reported at file:line:column", arguments: [
        ("unknown key", "source: data.sqlite\nsourcez: 1\ntables:\n  t:\n    columns: { a: {} }\n", 2, 1, "unknown key 'sourcez'"),
        ("wrong type", "source: data.sqlite\nlimits:\n  max_rows: many\ntables:\n  t:\n    columns: { a: {} }\n", 3, 13, "max_rows must be an integer"),
        ("quoted number", "source: data.sqlite\nlimits:\n  max_rows: \"10\"\ntables:\n  t:\n    columns: { a: {} }\n", 3, 13, "max_rows must be an integer"),
        ("limit out of range", "source: data.sqlite\nlimits:\n  max_rows: 0\ntables:\n  t:\n    columns: { a: {} }\n", 3, 13, "between 1 and"),
        ("timeout out of range", "source: data.sqlite\nlimits:\n  timeout_ms: 9999999\ntables:\n  t:\n    columns: { a: {} }\n", 3, 15, "between 1 and"),
        ("missing source file", "source: nowhere.sqlite\ntables:\n  t:\n    columns: { a: {} }\n", 1, 9, "does not exist"),
        ("missing source key", "tables:\n  t:\n    columns: { a: {} }\n", 1, 1, "missing key 'source'"),
        ("invalid pattern", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: { pattern: '^(abc$', replace: 'x' } }\n", 5, 36, "missing closing parenthesis"),
        ("replacement with a missing group", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: { pattern: '^(.)', replace: 'x$2' } }\n", 5, 48, "group 2"),
        ("replacement with a missing name", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: { pattern: '^(.)', replace: '${who}' } }\n", 5, 47, "'who'"),
        ("unknown preset", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: phone_us }\n", 5, 18, "unknown mask preset"),
        ("unknown role", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { role: secret }\n", 5, 18, "role must be one of"),
        ("unknown on_no_match", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: { pattern: 'x', replace: 'y', on_no_match: pass } }\n", 5, 61, "on_no_match must be one of"),
        ("bad flags", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: { pattern: 'x', replace: 'y', flags: ig } }\n", 5, 56, "unknown flag 'g'"),
        ("aggregate without privacy_unit", "source: data.sqlite\ntables:\n  t:\n    access: aggregate\n    min_group_size: 5\n    columns: { a: {} }\n", 3, 3, "needs 'privacy_unit'"),
        ("threshold on a rows table", "source: data.sqlite\ntables:\n  t:\n    min_group_size: 5\n    columns: { a: {} }\n", 4, 5, "applies only to tables with access: aggregate"),
        ("min_group_size too small", "source: data.sqlite\ntables:\n  t:\n    access: aggregate\n    privacy_unit: a\n    min_group_size: 1\n    columns: { a: {} }\n", 6, 21, "between 2 and"),
        ("mask on a join key", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { role: join_key, mask: redact }\n", 5, 28, "takes no mask"),
        ("row filter with a statement break", "source: data.sqlite\ntables:\n  t:\n    row_filter: \"1); DROP TABLE t; --\"\n    columns: { a: {} }\n", 4, 19, "unbalanced ')'"),
        ("row filter cut short", "source: data.sqlite\ntables:\n  t:\n    row_filter: \"a = 1 AND (b = 2\"\n    columns: { a: {} }\n", 4, 28, "never closed"),
        ("misspelt key", "source: data.sqlite\ntables:\n  t:\n    colums: { a: {} }\n", 4, 5, "did you mean 'columns'?"),
        ("misspelt preset", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: phone_cm }\n", 5, 18, "did you mean phone_cn?"),
        ("YAML syntax error", "source: data.sqlite\ntables: [\n", 3, 1, "YAML syntax error"),
        ("duplicate key", "source: data.sqlite\nsource: data.sqlite\ntables:\n  t:\n    columns: { a: {} }\n", 1, 1, "duplicate key"),
        ("dataset name mismatch", "dataset: other\nsource: data.sqlite\ntables:\n  t:\n    columns: { a: {} }\n", 1, 10, "must match the file name"),
        ("tables missing columns", "source: data.sqlite\ntables:\n  t: {}\n", 3, 3, "needs 'columns'"),
        ("bad currency", "source: data.sqlite\npricing:\n  currency: yuan\ntables:\n  t:\n    columns: { a: {} }\n", 3, 13, "three-letter"),
        ("unknown aggregate", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { role: measure, aggregates: [sum, median] }\n", 5, 45, "unknown aggregate 'median'"),
    ])
    func problemPositions(kind: String, yaml: String, line: Int, column: Int, message: String) throws {
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        let result = directory.load()
        #expect(result.datasets["retail"] == nil, "\(kind): a broken policy must not load")
        let problem = try #require(result.diagnostics.first { $0.message.contains(message) }, "\(kind): \(result.diagnostics)")
        #expect(problem.location.line == line, "\(kind): \(problem)")
        #expect(problem.location.column == column, "\(kind): \(problem)")
        #expect(problem.location.file.hasSuffix("retail.yaml"))
        #expect(problem.description.hasPrefix(problem.location.file + ":\(line):\(column): "))
    }

    @Test("every problem of a file is reported, not just the first")
    func reportsEveryProblem() throws {
        let yaml = "source: data.sqlite\nbogus: 1\nlimits:\n  max_rows: -5\ntables:\n  t:\n    columns:\n      a: { mask: nope }\n"
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        #expect(directory.load().diagnostics.count == 3)
    }

    @Test("consumers.yaml: hashes, grants and unknown datasets")
    func consumers() throws {
        let good = String(repeating: "ab", count: 32)
        let directory = try PolicyDirectory([
            "retail.yaml": validPolicy,
            "consumers.yaml": """
                consumers:
                  a:
                    key_sha256: \(good)
                    grants:
                      retail: { max_rows: 10, daily_rows: 100 }
                  b:
                    key_sha256: xyz
                    grants:
                      ghost: {}
                """,
        ])
        let result = directory.load()
        #expect(result.diagnostics.contains { $0.message.contains("64 hex digits") && $0.location.line == 7 })
        #expect(result.warnings.contains { $0.message.contains("dataset 'ghost', which has no policy file") && $0.location.line == 9 })
        #expect(!result.diagnostics.contains { $0.message.contains("ghost") }, "a grant for a missing dataset is a warning")
        #expect(!result.consumersValid)
        #expect(result.consumers.consumers.keys.sorted() == ["a"], "the invalid entry is left out; the valid one is in force")
    }

    @Test("limits lowered by a grant never rise")
    func grantsLower() {
        let limits = DatasetLimits.defaults.lowered(by: Grant(maxRows: 50_000, timeoutMilliseconds: 10))
        #expect(limits.maxRows == DatasetLimits.defaults.maxRows)
        #expect(limits.timeoutMilliseconds == 10)
    }

    @Test("pricing is integer micro-units and saturates instead of overflowing")
    func pricing() {
        let pricing = Pricing(currency: "CNY", perQuery: 1000, perRow: 20, perMillionVMSteps: 500)
        #expect(pricing.cost(rows: 8, vmSteps: 0) == 1160)
        #expect(pricing.cost(rows: 8, vmSteps: 1) == 1660)
        #expect(pricing.cost(rows: 8, vmSteps: 2_000_000) == 2160)
        #expect(Pricing(currency: "CNY", perQuery: 1, perRow: .max, perMillionVMSteps: 0).cost(rows: 2, vmSteps: 0) == .max)
        // Bytes pro rata per MiB, rounded up; a 50 MB answer costs what it carries.
        let bytes = Pricing(currency: "CNY", perQuery: 1000, perRow: 20, perMillionVMSteps: 500, perMiB: 20_000)
        #expect(bytes.cost(rows: 0, vmSteps: 0, bytes: 1) == 1001)
        #expect(bytes.cost(rows: 0, vmSteps: 0, bytes: 1 << 20) == 21_000)
        #expect(bytes.cost(rows: 1, vmSteps: 1, bytes: 50_000_000) == 1000 + 20 + 500 + 953_675)
        #expect(Pricing(currency: "CNY", perQuery: 0, perRow: 0, perMillionVMSteps: 0, perMiB: .max).cost(rows: 0, vmSteps: 0, bytes: 3) == .max)
    }
}
