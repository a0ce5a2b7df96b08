import Foundation
import Yams

/// A data holder's test cases for one dataset, from `Policies/tests/<dataset>.yaml`: queries with
/// the outcome the policy must give them, so that intent (not only syntax) is checked before a
/// policy goes live. `sandgate policy test` runs them.
///
/// ```yaml
/// consumer: analyst-a              # default consumer of every case
/// purpose: credit_risk             # default purpose (where the dataset lists purposes)
/// cases:
///   - name: phones keep 3 + 4 digits
///     query: SELECT phone FROM customers LIMIT 20
///     allow: { masked: [phone], values: { phone: '^1\d\d\*{4}\d{4}$' } }
///   - name: salary is hidden
///     query: SELECT salary FROM customers
///     refuse: no_such_column
/// ```
public struct PolicyTestFile: Sendable {
    /// The dataset the cases query: the file name without `.yaml`.
    public let dataset: String
    public let file: String
    public let cases: [PolicyTestCase]
}

/// One query and the outcome the policy must give it.
public struct PolicyTestCase: Sendable {
    public let name: String
    public let consumer: String
    public let query: String
    public let expectation: Expectation
    public let location: SourceLocation
    /// The purpose the query declares (the case's, else the file's); nil for none.
    public var purpose: String? = nil

    public enum Expectation: Sendable {
        case allow(Allowed)
        /// Refused (or failed) with this error code.
        case refuse(String)

        /// The expectation in words, for reports.
        public var summary: String {
            switch self {
            case .refuse(let code): return "refuse: \(code)"
            case .allow(let allowed):
                var parts: [String] = []
                if !allowed.masked.isEmpty { parts.append("masked \(allowed.masked.joined(separator: ", "))") }
                if !allowed.unmasked.isEmpty { parts.append("unmasked \(allowed.unmasked.joined(separator: ", "))") }
                for (column, pattern) in allowed.values { parts.append("\(column) matches \(pattern)") }
                if let size = allowed.minGroupSize { parts.append("every row ≥ \(size) individuals") }
                if let rows = allowed.maxRows { parts.append("at most \(rows) rows") }
                if let truncated = allowed.truncated { parts.append(truncated ? "truncated" : "not truncated") }
                return parts.isEmpty ? "allow" : "allow (" + parts.joined(separator: "; ") + ")"
            }
        }
    }

    /// What an allowed query's result must satisfy; every field is optional.
    public struct Allowed: Sendable {
        /// Output columns that must derive from a masked (or tokenised) column.
        public var masked: [String] = []
        /// Output columns that must come back as the source has them (no mask on their path).
        public var unmasked: [String] = []
        /// Every non-NULL value of the column must match the pattern (ICU regular expression).
        public var values: [(column: String, pattern: String)] = []
        /// Every released row must stand for at least this many distinct privacy units.
        public var minGroupSize: Int?
        /// At most this many rows may come back.
        public var maxRows: Int?
        /// The result must (or must not) be cut by a limit.
        public var truncated: Bool?

        public init() {}
    }
}

public enum PolicyTestLoader {
    /// The directory of test files inside a policies directory.
    public static let directoryName = "tests"

    static let fileKeys: Set<String> = ["consumer", "purpose", "cases"]
    static let caseKeys: Set<String> = ["name", "consumer", "purpose", "query", "allow", "refuse"]
    static let allowKeys: Set<String> = ["masked", "unmasked", "values", "min_group_size", "max_rows", "truncated"]

    /// Every `tests/*.yaml` of `policiesDirectory` (sorted), with the problems found reading them.
    public static func load(policiesDirectory: String) -> (files: [PolicyTestFile], diagnostics: [PolicyDiagnostic]) {
        let directory = (policiesDirectory as NSString).appendingPathComponent(directoryName)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
        var files: [PolicyTestFile] = []
        var diagnostics: [PolicyDiagnostic] = []
        for name in names {
            switch loadFile(path: (directory as NSString).appendingPathComponent(name)) {
            case .success(let file): files.append(file)
            case .failure(let errors): diagnostics += errors.diagnostics
            }
        }
        return (files, diagnostics)
    }

    /// Reads one test file; every problem is reported with its position.
    public static func loadFile(path: String) -> Result<PolicyTestFile, PolicyErrors> {
        let root: Node
        switch PolicyLoader.document(path: path) {
        case .success(let loaded): root = loaded.0
        case .failure(let errors): return .failure(errors)
        }
        var reader = YAMLReader(file: path)
        let dataset = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let top = reader.fields(root, what: "the test file", allowed: fileKeys) ?? [:]
        let defaultConsumer = top["consumer"].flatMap { reader.string($0.value, what: "consumer") }
        let defaultPurpose = top["purpose"].flatMap { reader.string($0.value, what: "purpose") }
        var cases: [PolicyTestCase] = []
        if let node = top["cases"]?.value {
            if case .sequence(let sequence) = node {
                for item in sequence {
                    if let testCase = readCase(item, defaultConsumer: defaultConsumer, defaultPurpose: defaultPurpose, reader: &reader) { cases.append(testCase) }
                }
            } else {
                reader.report(node, "cases must be a list (each item starts with '- name: …')")
            }
        } else {
            reader.report(root, "missing key 'cases'")
        }
        var seen: Set<String> = []
        for testCase in cases where !seen.insert(testCase.name).inserted {
            reader.report(at: testCase.location, "two cases are named '\(testCase.name)'; names identify failing cases")
        }
        guard reader.diagnostics.isEmpty else { return .failure(PolicyErrors(reader.diagnostics)) }
        return .success(PolicyTestFile(dataset: dataset, file: path, cases: cases))
    }

    static func readCase(_ node: Node, defaultConsumer: String?, defaultPurpose: String? = nil, reader: inout YAMLReader) -> PolicyTestCase? {
        let before = reader.diagnostics.count
        guard let fields = reader.fields(node, what: "a case", allowed: caseKeys) else { return nil }
        let name = fields["name"].flatMap { reader.string($0.value, what: "name") }
        if fields["name"] == nil { reader.report(node, "a case needs 'name'") }
        let query = fields["query"].flatMap { reader.string($0.value, what: "query") }
        if fields["query"] == nil { reader.report(node, "a case needs 'query'") }
        let consumer = fields["consumer"].flatMap { reader.string($0.value, what: "consumer") } ?? defaultConsumer
        if consumer == nil { reader.report(node, "a case needs 'consumer' (or give one for the whole file)") }
        var expectation: PolicyTestCase.Expectation?
        switch (fields["allow"], fields["refuse"]) {
        case (let allow?, nil):
            expectation = readAllowed(allow.value, reader: &reader).map { .allow($0) }
        case (nil, let refuse?):
            expectation = reader.string(refuse.value, what: "refuse").map { .refuse($0) }
        case (nil, nil):
            reader.report(node, "a case needs 'allow: {…}' or 'refuse: <error code>'")
        case (_?, _?):
            reader.report(node, "a case has either 'allow' or 'refuse', not both")
        }
        guard reader.diagnostics.count == before, let name, let query, let consumer, let expectation else { return nil }
        let purpose = fields["purpose"].flatMap { reader.string($0.value, what: "purpose") } ?? defaultPurpose
        return PolicyTestCase(name: name, consumer: consumer, query: query, expectation: expectation, location: reader.location(node), purpose: purpose)
    }

    static func readAllowed(_ node: Node, reader: inout YAMLReader) -> PolicyTestCase.Allowed? {
        guard let fields = reader.fields(node, what: "allow", allowed: allowKeys, whenEmpty: "write `allow: {}` to expect only that the query runs")
        else { return nil }
        var allowed = PolicyTestCase.Allowed()
        func names(_ key: String) -> [String] {
            guard let node = fields[key]?.value else { return [] }
            guard case .sequence(let sequence) = node else {
                reader.report(node, "\(key) must be a list of output column names such as [name, phone]")
                return []
            }
            return sequence.compactMap { reader.string($0, what: "a column name") }
        }
        allowed.masked = names("masked")
        allowed.unmasked = names("unmasked")
        if let node = fields["values"]?.value, let entries = reader.entries(node, what: "values", whenEmpty: "map output columns to patterns") {
            for entry in entries {
                guard let pattern = reader.string(entry.value, what: "the pattern for \(entry.key)") else { continue }
                if (try? NSRegularExpression(pattern: pattern)) == nil {
                    reader.report(entry.value, "'\(pattern)' is not a valid regular expression")
                } else {
                    allowed.values.append((entry.key, pattern))
                }
            }
        }
        allowed.minGroupSize = fields["min_group_size"].flatMap { reader.integer($0.value, what: "min_group_size", range: 1...1_000_000) }
        allowed.maxRows = fields["max_rows"].flatMap { reader.integer($0.value, what: "max_rows", range: 0...10_000_000) }
        if let node = fields["truncated"]?.value {
            let text = reader.string(node, what: "truncated")
            switch text {
            case "true": allowed.truncated = true
            case "false": allowed.truncated = false
            default: reader.report(node, "truncated must be true or false")
            }
        }
        return allowed
    }
}
