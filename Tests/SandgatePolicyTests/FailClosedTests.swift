import Foundation
@testable import SandgatePolicy
import Testing

/// The package root, for the shipped `Policies/`.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let keyHash = String(repeating: "ab", count: 32)

/// issue 12 item 1: empty values where a mapping is expected are errors, never `{}`.
@Suite struct EmptyValueTests {
    @Test("an empty value where a mapping is expected is an error at file:line:column", arguments: [
        ("column", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: {}\n      phone:\n", 6, 13, "write {} to publish the column"),
        ("column null", "source: data.sqlite\ntables:\n  t:\n    columns:\n      phone: ~\n", 5, 14, "column 't.phone' is empty"),
        ("columns", "source: data.sqlite\ntables:\n  t:\n    columns:\n", 4, 13, "columns of table 't' is empty"),
        ("table", "source: data.sqlite\ntables:\n  t:\n", 3, 5, "table 't' is empty"),
        ("tables", "source: data.sqlite\ntables:\n", 2, 8, "tables is empty"),
        ("limits", "source: data.sqlite\nlimits:\ntables:\n  t:\n    columns: { a: {} }\n", 2, 8, "limits is empty"),
        ("pricing", "source: data.sqlite\npricing:\ntables:\n  t:\n    columns: { a: {} }\n", 2, 9, "pricing is empty"),
        ("mask", "source: data.sqlite\ntables:\n  t:\n    columns:\n      a: { mask: }\n", 5, 18, "mask must be a string"),
    ])
    func emptyValues(kind: String, yaml: String, line: Int, column: Int, message: String) throws {
        let directory = try PolicyDirectory(["retail.yaml": yaml])
        let result = directory.load()
        #expect(result.datasets["retail"] == nil, "\(kind): must not load")
        let problem = try #require(result.diagnostics.first { $0.message.contains(message) }, "\(kind): \(result.diagnostics)")
        #expect(problem.location.line == line && problem.location.column == column, "\(kind): \(problem)")
    }

    @Test("an empty consumer, grants mapping or grant is an error and grants nothing", arguments: [
        ("consumers:\n  a:\n", "consumer 'a' is empty"),
        ("consumers:\n  a:\n    key_sha256: \(keyHash)\n    grants:\n", "grants of consumer 'a' is empty"),
        ("consumers:\n  a:\n    key_sha256: \(keyHash)\n    grants:\n      retail:\n", "grant is empty"),
        ("consumers:\n", "consumers is empty"),
    ])
    func emptyConsumerParts(yaml: String, message: String) throws {
        let directory = try PolicyDirectory(["retail.yaml": validPolicy, "consumers.yaml": yaml])
        let result = directory.load()
        #expect(result.diagnostics.contains { $0.message.contains(message) }, "\(result.diagnostics)")
        #expect(result.consumers.consumers["a"]?.grants["retail"] == nil)
    }
}

/// issue 12 item 1: every byte-prefix of the shipped files loads with at least the protection
/// of the whole file, or not at all.
///
/// "At least the protection" means, for a dataset policy: every table of the prefix is in the
/// full file with the same access (an aggregate table never turns rows), the same row filter,
/// the same privacy unit, a `min_group_size` at least as large and the same `small_groups`;
/// every column the prefix shows is shown by the full file with the same role and the same mask
/// (preset, or compiled pattern and replacement, and `on_no_match`), measures allow no
/// aggregate the full file does not; every limit is at most the full file's; every price is at
/// least the full file's, in the same currency. For consumers: every consumer of the prefix is
/// in the full file with the same key hash and role; every grant is in the full file, and each of
/// its limits and quotas is set and at most the full file's wherever the full file sets it.
@Suite struct PrefixReplayTests {
    static func maskSignature(_ mask: Mask?) -> String {
        guard let mask else { return "none" }
        var text = "\(mask.name)/\(mask.onNoMatch.rawValue)"
        if case .regex(let program) = mask.kind {
            text += "/\(program.captureCount)/\(program.literals)/\(program.template)"
        }
        return text
    }

    static func weaker(_ prefix: DatasetPolicy, than full: DatasetPolicy) -> String? {
        for table in prefix.tables {
            guard let whole = full.table(named: table.name) else { return "table \(table.name) is not in the full file" }
            if table.access != whole.access { return "table \(table.name) is \(table.access) instead of \(whole.access)" }
            if table.rowFilter != whole.rowFilter { return "table \(table.name) has row filter \(table.rowFilter ?? "none")" }
            if table.privacyUnit != whole.privacyUnit { return "table \(table.name) has another privacy unit" }
            if (table.minGroupSize ?? 0) < (whole.minGroupSize ?? 0) { return "table \(table.name) has a smaller threshold" }
            if table.smallGroups != whole.smallGroups { return "table \(table.name) treats small groups otherwise" }
            for column in table.visibleColumns {
                guard let original = whole.column(named: column.name), original.role != .hidden else { return "column \(column.name) is visible" }
                if column.role != original.role { return "column \(column.name) has role \(column.role)" }
                if maskSignature(column.mask) != maskSignature(original.mask) { return "column \(column.name) has another mask" }
                if !Set(column.aggregates).isSubset(of: original.aggregates) { return "column \(column.name) allows more aggregates" }
            }
        }
        let (p, f) = (prefix.limits, full.limits)
        if p.maxRows > f.maxRows || p.timeoutMilliseconds > f.timeoutMilliseconds || p.maxVMSteps > f.maxVMSteps || p.maxResultBytes > f.maxResultBytes {
            return "larger limits \(p)"
        }
        let (a, b) = (prefix.pricing, full.pricing)
        if a.currency != b.currency || a.perQuery < b.perQuery || a.perRow < b.perRow || a.perMillionVMSteps < b.perMillionVMSteps {
            return "lower prices \(a)"
        }
        return nil
    }

    static func weaker(_ prefix: ConsumerDirectory, than full: ConsumerDirectory) -> String? {
        for consumer in prefix.consumers.values {
            guard let whole = full.consumers[consumer.name] else { return "consumer \(consumer.name) is not in the full file" }
            if consumer.keySHA256 != whole.keySHA256 || consumer.role != whole.role { return "consumer \(consumer.name) differs" }
            for (dataset, grant) in consumer.grants {
                guard let original = whole.grants[dataset] else { return "\(consumer.name) holds a grant for \(dataset)" }
                func looser<T: Comparable>(_ a: T?, _ b: T?) -> Bool { b.map { bound in a.map { $0 > bound } ?? true } ?? false }
                if looser(grant.maxRows, original.maxRows) || looser(grant.timeoutMilliseconds, original.timeoutMilliseconds)
                    || looser(grant.maxVMSteps, original.maxVMSteps) || looser(grant.maxResultBytes, original.maxResultBytes)
                    || looser(grant.dailyQueries, original.dailyQueries) || looser(grant.dailyRows, original.dailyRows) {
                    return "\(consumer.name) has a looser grant for \(dataset): \(grant)"
                }
            }
        }
        return nil
    }

    /// A scratch tree shaped like the repository, so `source: ../Fixtures/retail.sqlite` resolves.
    static func scratch() throws -> String {
        let root = NSTemporaryDirectory() + "sandgate-prefix-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/Policies", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/Fixtures", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/Fixtures/retail.sqlite", contents: Data())
        return root
    }

    @Test("no byte-prefix of Policies/retail.yaml loads with less protection than the whole file")
    func retailPrefixes() throws {
        let bytes = try Data(contentsOf: packageRoot.appendingPathComponent("Policies/retail.yaml"))
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/Policies/retail.yaml"
        try bytes.write(to: URL(fileURLWithPath: path))
        let full = try PolicyLoader.loadDataset(path: path).get()
        var loaded = 0
        for length in 0..<bytes.count {
            try bytes.prefix(length).write(to: URL(fileURLWithPath: path))
            guard case .success(let policy) = PolicyLoader.loadDataset(path: path) else { continue }
            loaded += 1
            #expect(Self.weaker(policy, than: full) == nil, "prefix of \(length) bytes: \(Self.weaker(policy, than: full) ?? "")")
        }
        print("retail.yaml: \(bytes.count) prefixes, \(loaded) load, none with less protection")
    }

    @Test("no byte-prefix of Policies/consumers.yaml grants more than the whole file")
    func consumerPrefixes() throws {
        let bytes = try Data(contentsOf: packageRoot.appendingPathComponent("Policies/consumers.yaml"))
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/Policies/consumers.yaml"
        try bytes.write(to: URL(fileURLWithPath: path))
        let full = PolicyLoader.loadConsumers(path: path, knownDatasets: ["retail"])
        #expect(full.isValid)
        for length in 0..<bytes.count {
            try bytes.prefix(length).write(to: URL(fileURLWithPath: path))
            let file = PolicyLoader.loadConsumers(path: path, knownDatasets: ["retail"])
            // As first loaded, and as a reload over the full file (which is what a server sees
            // while an editor rewrites the file in place).
            for directory in [file.merged(over: nil), file.merged(over: full.directory)] {
                #expect(Self.weaker(directory, than: full.directory) == nil, "prefix of \(length) bytes: \(Self.weaker(directory, than: full.directory) ?? "")")
            }
        }
    }
}

/// issue 12 item 2 and issue 7 item 8: names, roles and warnings.
@Suite struct NameAndSemanticsTests {
    @Test("consumer names are one ASCII spelling", arguments: [
        ("analyst-a", true), ("a", true), ("0.team_x-1", true), (String(repeating: "a", count: 64), true),
        (String(repeating: "a", count: 65), false), ("", false), ("-a", false), ("_a", false), ("Kate", false),
        ("\u{212A}ate", false), ("ａｎａｌｙｓｔ", false), ("analyst\u{301}", false), ("an alyst", false), ("analyst/a", false),
    ])
    func names(name: String, valid: Bool) {
        #expect(Name.isValid(name) == valid)
    }

    @Test("look-alike consumer names in consumers.yaml are errors", arguments: [
        "\u{212A}ate", "Kate", "ｋａｔｅ", "ka\u{301}te",
    ])
    func lookAlikeKeys(name: String) throws {
        let yaml = "consumers:\n  kate:\n    key_sha256: \(keyHash)\n    grants: {}\n  \"\(name)\":\n    key_sha256: \(keyHash)\n    grants:\n      retail: {}\n"
        let directory = try PolicyDirectory(["retail.yaml": validPolicy, "consumers.yaml": yaml])
        let result = directory.load()
        #expect(result.diagnostics.contains { $0.message.contains("is not a consumer name") && $0.location.line == 5 }, "\(result.diagnostics)")
        #expect(result.consumers.consumers.keys.sorted() == ["kate"])
        #expect(result.consumers.consumers["kate"]?.grants.isEmpty == true)
    }

    @Test("dataset file names follow the same rule", arguments: ["Retail", "re tail", "ret\u{212A}"])
    func datasetFileNames(name: String) throws {
        let directory = try PolicyDirectory([name + ".yaml": validPolicy])
        let result = directory.load()
        #expect(result.datasets.isEmpty)
        #expect(result.diagnostics.contains { $0.message.contains("is not a dataset name") })
    }

    @Test("measure or dimension on a rows table is an error that says to use access: aggregate", arguments: ["measure", "dimension"])
    func rowsTableRoles(role: String) throws {
        let yaml = "source: data.sqlite\ntables:\n  t:\n    columns:\n      salary: { role: \(role) }\n"
        let result = try PolicyDirectory(["retail.yaml": yaml]).load()
        let problem = try #require(result.diagnostics.first { $0.message.contains("use access: aggregate") })
        #expect(problem.location.line == 5 && problem.location.column == 23)
    }

    @Test("min/max on a measure and a threshold below 5 are warnings, not errors")
    func warnings() throws {
        let yaml = """
            source: data.sqlite
            tables:
              t:
                access: aggregate
                privacy_unit: u
                min_group_size: 3
                columns:
                  u: { role: join_key }
                  amount: { role: measure, aggregates: [sum, min, max] }
            """
        let result = try PolicyDirectory(["retail.yaml": yaml]).load()
        #expect(result.diagnostics.isEmpty)
        #expect(result.datasets["retail"] != nil)
        // min, max, the small threshold, and the missing closing '...' line.
        #expect(result.warnings.count == 4)
        #expect(result.warnings.contains { $0.message.contains("does not end with the line '...'") })
        #expect(result.warnings.contains { $0.message.contains("min on measure 't.amount' releases one individual's value") && $0.location.line == 9 })
        #expect(result.warnings.contains { $0.message.contains("below 5") && $0.location.line == 6 })
    }

    @Test("role: operator is read from consumers.yaml")
    func operatorRole() throws {
        let yaml = "consumers:\n  ops:\n    key_sha256: \(keyHash)\n    role: operator\n    grants: {}\n  a:\n    key_sha256: \(keyHash)\n    grants: {}\n"
        let result = try PolicyDirectory(["retail.yaml": validPolicy, "consumers.yaml": yaml]).load()
        #expect(result.consumers.consumers["ops"]?.role == .operator)
        #expect(result.consumers.consumers["a"]?.role == .consumer)
    }
}

/// issue 12 item 7: removals and narrowed grants take effect while another part is invalid.
@Suite struct PartialReloadTests {
    static let previous = ConsumerDirectory(consumers: [
        "a": Consumer(name: "a", keySHA256: keyHash, grants: ["retail": Grant(maxRows: 100), "other": Grant()]),
        "b": Consumer(name: "b", keySHA256: keyHash, grants: ["retail": Grant(maxRows: 100)]),
        "c": Consumer(name: "c", keySHA256: keyHash, grants: ["retail": Grant(maxRows: 100)]),
    ], version: "old")

    static func merge(_ yaml: String) throws -> ConsumerDirectory {
        let directory = try PolicyDirectory(["retail.yaml": validPolicy, "other.yaml": validPolicy, "consumers.yaml": yaml])
        let file = PolicyLoader.loadConsumers(path: directory.path + "/consumers.yaml", knownDatasets: ["retail", "other"])
        #expect(!file.isValid)
        return file.merged(over: previous)
    }

    @Test("revoking a consumer takes effect while another consumer's entry is invalid")
    func revocation() throws {
        // b is removed; c's key is broken (keeps its previous version); a is unchanged.
        let merged = try Self.merge("consumers:\n  a:\n    key_sha256: \(keyHash)\n    grants:\n      retail: { max_rows: 100 }\n      other: {}\n  c:\n    key_sha256: nope\n    grants: {}\n")
        #expect(merged.consumers["b"] == nil)
        #expect(merged.consumers["c"]?.grants["retail"]?.maxRows == 100)
        #expect(merged.consumers["a"]?.grants.count == 2)
    }

    @Test("a narrowed or removed grant takes effect; an invalid grant keeps its previous version; a new invalid one stays out")
    func narrowing() throws {
        let merged = try Self.merge("""
            consumers:
              a:
                key_sha256: \(keyHash)
                grants:
                  retail: { max_rows: 5 }
              b:
                key_sha256: \(keyHash)
                grants:
                  retail: { max_rows: many }
              c:
                key_sha256: \(keyHash)
                grants:
                  retail: { max_rows: 100 }
                  other: { daily_rows: -1 }
              d:
                key_sha256: nope
                grants: {}
            """)
        #expect(merged.consumers["a"]?.grants["retail"]?.maxRows == 5)
        #expect(merged.consumers["a"]?.grants["other"] == nil)
        #expect(merged.consumers["b"]?.grants["retail"]?.maxRows == 100)
        #expect(merged.consumers["c"]?.grants["other"] == nil)
        #expect(merged.consumers["d"] == nil)
    }

    @Test("a file YAML cannot parse still revokes the consumers it no longer names (fail closed); the rest keep their previous version")
    func unreadable() throws {
        let merged = try Self.merge("consumers:\n  a: [\n")
        #expect(Set(merged.consumers.keys) == ["a"])
        #expect(merged.consumers["a"]?.grants["retail"]?.maxRows != nil)
        // When the names cannot be told (flow style), nothing is known: the previous directory stays.
        #expect(try Self.merge("consumers: { a: [\n").consumers.count == 3)
    }
}

/// The closing `...` line: only a marker at the start of the last line counts (red team round 2:
/// an indented `  ...` inside a block scalar was taken for it).
@Suite struct ClosingLineTests {
    @Test("what counts as a closed file", arguments: [
        ("a: 1\n...\n", true), ("a: 1\n...   # end of file\n", true), ("a: 1\r\n...\r\n", true), ("a: 1\n...\n\n  \n", true),
        ("a: 1\n  ...\n", false), ("d: |\n  text\n  ...\n", false), ("a: 1\n....\n", false), ("a: 1\n... x\n", false),
        ("a: 1\n# ...\n", false), ("a: 1\n...\nb: 2\n", false), ("", false),
    ])
    func sealed(text: String, expected: Bool) {
        #expect(PolicyLoader.isSealed(text) == expected, "\(text.debugDescription)")
    }
}
