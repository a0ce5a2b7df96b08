import Crypto
import Foundation
import Yams

/// Everything loaded from a policies directory: the datasets that validated, the consumer
/// directory, and every problem found (a dataset with any problem is left out: fail closed).
public struct PolicyLoadResult: Sendable {
    public var datasets: [String: DatasetPolicy]
    /// The consumers whose entries validated (with their valid grants); see `consumerFile`.
    public var consumers: ConsumerDirectory
    public var diagnostics: [PolicyDiagnostic]
    /// Risky but valid choices (`min`/`max` on a measure, small thresholds, grants for datasets
    /// without a file): printed by `policy check`, never fatal.
    public var warnings: [PolicyDiagnostic] = []
    /// Every dataset file present, valid or not (a reload keeps the last valid version of those).
    public var datasetFiles: Set<String> = []
    /// `consumers.yaml` part by part, when it exists (a reload merges it over the previous version).
    public var consumerFile: ConsumerFile?
    /// False when `consumers.yaml` exists but does not validate as a whole.
    public var consumersValid: Bool { consumerFile?.isValid ?? true }
    /// Datasets (and `consumers.yaml`) whose loaded version ends with the YAML document end
    /// marker `...`: once such a version is in force, a reload accepts only a version that ends
    /// with it too, so a half-written file is never put in force (`PolicyLoader.isSealed`).
    public var sealed: Set<String> = []
}

/// Reads `Policies/*.yaml` into typed, immutable policies, checking structure, types, ranges,
/// masks and the existence of each source file. Checks against the data live in SandgateCore.
public enum PolicyLoader {
    public static let consumersFileName = "consumers.yaml"
    /// The `*.yaml` files of a policies directory that are not dataset policies.
    public static let reservedFileNames: Set<String> = [consumersFileName, GatewaySettings.fileName]

    /// Loads every `*.yaml` file of `directory`. `requireSources: false` skips the check that
    /// each `source:` exists (for `policy diff` of an old version, whose data may be gone).
    public static func load(directory: String, requireSources: Bool = true) -> PolicyLoadResult {
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
        } catch {
            let location = SourceLocation(file: directory, line: 1, column: 1)
            return PolicyLoadResult(datasets: [:], consumers: .empty, diagnostics: [PolicyDiagnostic(location, "cannot read the policies directory")])
        }
        var result = PolicyLoadResult(datasets: [:], consumers: .empty, diagnostics: [])
        let datasetFiles = names.filter { $0.hasSuffix(".yaml") && !reservedFileNames.contains($0) }
        let datasetNames = Set(datasetFiles.map { String($0.dropLast(5)) })
        result.datasetFiles = datasetNames
        for name in datasetFiles {
            let path = url.appendingPathComponent(name).path
            switch loadDataset(path: path, requireSource: requireSources) {
            case .success(let policy):
                result.datasets[policy.name] = policy
                result.warnings += policy.warnings
                if policy.sealed {
                    result.sealed.insert(policy.name)
                } else {
                    result.warnings.append(PolicyDiagnostic(SourceLocation(file: path, line: 1, column: 1),
                        "the file does not end with the line '...': add it, so that a reload never puts a half-written file in force"))
                }
            case .failure(let errors): result.diagnostics += errors.diagnostics
            }
        }
        let consumersPath = url.appendingPathComponent(consumersFileName).path
        if FileManager.default.fileExists(atPath: consumersPath) {
            let purposes = result.datasets.mapValues { $0.purposes.map(\.name) }
            let file = loadConsumers(path: consumersPath, knownDatasets: datasetNames, datasetPurposes: purposes,
                                     sourceTables: result.datasets.mapValues(SourceTable.all))
            result.consumerFile = file
            if file.sealed { result.sealed.insert(consumersFileName) }
            result.consumers = file.merged(over: nil)
            result.diagnostics += file.diagnostics
            result.warnings += file.warnings
        }
        return result
    }

    /// True when `text` ends with the YAML document end marker `...` starting its last line
    /// (trailing blank lines aside).
    public static func isSealed(_ text: String) -> Bool {
        // The marker starts its line (an indented `  ...` is content of a block scalar); a
        // comment may follow it (`...  # end of file`).
        guard let last = text.split(whereSeparator: \.isNewline).last(where: { !$0.allSatisfy(\.isWhitespace) }), last.hasPrefix("...") else {
            return false
        }
        let rest = last.dropFirst(3)
        let content = rest.firstIndex(of: "#").map { rest[..<$0] } ?? rest[...]
        return content.allSatisfy { $0 == " " || $0 == "\t" } && (rest.isEmpty || rest.first == " " || rest.first == "\t")
    }

    /// The composed YAML tree of `path`, the SHA-256 of its bytes (the version), and whether
    /// that text ends with the closing `...` line.
    static func document(path: String) -> Result<(Node, String, sealed: Bool), PolicyErrors> {
        read(path: path).flatMap { text, version in compose(text, file: path).map { ($0, version, isSealed(text)) } }
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

    static let topKeys: Set<String> = ["dataset", "description", "owner", "source", "limits", "pricing", "tables", "purposes", "tokens"]
    static let limitKeys: Set<String> = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes"]
    static let pricingKeys: Set<String> = ["currency", "per_query", "per_row", "per_million_vm_steps", "per_mib", "holder_share"]
    static let tableKeys: Set<String> = ["access", "row_filter", "columns", "privacy_unit", "min_group_size", "small_groups", "privacy"]
    static let columnKeys: Set<String> = ["role", "mask", "aggregates", "bounds"]
    static let privacyKeys: Set<String> = ["epsilon_per_query", "delta", "budget", "max_groups_per_unit", "max_rows_per_unit"]
    static let budgetKeys: Set<String> = ["epsilon", "period"]
    static let maskKeys: Set<String> = ["pattern", "replace", "flags", "on_no_match"]
    static let aggregateNames = ["count", "sum", "avg", "min", "max", "total"]

    /// Loads and structurally validates one dataset policy file. With `anyFileName`, the file
    /// may be named anything (`policy diff` of `retail.yaml` and a copy `retail-new.yaml`): the
    /// dataset is named by its `dataset:` key.
    public static func loadDataset(path: String, anyFileName: Bool = false, requireSource: Bool = true) -> Result<DatasetPolicy, PolicyErrors> {
        let root: Node
        let version: String
        let sealed: Bool
        switch document(path: path) {
        case .success(let loaded): (root, version, sealed) = loaded
        case .failure(let errors): return .failure(errors)
        }
        var reader = YAMLReader(file: path)
        let top = reader.fields(root, what: "the policy", allowed: topKeys) ?? [:]
        var fileName = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        if anyFileName, let dataset = top["dataset"], case .scalar(let scalar) = dataset.value { fileName = scalar.string }

        if let dataset = top["dataset"], let name = reader.string(dataset.value, what: "dataset"), name != fileName {
            reader.report(dataset.value, "dataset '\(name)' must match the file name '\(fileName)'")
        }
        if !Name.isValid(fileName) {
            reader.report(at: SourceLocation(file: path, line: 1, column: 1), "the file name '\(fileName)' is not a dataset name (\(Name.rule))")
        }
        let description = top["description"].flatMap { reader.string($0.value, what: "description") } ?? ""
        let owner = top["owner"].flatMap { reader.string($0.value, what: "owner") } ?? ""

        var sourcePath = ""
        var sourceText = ""
        var sourceLocation = reader.location(root)
        if let source = top["source"] {
            sourceLocation = reader.location(source.value)
            if let relative = reader.string(source.value, what: "source") {
                sourceText = relative
                let base = URL(fileURLWithPath: path).deletingLastPathComponent()
                sourcePath = URL(fileURLWithPath: relative, relativeTo: base).standardizedFileURL.path
                var isDirectory: ObjCBool = false
                if requireSource, !FileManager.default.fileExists(atPath: sourcePath, isDirectory: &isDirectory) || isDirectory.boolValue {
                    reader.report(source.value, "source '\(relative)' does not exist (resolved to \(sourcePath))")
                }
            }
        } else {
            reader.report(root, "missing key 'source'")
        }

        let limits = readLimits(top["limits"]?.value, reader: &reader)
        let pricing = readPricing(top["pricing"]?.value, reader: &reader)
        let purposes = top["purposes"].map { readPurposes($0.value, reader: &reader) } ?? []
        let tokens = top["tokens"].flatMap {
            reader.choice($0.value, what: "tokens", as: TokenScope.self, options: ["shared", "per_consumer"])
        } ?? .shared

        var tables: [TablePolicy] = []
        if let tablesNode = top["tables"] {
            if let entries = reader.entries(tablesNode.value, what: "tables", whenEmpty: "list the published tables") {
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

        // Issue 13: choices that are valid but do not do what they suggest.
        if tokens == .perConsumer, let node = top["tokens"]?.value,
           !tables.contains(where: { table in table.visibleColumns.contains { column in
               (column.role == .joinKey && table.access == .rows) || { if case .hash? = column.mask?.kind { true } else { false } }()
           } }) {
            reader.warn(node, "tokens: per_consumer, but no rows table has a join_key column and no column a hash mask: nothing released is traceable")
        }
        if owner.isEmpty, let share = (top["pricing"]?.value).flatMap({ node -> Node? in
            if case .mapping(let mapping) = node { return mapping["holder_share"] }
            return nil
        }) {
            reader.warn(share, "holder_share without an owner: settlement statements will name an empty holder (add `owner:`)")
        }
        guard reader.diagnostics.isEmpty else { return .failure(PolicyErrors(reader.diagnostics)) }
        return .success(DatasetPolicy(
            name: fileName, description: description, owner: owner, sourcePath: sourcePath, limits: limits,
            pricing: pricing, tables: tables, version: version, file: path, sourceLocation: sourceLocation,
            warnings: reader.warnings, sealed: sealed, source: sourceText, purposes: purposes, tokens: tokens))
    }

    /// `purposes:` — a mapping of purpose names to one-line descriptions (the form to write), or
    /// a list of names (accepted with a warning: consumers see no description).
    static func readPurposes(_ node: Node, reader: inout YAMLReader) -> [PurposeDeclaration] {
        var purposes: [PurposeDeclaration] = []
        func add(_ name: String, _ keyNode: Node, description: String) {
            if !Name.isValid(name) {
                reader.report(keyNode, "'\(name)' is not a purpose name (\(Name.rule))")
            } else if purposes.contains(where: { $0.name == name }) {
                reader.report(keyNode, "purpose '\(name)' is listed twice")
            } else {
                purposes.append(PurposeDeclaration(name: name, description: description, location: reader.location(keyNode)))
            }
        }
        if case .sequence(let sequence) = node {
            for item in sequence {
                guard let name = reader.string(item, what: "a purpose") else { continue }
                reader.warn(item, "purpose '\(name)' has no description: write `purposes: { \(name): one line for consumers }`")
                add(name, item, description: "")
            }
            if sequence.isEmpty { reader.report(node, "purposes is empty: list at least one purpose, or remove the key (then a purpose is optional)") }
            return purposes
        }
        guard let entries = reader.entries(node, what: "purposes", whenEmpty: "remove the key, then a purpose is optional") else { return [] }
        for entry in entries {
            guard let description = reader.string(entry.value, what: "the description of purpose '\(entry.key)'") else { continue }
            if description.contains(where: \.isNewline) || description.trimmingCharacters(in: .whitespaces).isEmpty || description.utf8.count > 200 {
                reader.report(entry.value, "the description of purpose '\(entry.key)' must be one non-empty line of at most 200 bytes")
                continue
            }
            add(entry.key, entry.keyNode, description: description)
        }
        if entries.isEmpty { reader.report(node, "purposes is empty: list at least one purpose, or remove the key (then a purpose is optional)") }
        return purposes
    }

    /// `holder_share` as parts per million, read from its decimal text (never through a binary
    /// floating-point value): `0.8`, `0.80`, `0.123456`, `1`, `0`. At most six decimals.
    static func partsPerMillion(_ text: String) -> Int64? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), whole.utf8.count <= 7,
              let wholeValue = Int64(whole) else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.utf8.count <= 6, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let value = Int64(digits.padding(toLength: 6, withPad: "0", startingAt: 0)) else { return nil }
            fraction = value
        }
        return wholeValue * 1_000_000 + fraction
    }

    static func readLimits(_ node: Node?, reader: inout YAMLReader) -> DatasetLimits {
        var limits = DatasetLimits.defaults
        guard let node else { return limits }
        let fields = reader.fields(node, what: "limits", allowed: limitKeys, whenEmpty: "remove the key for the defaults") ?? [:]
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
        let fields = reader.fields(node, what: "pricing", allowed: pricingKeys, whenEmpty: "remove the key to charge nothing") ?? [:]
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
        var share = Pricing.wholePPM
        if let value = fields["holder_share"]?.value, let text = reader.string(value, what: "holder_share") {
            if let ppm = partsPerMillion(text), ppm <= Pricing.wholePPM {
                share = ppm
            } else {
                reader.report(value, "holder_share must be a decimal from 0 to 1 with at most six decimals (0.80 gives the holder 80% of every charge), not '\(text)'")
            }
        }
        return Pricing(currency: currency, perQuery: price("per_query"), perRow: price("per_row"),
                       perMillionVMSteps: price("per_million_vm_steps"), perMiB: price("per_mib"), holderSharePPM: share)
    }

    static func readTable(_ name: String, keyNode: Node, node: Node, reader: inout YAMLReader) -> TablePolicy? {
        let what = "table '\(name)'"
        guard let fields = reader.fields(node, what: what, allowed: tableKeys) else { return nil }
        let access = fields["access"].flatMap { reader.choice($0.value, what: "access", as: TableAccess.self, options: ["rows", "aggregate"]) } ?? .rows
        var rowFilter: String?
        var rowFilterLocation: SourceLocation?
        if let value = fields["row_filter"]?.value, let filter = reader.string(value, what: "row_filter") {
            rowFilter = filter
            // Where the filter's text starts (after an opening quote), so that a column inside
            // the filter maps to the right column of the YAML line.
            let start = reader.location(value)
            var quoted = false
            if case .scalar(let scalar) = value, scalar.style == .singleQuoted || scalar.style == .doubleQuoted { quoted = true }
            rowFilterLocation = SourceLocation(file: start.file, line: start.line, column: start.column + (quoted ? 1 : 0))
            if let problem = RowFilterShape.problem(in: filter), let location = rowFilterLocation {
                // At the character the problem is about (exact for one-line filters).
                let column = location.column + filter.utf8.prefix(problem.offset).reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
                reader.report(at: SourceLocation(file: location.file, line: location.line, column: column), "row_filter \(problem.message)")
            }
        }
        var columns: [ColumnPolicy] = []
        if let columnsNode = fields["columns"] {
            if let entries = reader.entries(columnsNode.value, what: "columns of \(what)", whenEmpty: "list the published columns") {
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
                if let size = minGroupSize, size < 5 {
                    reader.warn(value, "min_group_size \(size) is below 5: a released group may describe very few people")
                }
            } else {
                reader.report(keyNode, "aggregate \(what) needs 'min_group_size'")
            }
            if let value = fields["small_groups"]?.value {
                smallGroups = reader.choice(value, what: "small_groups", as: SmallGroups.self, options: ["drop", "remainder"]) ?? .drop
            }
        } else {
            for key in ["privacy_unit", "min_group_size", "small_groups", "privacy"] {
                if let entry = fields[key] { reader.report(entry.keyNode, "'\(key)' applies only to tables with access: aggregate") }
            }
        }
        var privacy: PrivacyPolicy?
        if access == .aggregate, let entry = fields["privacy"] {
            privacy = readPrivacy(entry.value, keyNode: entry.keyNode, reader: &reader)
            if privacy != nil { checkPrivateColumns(columns, table: name, smallGroups: fields["small_groups"], privacy: privacy, reader: &reader) }
        }
        return TablePolicy(
            name: name, access: access, rowFilter: rowFilter, rowFilterLocation: rowFilterLocation, columns: columns,
            privacyUnit: privacyUnit, minGroupSize: minGroupSize, smallGroups: smallGroups, location: reader.location(keyNode),
            privacy: privacy)
    }

    static func readColumn(_ name: String, keyNode: Node, node: Node, access: TableAccess, table: String, reader: inout YAMLReader) -> ColumnPolicy? {
        let what = "column '\(table).\(name)'"
        guard let fields = reader.fields(node, what: what, allowed: columnKeys, whenEmpty: "write {} to publish the column as it is") else { return nil }
        let role = fields["role"].flatMap {
            reader.choice($0.value, what: "role", as: ColumnRole.self, options: ["visible", "dimension", "measure", "join_key", "hidden"])
        } ?? .visible
        if access == .rows, role == .measure || role == .dimension, let entry = fields["role"] {
            // On a rows table the value would be returned as it is, which is not what a holder
            // who wrote `measure` expects.
            reader.report(entry.value, "role: \(role.rawValue) applies only to tables with access: aggregate; use access: aggregate on table '\(table)' (on a rows table the column would be shown as it is)")
        }
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
                        if function == "min" || function == "max" {
                            reader.warn(item, "\(function) on measure '\(table).\(name)' releases one individual's value (the group's extreme)")
                        }
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
        var bounds: MeasureBounds?
        if let entry = fields["bounds"] {
            if role != .measure {
                reader.report(entry.keyNode, "'bounds' applies only to columns with role: measure")
            } else {
                bounds = readBounds(entry.value, reader: &reader)
            }
        }
        return ColumnPolicy(name: name, role: role, mask: mask, aggregates: aggregates, location: reader.location(keyNode), bounds: bounds)
    }

    /// `bounds: [lo, hi]`: two finite numbers, lo ≤ hi, at most 6 decimal places.
    static func readBounds(_ node: Node, reader: inout YAMLReader) -> MeasureBounds? {
        guard case .sequence(let sequence) = node, sequence.count == 2 else {
            reader.report(node, "bounds must be a list of two numbers [lower, upper], such as [0, 5000]")
            return nil
        }
        guard let lower = reader.number(sequence[0], what: "the lower bound"),
              let upper = reader.number(sequence[1], what: "the upper bound") else { return nil }
        guard lower.value <= upper.value else {
            reader.report(sequence[0], "the lower bound \(lower.value) is above the upper bound \(upper.value)")
            return nil
        }
        let decimals = max(lower.decimals, upper.decimals)
        guard decimals <= 6, max(abs(lower.value), abs(upper.value)) <= 1e15 else {
            reader.report(node, "bounds take at most 6 decimal places and magnitudes up to 10^15")
            return nil
        }
        return MeasureBounds(lower: lower.value, upper: upper.value, decimals: decimals)
    }

    /// An ε as a positive number up to `maximum`, in micro-ε.
    static func readEpsilon(_ node: Node, what: String, maximum: Double, allowZero: Bool = false, reader: inout YAMLReader) -> Int64? {
        guard let number = reader.number(node, what: what) else { return nil }
        guard number.value > 0 || (allowZero && number.value == 0) else {
            reader.report(node, "\(what) must be greater than 0, not \(number.value) (ε ≤ 0 would promise a protection no noise can give)")
            return nil
        }
        guard number.value <= maximum else {
            reader.report(node, "\(what) must be at most \(maximum), not \(number.value)")
            return nil
        }
        let micros = Int64((number.value * Double(PrivacyPolicy.microsPerEpsilon)).rounded())
        guard micros > 0 || allowZero else {
            reader.report(node, "\(what) must be at least 0.000001 (ε is counted in millionths)")
            return nil
        }
        return micros
    }

    /// The `privacy:` block of an aggregate table.
    static func readPrivacy(_ node: Node, keyNode: Node, reader: inout YAMLReader) -> PrivacyPolicy? {
        guard let fields = reader.fields(node, what: "privacy", allowed: privacyKeys, whenEmpty: "write epsilon_per_query, delta, budget, max_groups_per_unit and max_rows_per_unit") else { return nil }
        var complete = true
        func required(_ key: String) -> Node? {
            guard let entry = fields[key] else {
                reader.report(keyNode, "privacy needs '\(key)'")
                complete = false
                return nil
            }
            return entry.value
        }
        let epsilon = required("epsilon_per_query").flatMap { readEpsilon($0, what: "epsilon_per_query", maximum: PrivacyPolicy.maxEpsilonPerQuery, reader: &reader) }
        var delta: Double?
        if let node = required("delta"), let number = reader.number(node, what: "delta") {
            if number.value > 0, number.value < 1e-3 {
                delta = number.value
            } else {
                reader.report(node, "delta must be above 0 and below 0.001, not \(number.value) (δ is the chance that a key held by one person is released)")
            }
        }
        var budget: Int64?
        var period = BudgetPeriod.month
        if let node = required("budget"), let budgetFields = reader.fields(node, what: "budget", allowed: budgetKeys, whenEmpty: "write { epsilon: 10, period: month }") {
            if let value = budgetFields["epsilon"]?.value {
                budget = readEpsilon(value, what: "budget.epsilon", maximum: PrivacyPolicy.maxBudget, reader: &reader)
                if let budget, let epsilon, budget < epsilon {
                    reader.report(value, "budget.epsilon is smaller than epsilon_per_query: not even one query could run")
                }
            } else {
                reader.report(node, "budget needs 'epsilon'")
            }
            if let value = budgetFields["period"]?.value {
                period = reader.choice(value, what: "budget.period", as: BudgetPeriod.self, options: ["day", "month", "total"]) ?? .month
            } else {
                reader.report(node, "budget needs 'period' (day, month or total)")
            }
        }
        let groups = required("max_groups_per_unit").flatMap { reader.integer($0, what: "max_groups_per_unit", range: PrivacyPolicy.maxGroupsRange) }
        let rows = required("max_rows_per_unit").flatMap { reader.integer($0, what: "max_rows_per_unit", range: PrivacyPolicy.maxRowsRange) }
        guard complete, let epsilon, let delta, let budget, let groups, let rows else { return nil }
        return PrivacyPolicy(epsilonPerQueryMicros: epsilon, delta: delta, budgetMicros: budget, period: period,
                             maxGroupsPerUnit: groups, maxRowsPerUnit: rows, location: reader.location(keyNode))
    }

    /// On a private table: every measure with sum/avg/total needs bounds, min/max are refused
    /// (each releases one person's value, which no noise calibrated to the bounds hides), the
    /// sensitivity must fit the noise sampler, and `small_groups: remainder` is refused (group
    /// selection decides which keys exist; there is no remainder group).
    static func checkPrivateColumns(_ columns: [ColumnPolicy], table: String, smallGroups: (keyNode: Node, value: Node)?, privacy: PrivacyPolicy?, reader: inout YAMLReader) {
        if let smallGroups, case .scalar(let scalar) = smallGroups.value, scalar.string == "remainder" {
            reader.report(smallGroups.value, "small_groups: remainder is not available on a table with privacy: (private group selection drops small groups)")
        }
        for column in columns where column.role == .measure {
            for refused in ["min", "max"] where column.aggregates.contains(refused) {
                reader.report(at: column.location, "\(refused) is not allowed on measure '\(table).\(column.name)' of a table with privacy: (it releases one individual's value)")
            }
            let summing = column.aggregates.filter { ["sum", "avg", "total"].contains($0) }
            guard let bounds = column.bounds else {
                if !summing.isEmpty {
                    reader.report(at: column.location, "measure '\(table).\(column.name)' needs bounds: [lower, upper] for \(summing.joined(separator: ", ")) on a table with privacy: (the noise is scaled to them)")
                }
                continue
            }
            if let privacy {
                let grid = pow10(bounds.decimals)
                let sensitivity = Double(privacy.maxGroupsPerUnit) * Double(privacy.maxRowsPerUnit) * bounds.magnitude * grid
                if sensitivity > PrivacyPolicy.maxSensitivityUnits {
                    reader.report(at: column.location, "bounds of '\(table).\(column.name)' × max_groups_per_unit × max_rows_per_unit are too large for exact noise (at most 10^12 grid steps); narrow the bounds or use fewer decimal places")
                }
            }
        }
    }

    static func pow10(_ exponent: Int) -> Double {
        (0..<max(0, exponent)).reduce(1.0) { value, _ in value * 10 }
    }

    static func readMask(_ node: Node, reader: inout YAMLReader) -> Mask? {
        if case .scalar = node {
            guard let name = reader.string(node, what: "mask") else { return nil }
            guard let preset = Mask.preset(name) else {
                reader.report(node, "unknown mask preset '\(name)'\(NearestName.suggestion(for: name, among: Mask.presetNames)) (presets: \(Mask.presetNames.joined(separator: ", ")); or write { pattern, replace })")
                return nil
            }
            return preset
        }
        guard let fields = reader.fields(node, what: "mask", allowed: maskKeys) else { return nil }
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

    static let consumerKeys: Set<String> = ["key_sha256", "scram_sha256", "grants", "role"]
    static let grantKeys: Set<String> = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes", "daily_queries", "daily_rows", "monthly_cost_micros", "purposes",
                                         "epsilon_budget"]
    static let purposeLimitKeys: Set<String> = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes"]

    /// Loads `consumers.yaml` part by part: each consumer entry and each of its grants validates
    /// on its own, so that a problem in one part does not stop a removal or a narrowed grant
    /// elsewhere from taking effect (see `ConsumerFile.merged(over:)`). A grant naming a dataset
    /// without a policy file is a warning: deleting a dataset must not break the consumer file.
    /// `datasetPurposes` (the purposes each dataset lists) lets a grant's purpose that its dataset
    /// does not list be reported as a warning with the nearest listed name; it is a warning, not
    /// an error, for the same reason as a grant for a missing dataset (a holder dropping a
    /// purpose must not invalidate the operator's file), and the gateway refuses it anyway.
    ///
    /// `sourceTables` (each dataset's published tables by source file) refuses a consumer that
    /// holds a private table and exact access to the same rows through another dataset (issue 21
    /// item 1: `max(amount)` on the exact one read one person's value that the private one hides).
    public static func loadConsumers(path: String, knownDatasets: Set<String>, datasetPurposes: [String: [String]] = [:],
                                     sourceTables: [String: [SourceTable]] = [:]) -> ConsumerFile {
        let root: Node
        let version: String
        let sealed: Bool
        switch document(path: path) {
        case .success(let loaded): (root, version, sealed) = loaded
        case .failure(let errors):
            var file = ConsumerFile(unreadable: errors.diagnostics)
            file.scannedNames = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap(ConsumerFile.scanConsumerNames)
            return file
        }
        var reader = YAMLReader(file: path)
        guard let top = reader.fields(root, what: "consumers.yaml", allowed: ["consumers"]),
              let node = top["consumers"]?.value,
              let entries = reader.entries(node, what: "consumers", whenEmpty: "write `consumers: {}` for none") else {
            if reader.diagnostics.isEmpty { reader.report(root, "missing key 'consumers'") }
            return ConsumerFile(unreadable: reader.diagnostics)
        }
        var file = ConsumerFile(directory: ConsumerDirectory(consumers: [:], version: version), readable: true)
        file.sealed = sealed
        var consumers: [String: Consumer] = [:]
        for entry in entries {
            file.declared.insert(entry.key)
            let problemsBefore = reader.diagnostics.count
            if !Name.isValid(entry.key) {
                reader.report(entry.keyNode, "'\(entry.key)' is not a consumer name (\(Name.rule))")
            }
            guard let fields = reader.fields(entry.value, what: "consumer '\(entry.key)'", allowed: consumerKeys),
                  reader.diagnostics.count == problemsBefore else {
                file.invalidEntries.insert(entry.key)
                continue
            }
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
            var scram: SCRAMVerifier?
            if let value = fields["scram_sha256"]?.value, let text = reader.string(value, what: "scram_sha256") {
                scram = SCRAMVerifier(text)
                if scram == nil {
                    reader.report(value, "scram_sha256 must be PostgreSQL's SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (`sandgate consumer add` writes it)")
                }
            }
            let role = fields["role"].flatMap {
                reader.choice($0.value, what: "role", as: ConsumerRole.self, options: ["consumer", "operator"])
            } ?? .consumer
            let entryValid = reader.diagnostics.count == problemsBefore
            var grants: [String: Grant] = [:]
            if let grantsNode = fields["grants"]?.value,
               let grantEntries = reader.entries(grantsNode, what: "grants of consumer '\(entry.key)'", whenEmpty: "write `grants: {}` for none") {
                // Both grants of such a pair are invalid, so that neither takes effect at a reload
                // that merges the valid parts over the previous version.
                var conflicts: [String: String] = [:]
                for (held, other) in SourceTable.exactBesidePrivate(grantEntries.map(\.key), tables: sourceTables) {
                    let message = "consumer '\(entry.key)' holds private table \(held.dataset).\(held.table) and exact access to the same rows through \(other.dataset).\(other.table) (both read \(other.table) of \(other.sourcePath)): the exact answers would undo the privacy; grant one of the two datasets"
                    conflicts[other.dataset] = conflicts[other.dataset] ?? message
                    conflicts[held.dataset] = conflicts[held.dataset] ?? message
                }
                for grant in grantEntries {
                    let before = reader.diagnostics.count
                    if !Name.isValid(grant.key) {
                        reader.report(grant.keyNode, "dataset name '\(grant.key)' is not valid: \(Name.rule)")
                    } else if !knownDatasets.contains(grant.key) {
                        reader.warn(grant.keyNode, "grant for dataset '\(grant.key)', which has no policy file (it takes effect if one appears)")
                    }
                    if let conflict = conflicts[grant.key] { reader.report(grant.keyNode, conflict) }
                    let value = readGrant(grant.value, reader: &reader)
                    if let value, let listed = datasetPurposes[grant.key], !listed.isEmpty, let purposes = value.purposes {
                        for name in purposes.keys.sorted() where !listed.contains(name) {
                            reader.warn(purposeNode(named: name, in: grant.value) ?? grant.keyNode,
                                        "purpose '\(name)' is not listed by dataset '\(grant.key)', so it is refused\(NearestName.suggestion(for: name, among: listed))")
                        }
                    }
                    if let value, reader.diagnostics.count == before {
                        grants[grant.key] = value
                    } else {
                        file.invalidGrants[entry.key, default: []].insert(grant.key)
                    }
                }
            } else if fields["grants"] != nil {
                file.invalidEntries.insert(entry.key)
                continue
            }
            // An entry whose name, key or role is invalid is kept whole at its previous version
            // (its grants are still read above, so every problem is reported).
            guard entryValid else {
                file.invalidEntries.insert(entry.key)
                continue
            }
            consumers[entry.key] = Consumer(name: entry.key, keySHA256: keyHash, scram: scram, grants: grants, role: role)
        }
        file.directory = ConsumerDirectory(consumers: consumers, version: version)
        file.diagnostics = reader.diagnostics
        file.warnings = reader.warnings
        return file
    }

    /// The key node of purpose `name` under a grant's `purposes:` (for a warning's position).
    static func purposeNode(named name: String, in grant: Node) -> Node? {
        guard case .mapping(let fields) = grant, let purposes = fields["purposes"] else { return nil }
        switch purposes {
        case .mapping(let mapping): return mapping.first { $0.key.string == name }?.key
        case .sequence(let sequence): return sequence.first { $0.string == name }
        default: return nil
        }
    }

    /// A grant's `purposes:`: a list of names, or a mapping of names to limits that lower the
    /// grant's (`{}` for none).
    static func readGrantPurposes(_ node: Node, reader: inout YAMLReader) -> [String: PurposeLimits]? {
        var purposes: [String: PurposeLimits] = [:]
        func add(_ name: String, _ keyNode: Node, _ limits: PurposeLimits) {
            if !Name.isValid(name) {
                reader.report(keyNode, "'\(name)' is not a purpose name (\(Name.rule))")
            } else if purposes[name] != nil {
                reader.report(keyNode, "purpose '\(name)' is listed twice")
            } else {
                purposes[name] = limits
            }
        }
        if case .sequence(let sequence) = node {
            for item in sequence {
                if let name = reader.string(item, what: "a purpose") { add(name, item, .none) }
            }
            return purposes
        }
        guard let entries = reader.entries(node, what: "purposes of the grant", whenEmpty: "write `purposes: []` to allow none") else { return nil }
        for entry in entries {
            guard let fields = reader.fields(entry.value, what: "purpose '\(entry.key)'", allowed: purposeLimitKeys,
                                             whenEmpty: "write {} for the grant's own limits") else { continue }
            let limits = PurposeLimits(
                maxRows: fields["max_rows"].flatMap { reader.integer($0.value, what: "max_rows", range: DatasetLimits.maxRowsRange) },
                timeoutMilliseconds: fields["timeout_ms"].flatMap { reader.integer($0.value, what: "timeout_ms", range: DatasetLimits.timeoutRange) },
                maxVMSteps: fields["max_vm_steps"].flatMap { reader.integer($0.value, what: "max_vm_steps", range: DatasetLimits.vmStepsRange) },
                maxResultBytes: fields["max_result_bytes"].flatMap { reader.integer($0.value, what: "max_result_bytes", range: DatasetLimits.resultBytesRange) })
            add(entry.key, entry.keyNode, limits)
        }
        return purposes
    }

    static func readGrant(_ node: Node, reader: inout YAMLReader) -> Grant? {
        guard let fields = reader.fields(node, what: "grant", allowed: grantKeys, whenEmpty: "write {} for the dataset's own limits") else { return nil }
        func int(_ key: String, _ range: ClosedRange<Int>) -> Int? {
            fields[key].flatMap { reader.integer($0.value, what: key, range: range) }
        }
        let purposes = fields["purposes"].flatMap { readGrantPurposes($0.value, reader: &reader) }
        return Grant(
            maxRows: int("max_rows", DatasetLimits.maxRowsRange),
            timeoutMilliseconds: int("timeout_ms", DatasetLimits.timeoutRange),
            maxVMSteps: fields["max_vm_steps"].flatMap { reader.integer($0.value, what: "max_vm_steps", range: DatasetLimits.vmStepsRange) },
            maxResultBytes: int("max_result_bytes", DatasetLimits.resultBytesRange),
            dailyQueries: int("daily_queries", 0...1_000_000_000),
            dailyRows: int("daily_rows", 0...1_000_000_000_000),
            monthlyCostMicros: fields["monthly_cost_micros"].flatMap {
                reader.integer($0.value, what: "monthly_cost_micros", range: Int64(0)...1_000_000_000_000_000)
            },
            purposes: purposes,
            epsilonBudgetMicros: fields["epsilon_budget"].flatMap { entry in
                readEpsilon(entry.value, what: "epsilon_budget", maximum: PrivacyPolicy.maxBudget, allowZero: true, reader: &reader)
            })
    }
}

/// `consumers.yaml` as loaded: the parts that validated and which parts did not.
/// A published table by the rows it reads: its source file and table (issue 21 item 1).
public struct SourceTable: Sendable, Hashable {
    public let dataset: String
    public let table: String
    public let sourcePath: String
    public let isPrivate: Bool

    /// The tables of `policy`, with its source path resolved (symbolic links followed).
    public static func all(_ policy: DatasetPolicy) -> [SourceTable] {
        let path = URL(fileURLWithPath: policy.sourcePath).resolvingSymlinksInPath().standardizedFileURL.path
        return policy.tables.map { SourceTable(dataset: policy.name, table: $0.name, sourcePath: path, isPrivate: $0.privacy != nil) }
    }

    /// Pairs (a private table, a table of another of `datasets` that reads the same rows without
    /// privacy), in dataset order.
    public static func exactBesidePrivate(_ datasets: [String], tables: [String: [SourceTable]]) -> [(SourceTable, SourceTable)] {
        let granted = datasets.flatMap { tables[$0] ?? [] }
        var pairs: [(SourceTable, SourceTable)] = []
        for held in granted where held.isPrivate {
            for other in granted where !other.isPrivate && other.dataset != held.dataset
                && other.sourcePath == held.sourcePath && other.table.lowercased() == held.table.lowercased() {
                pairs.append((held, other))
            }
        }
        return pairs
    }
}

public struct ConsumerFile: Sendable {
    /// Every consumer whose entry validated, with only the grants that validated.
    public var directory: ConsumerDirectory
    /// Problems (the file is invalid when there is any) and warnings (printed, never fatal).
    public var diagnostics: [PolicyDiagnostic] = []
    public var warnings: [PolicyDiagnostic] = []
    /// False when the file as a whole could not be read (YAML syntax, no `consumers:` mapping):
    /// then nothing can be known about which consumers it declares.
    public var readable: Bool
    /// The file ends with the closing `...` line (`PolicyLoader.isSealed`).
    public var sealed = false
    /// Every consumer name the file declares, valid or not.
    public var declared: Set<String> = []
    /// Consumers whose entry (name, key, role or grants mapping) did not validate.
    public var invalidEntries: Set<String> = []
    /// Grants that did not validate, by consumer.
    public var invalidGrants: [String: Set<String>] = [:]
    /// For a file YAML cannot parse (a duplicate key, say): the consumer names found by reading
    /// its lines, when its layout is the usual block style; nil when they cannot be told.
    public var scannedNames: Set<String>?

    init(directory: ConsumerDirectory, readable: Bool) {
        self.directory = directory
        self.readable = readable
    }

    init(unreadable diagnostics: [PolicyDiagnostic]) {
        self.init(directory: .empty, readable: false)
        self.diagnostics = diagnostics
    }

    public var isValid: Bool { diagnostics.isEmpty }

    /// The keys of the block mapping under a top-level `consumers:` line, read line by line; nil
    /// when the file does not have that shape (flow style, no such line, odd indentation).
    static func scanConsumerNames(_ text: String) -> Set<String>? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        guard let start = lines.firstIndex(where: { $0.hasPrefix("consumers:") && $0.dropFirst(10).allSatisfy { $0 == " " } }) else { return nil }
        var names: Set<String> = []
        var indent: Int?
        for line in lines[(start + 1)...] {
            let trimmed = line.drop { $0 == " " }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let width = line.count - trimmed.count
            if width == 0 { break }
            if line.contains("\t") { return nil }
            if indent == nil { indent = width }
            guard width >= (indent ?? width) else { return nil }
            guard width == indent else { continue }
            guard let colon = trimmed.firstIndex(of: ":") else { return nil }
            var name = trimmed[..<colon].trimmingCharacters(in: .whitespaces)
            if name.count >= 2, let first = name.first, first == name.last, first == "\"" || first == "'" { name = String(name.dropFirst().dropLast()) }
            names.insert(name)
        }
        return names
    }

    /// The directory to put in force when `previous` was in force before. A consumer the file no
    /// longer declares is removed and a grant it no longer lists is gone, even when other parts
    /// of the file are invalid; an invalid part keeps its previous version, or is left out if it
    /// is new. A file that cannot be read at all keeps `previous` (nothing is known about it).
    public func merged(over previous: ConsumerDirectory?) -> ConsumerDirectory {
        guard readable else {
            // Even a file that does not parse revokes: a consumer whose name no longer appears
            // goes (red team: a duplicate key elsewhere kept a removed consumer logging in).
            guard let previous, let names = scannedNames else { return previous ?? .empty }
            return ConsumerDirectory(consumers: previous.consumers.filter { names.contains($0.key) }, version: previous.version)
        }
        guard !isValid else { return directory }
        var consumers = directory.consumers
        for name in invalidEntries {
            if let old = previous?.consumers[name] { consumers[name] = old }
        }
        for (name, datasets) in invalidGrants {
            guard let current = consumers[name] else { continue }
            var grants = current.grants
            for dataset in datasets {
                grants[dataset] = previous?.consumers[name]?.grants[dataset]
            }
            consumers[name] = Consumer(name: current.name, keySHA256: current.keySHA256, scram: current.scram, grants: grants, role: current.role)
        }
        return ConsumerDirectory(consumers: consumers, version: directory.version)
    }
}

/// A row filter is pasted into a view definition, so it must be one expression: balanced
/// parentheses, no statement separator, no comment that could hide the rest of the view.
enum RowFilterShape {
    /// The first problem and the UTF-8 offset of the character it is about; nil when none.
    static func problem(in filter: String) -> (message: String, offset: Int)? {
        var open: [Int] = []
        var quote: (byte: UInt8, at: Int)?
        let bytes = Array(filter.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if let current = quote {
                if byte == current.byte { quote = nil }
                index += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "`"): quote = (byte, index)
            case UInt8(ascii: "["): quote = (UInt8(ascii: "]"), index)
            case UInt8(ascii: "("): open.append(index)
            case UInt8(ascii: ")"):
                if open.popLast() == nil { return ("has an unbalanced ')'", index) }
            case UInt8(ascii: ";"): return ("must be one expression (no ';')", index)
            case UInt8(ascii: "-") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "-"):
                return ("must not contain comments", index)
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                return ("must not contain comments", index)
            default: break
            }
            index += 1
        }
        if let quote { return ("has an unterminated quote", quote.at) }
        if let unclosed = open.last { return ("has an unbalanced '(' (it is never closed)", unclosed) }
        if filter.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return ("is empty", 0) }
        return nil
    }
}
