import Crypto
import Foundation
import Yams

/// Everything loaded from a policies directory: the datasets that validated, the consumer
/// directory, and every problem found (a dataset with any problem is left out: fail closed).
public struct PolicyLoadResult: Sendable {
    public var datasets: [String: DatasetPolicy]
    public var consumers: ConsumerDirectory
    public var diagnostics: [PolicyDiagnostic]
    /// Every dataset file present, valid or not (a reload keeps the last valid version of those).
    public var datasetFiles: Set<String> = []
    /// False when `consumers.yaml` exists but does not validate.
    public var consumersValid = true
}

/// Reads `Policies/*.yaml` into typed, immutable policies, checking structure, types, ranges,
/// masks and the existence of each source file. Checks against the data live in SandgateCore.
public enum PolicyLoader {
    public static let consumersFileName = "consumers.yaml"

    /// Loads every `*.yaml` file of `directory`.
    public static func load(directory: String) -> PolicyLoadResult {
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
        } catch {
            let location = SourceLocation(file: directory, line: 1, column: 1)
            return PolicyLoadResult(datasets: [:], consumers: .empty, diagnostics: [PolicyDiagnostic(location, "cannot read the policies directory")])
        }
        var result = PolicyLoadResult(datasets: [:], consumers: .empty, diagnostics: [])
        let datasetFiles = names.filter { $0.hasSuffix(".yaml") && $0 != consumersFileName }
        let datasetNames = Set(datasetFiles.map { String($0.dropLast(5)) })
        result.datasetFiles = datasetNames
        for name in datasetFiles {
            let path = url.appendingPathComponent(name).path
            switch loadDataset(path: path) {
            case .success(let policy): result.datasets[policy.name] = policy
            case .failure(let errors): result.diagnostics += errors.diagnostics
            }
        }
        let consumersPath = url.appendingPathComponent(consumersFileName).path
        if FileManager.default.fileExists(atPath: consumersPath) {
            switch loadConsumers(path: consumersPath, knownDatasets: datasetNames) {
            case .success(let directory): result.consumers = directory
            case .failure(let errors):
                result.diagnostics += errors.diagnostics
                result.consumersValid = false
            }
        }
        return result
    }

    /// The composed YAML tree of `path` and the SHA-256 of its bytes (the version).
    static func document(path: String) -> Result<(Node, String), PolicyErrors> {
        read(path: path).flatMap { text, version in compose(text, file: path).map { ($0, version) } }
    }

    static func read(path: String) -> Result<(String, String), PolicyErrors> {
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(PolicyErrors([PolicyDiagnostic(SourceLocation(file: path, line: 1, column: 1), "cannot read the file")]))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(PolicyErrors([PolicyDiagnostic(SourceLocation(file: path, line: 1, column: 1), "the file is not valid UTF-8")]))
        }
        let version = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        return .success((text, version))
    }

    static func compose(_ text: String, file: String) -> Result<Node, PolicyErrors> {
        func failure(_ line: Int, _ column: Int, _ message: String) -> Result<Node, PolicyErrors> {
            .failure(PolicyErrors([PolicyDiagnostic(SourceLocation(file: file, line: line, column: column), message)]))
        }
        do {
            guard let node = try Yams.compose(yaml: text) else { return failure(1, 1, "the file is empty") }
            return .success(node)
        } catch let error as YamlError {
            switch error {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let detail = context.map { "\($0.text): " } ?? ""
                return failure(mark.line, mark.column, "YAML syntax error: \(detail)\(problem)")
            case .duplicatedKeysInMapping(let duplicates, let context):
                return failure(context.mark.line, context.mark.column, "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in a mapping")
            case .reader(let problem, _, _, _):
                return failure(1, 1, "YAML reader error: \(problem)")
            default:
                return failure(1, 1, "YAML error: \(error)")
            }
        } catch {
            return failure(1, 1, "YAML error: \(error)")
        }
    }

    // MARK: Datasets

    static let topKeys: Set<String> = ["dataset", "description", "owner", "source", "limits", "pricing", "tables"]
    static let limitKeys: Set<String> = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes"]
    static let pricingKeys: Set<String> = ["currency", "per_query", "per_row", "per_million_vm_steps"]
    static let tableKeys: Set<String> = ["access", "row_filter", "columns", "privacy_unit", "min_group_size", "small_groups"]
    static let columnKeys: Set<String> = ["role", "mask", "aggregates"]
    static let maskKeys: Set<String> = ["pattern", "replace", "flags", "on_no_match"]
    static let aggregateNames = ["count", "sum", "avg", "min", "max", "total"]

    /// Loads and structurally validates one dataset policy file.
    public static func loadDataset(path: String) -> Result<DatasetPolicy, PolicyErrors> {
        let root: Node
        let version: String
        switch document(path: path) {
        case .success(let loaded): (root, version) = loaded
        case .failure(let errors): return .failure(errors)
        }
        var reader = YAMLReader(file: path)
        let fileName = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let top = reader.fields(root, what: "the policy", allowed: topKeys)

        if let dataset = top["dataset"], let name = reader.string(dataset.value, what: "dataset"), name != fileName {
            reader.report(dataset.value, "dataset '\(name)' must match the file name '\(fileName)'")
        }
        if !isValidDatasetName(fileName) {
            reader.report(at: SourceLocation(file: path, line: 1, column: 1), "the file name must be a dataset name of letters, digits, '_' or '-'")
        }
        let description = top["description"].flatMap { reader.string($0.value, what: "description") } ?? ""
        let owner = top["owner"].flatMap { reader.string($0.value, what: "owner") } ?? ""

        var sourcePath = ""
        var sourceLocation = reader.location(root)
        if let source = top["source"] {
            sourceLocation = reader.location(source.value)
            if let relative = reader.string(source.value, what: "source") {
                let base = URL(fileURLWithPath: path).deletingLastPathComponent()
                sourcePath = URL(fileURLWithPath: relative, relativeTo: base).standardizedFileURL.path
                var isDirectory: ObjCBool = false
                if !FileManager.default.fileExists(atPath: sourcePath, isDirectory: &isDirectory) || isDirectory.boolValue {
                    reader.report(source.value, "source '\(relative)' does not exist (resolved to \(sourcePath))")
                }
            }
        } else {
            reader.report(root, "missing key 'source'")
        }

        let limits = readLimits(top["limits"]?.value, reader: &reader)
        let pricing = readPricing(top["pricing"]?.value, reader: &reader)

        var tables: [TablePolicy] = []
        if let tablesNode = top["tables"] {
            if let entries = reader.entries(tablesNode.value, what: "tables") {
                for entry in entries {
                    if let table = readTable(entry.key, keyNode: entry.keyNode, node: entry.value, reader: &reader) {
                        tables.append(table)
                    }
                }
                if entries.isEmpty { reader.report(tablesNode.value, "tables must list at least one table") }
            }
        } else {
            reader.report(root, "missing key 'tables'")
        }

        guard reader.diagnostics.isEmpty else { return .failure(PolicyErrors(reader.diagnostics)) }
        return .success(DatasetPolicy(
            name: fileName, description: description, owner: owner, sourcePath: sourcePath, limits: limits,
            pricing: pricing, tables: tables, version: version, file: path, sourceLocation: sourceLocation))
    }

    static func isValidDatasetName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" || $0 == "-"
        }
    }

    static func readLimits(_ node: Node?, reader: inout YAMLReader) -> DatasetLimits {
        var limits = DatasetLimits.defaults
        guard let node else { return limits }
        let fields = reader.fields(node, what: "limits", allowed: limitKeys)
        if let value = fields["max_rows"]?.value, let rows = reader.integer(value, what: "max_rows", range: DatasetLimits.maxRowsRange) {
            limits.maxRows = rows
        }
        if let value = fields["timeout_ms"]?.value, let timeout = reader.integer(value, what: "timeout_ms", range: DatasetLimits.timeoutRange) {
            limits.timeoutMilliseconds = timeout
        }
        if let value = fields["max_vm_steps"]?.value, let steps = reader.integer(value, what: "max_vm_steps", range: DatasetLimits.vmStepsRange) {
            limits.maxVMSteps = steps
        }
        if let value = fields["max_result_bytes"]?.value, let bytes = reader.integer(value, what: "max_result_bytes", range: DatasetLimits.resultBytesRange) {
            limits.maxResultBytes = bytes
        }
        return limits
    }

    static func readPricing(_ node: Node?, reader: inout YAMLReader) -> Pricing {
        guard let node else { return .free }
        let fields = reader.fields(node, what: "pricing", allowed: pricingKeys)
        var currency = "CNY"
        if let value = fields["currency"]?.value, let text = reader.string(value, what: "currency") {
            if text.utf8.count == 3, text.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) }) {
                currency = text
            } else {
                reader.report(value, "currency must be a three-letter ISO 4217 code such as CNY")
            }
        }
        let range: ClosedRange<Int64> = 0...1_000_000_000_000
        func price(_ key: String) -> Int64 {
            guard let value = fields[key]?.value else { return 0 }
            return reader.integer(value, what: key, range: range) ?? 0
        }
        return Pricing(currency: currency, perQuery: price("per_query"), perRow: price("per_row"), perMillionVMSteps: price("per_million_vm_steps"))
    }

    static func readTable(_ name: String, keyNode: Node, node: Node, reader: inout YAMLReader) -> TablePolicy? {
        let what = "table '\(name)'"
        let fields = reader.fields(node, what: what, allowed: tableKeys)
        let access = fields["access"].flatMap { reader.choice($0.value, what: "access", as: TableAccess.self, options: ["rows", "aggregate"]) } ?? .rows
        var rowFilter: String?
        var rowFilterLocation: SourceLocation?
        if let value = fields["row_filter"]?.value, let filter = reader.string(value, what: "row_filter") {
            rowFilter = filter
            rowFilterLocation = reader.location(value)
            if let problem = RowFilterShape.problem(in: filter) {
                reader.report(value, "row_filter \(problem)")
            }
        }
        var columns: [ColumnPolicy] = []
        if let columnsNode = fields["columns"] {
            if let entries = reader.entries(columnsNode.value, what: "columns of \(what)") {
                for entry in entries {
                    if let column = readColumn(entry.key, keyNode: entry.keyNode, node: entry.value, access: access, table: name, reader: &reader) {
                        columns.append(column)
                    }
                }
            }
        } else {
            reader.report(keyNode, "\(what) needs 'columns' (a column not listed is hidden)")
        }

        var privacyUnit: String?
        var minGroupSize: Int?
        var smallGroups = SmallGroups.drop
        if access == .aggregate {
            if let value = fields["privacy_unit"]?.value {
                privacyUnit = reader.string(value, what: "privacy_unit")
            } else {
                reader.report(keyNode, "aggregate \(what) needs 'privacy_unit'")
            }
            if let value = fields["min_group_size"]?.value {
                minGroupSize = reader.integer(value, what: "min_group_size", range: 2...1_000_000)
            } else {
                reader.report(keyNode, "aggregate \(what) needs 'min_group_size'")
            }
            if let value = fields["small_groups"]?.value {
                smallGroups = reader.choice(value, what: "small_groups", as: SmallGroups.self, options: ["drop", "remainder"]) ?? .drop
            }
        } else {
            for key in ["privacy_unit", "min_group_size", "small_groups"] {
                if let entry = fields[key] { reader.report(entry.keyNode, "'\(key)' applies only to tables with access: aggregate") }
            }
        }
        return TablePolicy(
            name: name, access: access, rowFilter: rowFilter, rowFilterLocation: rowFilterLocation, columns: columns,
            privacyUnit: privacyUnit, minGroupSize: minGroupSize, smallGroups: smallGroups, location: reader.location(keyNode))
    }

    static func readColumn(_ name: String, keyNode: Node, node: Node, access: TableAccess, table: String, reader: inout YAMLReader) -> ColumnPolicy? {
        let what = "column '\(table).\(name)'"
        let fields = reader.fields(node, what: what, allowed: columnKeys)
        let role = fields["role"].flatMap {
            reader.choice($0.value, what: "role", as: ColumnRole.self, options: ["visible", "dimension", "measure", "join_key", "hidden"])
        } ?? .visible
        var mask: Mask?
        if let entry = fields["mask"] {
            if role == .joinKey || role == .hidden {
                reader.report(entry.keyNode, "a \(role.rawValue) column takes no mask (\(role == .joinKey ? "it is always a keyed token" : "it is never shown"))")
            } else {
                mask = readMask(entry.value, reader: &reader)
            }
        }
        var aggregates: [String] = []
        if let entry = fields["aggregates"] {
            if role != .measure {
                reader.report(entry.keyNode, "'aggregates' applies only to columns with role: measure")
            } else if case .sequence(let sequence) = entry.value {
                for item in sequence {
                    guard let function = reader.string(item, what: "an aggregate") else { continue }
                    if aggregateNames.contains(function) {
                        aggregates.append(function)
                    } else {
                        reader.report(item, "unknown aggregate '\(function)' (allowed: \(aggregateNames.joined(separator: ", ")))")
                    }
                }
            } else {
                reader.report(entry.value, "aggregates must be a list such as [count, sum, avg]")
            }
        } else if role == .measure {
            aggregates = ["count", "sum", "avg", "total"]
        }
        if role == .joinKey { mask = .joinKey }
        return ColumnPolicy(name: name, role: role, mask: mask, aggregates: aggregates, location: reader.location(keyNode))
    }

    static func readMask(_ node: Node, reader: inout YAMLReader) -> Mask? {
        if case .scalar = node {
            guard let name = reader.string(node, what: "mask") else { return nil }
            guard let preset = Mask.preset(name) else {
                reader.report(node, "unknown mask preset '\(name)' (presets: \(Mask.presetNames.joined(separator: ", ")); or write { pattern, replace })")
                return nil
            }
            return preset
        }
        let fields = reader.fields(node, what: "mask", allowed: maskKeys)
        guard let patternEntry = fields["pattern"] else {
            reader.report(node, "a mask mapping needs 'pattern' and 'replace'")
            return nil
        }
        guard let replaceEntry = fields["replace"] else {
            reader.report(node, "a mask with a pattern needs 'replace'")
            return nil
        }
        guard let pattern = reader.string(patternEntry.value, what: "pattern"),
              let replacement = scalarText(replaceEntry.value, reader: &reader, what: "replace") else { return nil }
        var flags = ""
        if let entry = fields["flags"] { flags = reader.string(entry.value, what: "flags") ?? "" }
        let onNoMatch = fields["on_no_match"].flatMap {
            reader.choice($0.value, what: "on_no_match", as: NoMatchAction.self, options: ["redact", "null", "keep"])
        } ?? .redact
        do {
            let program = try RegexProgram.compile(pattern: pattern, replacement: replacement, flags: flags)
            return Mask(kind: .regex(program), name: "regex", onNoMatch: onNoMatch)
        } catch {
            let node: Node
            let text: String
            switch error.part {
            case .pattern: (node, text) = (patternEntry.value, pattern)
            case .replacement: (node, text) = (replaceEntry.value, replacement)
            case .flags: (node, text) = (fields["flags"]?.value ?? patternEntry.value, flags)
            }
            reader.report(at: location(of: error, in: node, text: text, reader: reader), "\(error.part.rawValue): \(error.message)")
            return nil
        }
    }

    /// An empty replacement (`replace: ''`) is allowed; a plain empty value is not.
    static func scalarText(_ node: Node, reader: inout YAMLReader, what: String) -> String? {
        if case .scalar(let scalar) = node, scalar.style != .plain, scalar.style != .any { return scalar.string }
        return reader.string(node, what: what)
    }

    /// Maps a byte offset inside a scalar to a file column (exact for single-line scalars without
    /// escapes, which is how patterns are written).
    static func location(of error: MaskCompileError, in node: Node, text: String, reader: YAMLReader) -> SourceLocation {
        let base = reader.location(node)
        var quoteWidth = 0
        if case .scalar(let scalar) = node, scalar.style == .singleQuoted || scalar.style == .doubleQuoted { quoteWidth = 1 }
        let prefix = text.utf8.prefix(max(0, min(error.offset, text.utf8.count)))
        let characters = prefix.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
        return SourceLocation(file: base.file, line: base.line, column: base.column + quoteWidth + characters)
    }

    // MARK: Consumers

    static let consumerKeys: Set<String> = ["key_sha256", "grants"]
    static let grantKeys: Set<String> = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes", "daily_queries", "daily_rows"]

    /// Loads `consumers.yaml`; grants must name dataset files that exist.
    public static func loadConsumers(path: String, knownDatasets: Set<String>) -> Result<ConsumerDirectory, PolicyErrors> {
        let root: Node
        let version: String
        switch document(path: path) {
        case .success(let loaded): (root, version) = loaded
        case .failure(let errors): return .failure(errors)
        }
        var reader = YAMLReader(file: path)
        let top = reader.fields(root, what: "consumers.yaml", allowed: ["consumers"])
        var consumers: [String: Consumer] = [:]
        if let node = top["consumers"]?.value, let entries = reader.entries(node, what: "consumers") {
            for entry in entries {
                let fields = reader.fields(entry.value, what: "consumer '\(entry.key)'", allowed: consumerKeys)
                var keyHash = ""
                if let value = fields["key_sha256"]?.value, let text = reader.string(value, what: "key_sha256") {
                    let lower = text.lowercased()
                    if lower.utf8.count == 64, lower.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) {
                        keyHash = lower
                    } else {
                        reader.report(value, "key_sha256 must be 64 hex digits (the SHA-256 of the key)")
                    }
                } else if fields["key_sha256"] == nil {
                    reader.report(entry.keyNode, "consumer '\(entry.key)' needs 'key_sha256'")
                }
                var grants: [String: Grant] = [:]
                if let grantsNode = fields["grants"]?.value, let grantEntries = reader.entries(grantsNode, what: "grants") {
                    for grant in grantEntries {
                        if !knownDatasets.contains(grant.key) {
                            reader.report(grant.keyNode, "grant for unknown dataset '\(grant.key)'")
                        }
                        grants[grant.key] = readGrant(grant.value, reader: &reader)
                    }
                }
                consumers[entry.key] = Consumer(name: entry.key, keySHA256: keyHash, grants: grants)
            }
        } else if top["consumers"] == nil {
            reader.report(root, "missing key 'consumers'")
        }
        guard reader.diagnostics.isEmpty else { return .failure(PolicyErrors(reader.diagnostics)) }
        return .success(ConsumerDirectory(consumers: consumers, version: version))
    }

    static func readGrant(_ node: Node, reader: inout YAMLReader) -> Grant {
        let fields = reader.fields(node, what: "grant", allowed: grantKeys)
        func int(_ key: String, _ range: ClosedRange<Int>) -> Int? {
            fields[key].flatMap { reader.integer($0.value, what: key, range: range) }
        }
        return Grant(
            maxRows: int("max_rows", DatasetLimits.maxRowsRange),
            timeoutMilliseconds: int("timeout_ms", DatasetLimits.timeoutRange),
            maxVMSteps: fields["max_vm_steps"].flatMap { reader.integer($0.value, what: "max_vm_steps", range: DatasetLimits.vmStepsRange) },
            maxResultBytes: int("max_result_bytes", DatasetLimits.resultBytesRange),
            dailyQueries: int("daily_queries", 0...1_000_000_000),
            dailyRows: int("daily_rows", 0...1_000_000_000_000))
    }
}

/// A row filter is pasted into a view definition, so it must be one expression: balanced
/// parentheses, no statement separator, no comment that could hide the rest of the view.
enum RowFilterShape {
    static func problem(in filter: String) -> String? {
        var depth = 0
        var quote: UInt8?
        let bytes = Array(filter.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if let open = quote {
                if byte == open { quote = nil }
                index += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "`"): quote = byte
            case UInt8(ascii: "["): quote = UInt8(ascii: "]")
            case UInt8(ascii: "("): depth += 1
            case UInt8(ascii: ")"):
                depth -= 1
                if depth < 0 { return "has an unbalanced ')'" }
            case UInt8(ascii: ";"): return "must be one expression (no ';')"
            case UInt8(ascii: "-") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "-"):
                return "must not contain comments"
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                return "must not contain comments"
            default: break
            }
            index += 1
        }
        if quote != nil { return "has an unterminated quote" }
        if depth != 0 { return "has an unbalanced '('" }
        if filter.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return "is empty" }
        return nil
    }
}
