import Foundation
import Yams

/// Why an edit of `consumers.yaml` was not made (nothing is written then).
public struct ConsumerEditError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The limits and quotas of one grant as written in `consumers.yaml`, in the file's key order.
public struct GrantFields: Sendable, Equatable {
    public var values: [(key: String, value: String)] = []

    public init() {}

    /// Sets `key` (a `PolicyLoader.grantKeys` member) to `value`, keeping the others.
    public mutating func set(_ key: String, _ value: Int64) {
        set(key, text: String(value))
    }

    /// Sets the grant's purposes to `names` (valid `Name`s), written as a flow list `[a, b]`.
    public mutating func setPurposes(_ names: [String]) {
        set("purposes", text: "[" + names.joined(separator: ", ") + "]")
    }

    private mutating func set(_ key: String, text: String) {
        if let index = values.firstIndex(where: { $0.key == key }) {
            values[index].value = text
        } else {
            values.append((key, text))
        }
        let order = ["max_rows", "timeout_ms", "max_vm_steps", "max_result_bytes", "daily_queries", "daily_rows", "monthly_cost_micros", "purposes"]
        values.sort { (order.firstIndex(of: $0.key) ?? order.count) < (order.firstIndex(of: $1.key) ?? order.count) }
    }

    /// `{ max_rows: 200, daily_queries: 1000 }`, or `{}`.
    public var flowText: String {
        values.isEmpty ? "{}" : "{ " + values.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + " }"
    }

    public static func == (lhs: GrantFields, rhs: GrantFields) -> Bool {
        lhs.values.map(\.key) == rhs.values.map(\.key) && lhs.values.map(\.value) == rhs.values.map(\.value)
    }
}

/// Edits `consumers.yaml` as text, guided by the positions of the composed YAML nodes, so that
/// comments, blank lines, key order and the closing `...` line stay as the operator wrote them.
/// Only the lines of the entry being changed are rewritten. Layouts it cannot edit safely (flow
/// style spanning lines, anchors) are refused with a message instead of being reformatted.
public struct ConsumerFileEditor {
    public private(set) var text: String

    public init(text: String) {
        self.text = text
    }

    // MARK: Operations

    /// Appends a consumer entry at the end of the `consumers:` mapping.
    public mutating func addConsumer(_ name: String, keySHA256: String, scram: String? = nil, grants: [(dataset: String, fields: GrantFields)]) throws(ConsumerEditError) {
        let file = try parse()
        if file.entries.contains(where: { $0.name == name }) { throw ConsumerEditError("consumer '\(name)' exists already") }
        let indent = file.entryIndent
        let step = file.step
        var block = ["\(pad(indent))\(name):", "\(pad(indent + step))key_sha256: \(keySHA256)"]
        if let scram { block.append("\(pad(indent + step))scram_sha256: \"\(scram)\"") }
        if grants.isEmpty {
            block.append("\(pad(indent + step))grants: {}")
        } else {
            block.append("\(pad(indent + step))grants:")
            for grant in grants { block.append("\(pad(indent + 2 * step))\(grant.dataset): \(grant.fields.flowText)") }
        }
        var lines = file.lines
        if let emptyFlow = file.emptyFlowLine {
            // `consumers: {}` becomes a block mapping.
            lines[emptyFlow] = rewriteFlowValue(lines[emptyFlow], with: "")
            lines.insert(contentsOf: block, at: emptyFlow + 1)
        } else {
            lines.insert(contentsOf: block, at: file.end)
        }
        text = join(lines)
    }

    /// Removes a consumer entry (its grants and every line of it).
    public mutating func removeConsumer(_ name: String) throws(ConsumerEditError) {
        let file = try parse()
        let entry = try file.entry(name)
        var lines = file.lines
        // Comment lines right above the entry, at its indentation, are about it and go with it.
        var start = entry.start
        while start > file.consumersLine + 1, lines[start - 1].hasPrefix(pad(entry.indent) + "#") { start -= 1 }
        lines.removeSubrange(start..<entry.end)
        if file.entries.count == 1 {
            // The last consumer: an empty value would be an error, so the mapping becomes `{}`.
            lines[file.consumersLine] = rewriteFlowValue(lines[file.consumersLine], with: " {}")
        }
        text = join(lines)
    }

    /// Replaces the `key_sha256` value of a consumer, and its `scram_sha256` verifier: replaced
    /// when there is one, added after the key hash when there is none (a verifier of the old key
    /// left in place would keep the old key working over the PostgreSQL protocol).
    public mutating func setKeyHash(_ name: String, to hash: String, scram: String? = nil) throws(ConsumerEditError) {
        let file = try parse()
        let entry = try file.entry(name)
        guard let field = entry.fields["key_sha256"], case .scalar(let scalar) = field.value, let mark = scalar.mark else {
            throw ConsumerEditError("consumer '\(name)' has no key_sha256 to replace")
        }
        var lines = file.lines
        let index = mark.line - 1
        guard index < lines.count, let range = lines[index].range(of: scalar.string) else {
            throw ConsumerEditError("cannot find the key hash of '\(name)' on line \(mark.line)")
        }
        lines[index].replaceSubrange(range, with: hash)
        if let old = entry.fields["scram_sha256"], case .scalar(let verifier) = old.value, let verifierMark = verifier.mark {
            let line = verifierMark.line - 1
            guard line < lines.count, let range = lines[line].range(of: verifier.string) else {
                throw ConsumerEditError("cannot find the SCRAM verifier of '\(name)' on line \(verifierMark.line)")
            }
            if let scram {
                lines[line].replaceSubrange(range, with: scram)
            } else {
                lines.remove(at: line)
            }
        } else if let scram {
            let indent = String(lines[index].prefix { $0 == " " })
            lines.insert("\(indent)scram_sha256: \"\(scram)\"", at: index + 1)
        }
        text = join(lines)
    }

    /// The grant of `name` for `dataset` as written, or nil when there is none.
    public func grant(_ name: String, dataset: String) throws(ConsumerEditError) -> GrantFields? {
        let file = try parse()
        let entry = try file.entry(name)
        guard let grants = entry.fields["grants"]?.value, case .mapping(let mapping) = grants else { return nil }
        for (key, value) in mapping where key.string == dataset {
            return try Self.fields(of: value, dataset: dataset)
        }
        return nil
    }

    /// Adds or replaces the grant of `name` for `dataset`.
    public mutating func setGrant(_ name: String, dataset: String, fields: GrantFields) throws(ConsumerEditError) {
        try editGrants(name) { grants in
            if let index = grants.firstIndex(where: { $0.dataset == dataset }) {
                grants[index].fields = fields
            } else {
                grants.append((dataset, fields, nil))
            }
        }
    }

    /// Removes the grant of `name` for `dataset`; an error when there is none.
    public mutating func removeGrant(_ name: String, dataset: String) throws(ConsumerEditError) {
        var found = false
        try editGrants(name) { grants in
            found = grants.contains { $0.dataset == dataset }
            grants.removeAll { $0.dataset == dataset }
        }
        if !found { throw ConsumerEditError("consumer '\(name)' has no grant for dataset '\(dataset)'") }
    }

    // MARK: Grants

    private typealias GrantLine = (dataset: String, fields: GrantFields, line: Int?)

    /// Rewrites the grant lines of one consumer: a block mapping of one-line grants is edited
    /// line by line (other lines, comments included, stay); `grants: {}` or a one-line flow
    /// mapping becomes a block; anything else is refused.
    private mutating func editGrants(_ name: String, _ change: (inout [GrantLine]) -> Void) throws(ConsumerEditError) {
        let file = try parse()
        let entry = try file.entry(name)
        var lines = file.lines
        let step = file.step
        guard let grantsField = entry.fields["grants"] else {
            var grants: [GrantLine] = []
            change(&grants)
            guard !grants.isEmpty else { return }
            let indent = entry.indent + step
            let block = ["\(pad(indent))grants:"] + grants.map { "\(pad(indent + step))\($0.dataset): \($0.fields.flowText)" }
            lines.insert(contentsOf: block, at: entry.end)
            text = join(lines)
            return
        }
        guard case .mapping(let mapping) = grantsField.value else {
            throw ConsumerEditError("the grants of '\(name)' are not a mapping; fix consumers.yaml by hand (`sandgate policy check`)")
        }
        let keyLine = (grantsField.key.mark?.line ?? 1) - 1
        let keyIndent = (grantsField.key.mark?.column ?? 1) - 1
        guard keyLine > entry.start, lines[keyLine].prefix(keyIndent).allSatisfy({ $0 == " " }) else {
            throw ConsumerEditError("consumer '\(name)' is written on one line in flow style; write it as a block (one key per line) to edit it with this command")
        }
        var grants: [GrantLine] = []
        for (key, value) in mapping {
            let dataset = key.string ?? ""
            grants.append((dataset, try Self.fields(of: value, dataset: dataset), (key.mark?.line).map { $0 - 1 }))
        }
        let before = grants
        change(&grants)
        if Self.valueIsFlow(lines[keyLine]) {
            // One line only: `grants: {}` or `grants: { retail: {…} }`.
            let lastLine = grants.compactMap(\.line).max() ?? keyLine
            guard lastLine == keyLine, before.allSatisfy({ $0.line == keyLine }) else {
                throw ConsumerEditError("the grants of '\(name)' span several lines in flow style; write them one per line to edit them with this command")
            }
            lines[keyLine] = rewriteFlowValue(lines[keyLine], with: grants.isEmpty ? " {}" : "")
            let block = grants.map { "\(pad(keyIndent + step))\($0.dataset): \($0.fields.flowText)" }
            lines.insert(contentsOf: block, at: keyLine + 1)
            text = join(lines)
            return
        }
        // Block style: every grant must be one line (`retail: { … }`) to be edited in place.
        let grantIndent = mapping.first.flatMap { $0.key.mark.map { $0.column - 1 } } ?? keyIndent + step
        for grant in before {
            guard let line = grant.line, Self.isOneLine(lines, line, indent: grantIndent) else {
                throw ConsumerEditError("the grant of '\(name)' for '\(grant.dataset)' spans several lines; write it as `\(grant.dataset): { … }` to edit it with this command")
            }
        }
        // Edit from the bottom up so that earlier line numbers stay valid.
        var edits: [(line: Int, replacement: [String])] = []
        for old in before {
            guard let line = old.line else { continue }
            if let new = grants.first(where: { $0.dataset == old.dataset }) {
                if new.fields != old.fields {
                    edits.append((line, [replaceGrantValue(lines[line], dataset: old.dataset, indent: grantIndent, with: new.fields)]))
                }
            } else {
                edits.append((line, []))
            }
        }
        let added = grants.filter { new in !before.contains { $0.dataset == new.dataset } }
        let insertAt = (before.compactMap(\.line).max() ?? keyLine) + 1
        if !added.isEmpty {
            lines.insert(contentsOf: added.map { "\(pad(grantIndent))\($0.dataset): \($0.fields.flowText)" }, at: insertAt)
        }
        for edit in edits.sorted(by: { $0.line > $1.line }) {
            lines.replaceSubrange(edit.line...edit.line, with: edit.replacement)
        }
        if grants.isEmpty {
            lines[keyLine] = rewriteFlowValue(lines[keyLine], with: " {}")
        }
        text = join(lines)
    }

    /// The fields of one grant value (a mapping of plain scalars).
    private static func fields(of node: Node, dataset: String) throws(ConsumerEditError) -> GrantFields {
        guard case .mapping(let mapping) = node else {
            throw ConsumerEditError("the grant for '\(dataset)' is not a mapping; fix consumers.yaml by hand (`sandgate policy check`)")
        }
        var fields = GrantFields()
        for (key, value) in mapping {
            // A list of purpose names is kept as its flow text; purposes with limits (a mapping)
            // are left to the operator's editor rather than reformatted.
            if key.string == "purposes", case .sequence(let items) = value {
                let names = items.compactMap { item -> String? in
                    if case .scalar(let scalar) = item, Name.isValid(scalar.string) { return scalar.string }
                    return nil
                }
                guard names.count == items.count else {
                    throw ConsumerEditError("the purposes of the grant for '\(dataset)' are not all purpose names; fix consumers.yaml by hand (`sandgate policy check`)")
                }
                fields.values.append(("purposes", "[" + names.joined(separator: ", ") + "]"))
                continue
            }
            guard case .scalar(let scalar) = value else {
                throw ConsumerEditError(key.string == "purposes"
                    ? "the grant for '\(dataset)' lists purposes with limits; edit consumers.yaml by hand"
                    : "the grant for '\(dataset)' has a value that is not a number")
            }
            fields.values.append((key.string ?? "", scalar.string))
        }
        return fields
    }

    /// True when the value of `key: value` on this line is written in flow style (`{…}`); read
    /// from the text, which is what gets rewritten (Yams does not report the style of `{}`).
    private static func valueIsFlow(_ line: String) -> Bool {
        guard let colon = line.firstIndex(of: ":") else { return false }
        return line[line.index(after: colon)...].drop { $0 == " " }.hasPrefix("{")
    }

    /// True when the entry at `line` is followed by no line of its own (the next content line
    /// is indented no deeper than the entry).
    private static func isOneLine(_ lines: [String], _ line: Int, indent: Int) -> Bool {
        var index = line + 1
        while index < lines.count {
            let content = lines[index].drop { $0 == " " }
            if content.isEmpty || content.hasPrefix("#") { index += 1; continue }
            return lines[index].count - content.count <= indent
        }
        return true
    }

    /// `    retail: { max_rows: 200 }  # note` with the value replaced; a trailing comment stays.
    private func replaceGrantValue(_ line: String, dataset: String, indent: Int, with fields: GrantFields) -> String {
        "\(pad(indent))\(dataset): \(fields.flowText)\(Self.tail(of: line))"
    }

    /// `key: {…}   # note` → `key:<value>   # note`, for one-line flow values (and back).
    private func rewriteFlowValue(_ line: String, with value: String) -> String {
        guard let colon = line.firstIndex(of: ":") else { return line }
        return String(line[...colon]) + value + Self.tail(of: line)
    }

    /// What follows a one-line value: the spaces and comment after its closing `}`, or, when
    /// there is no value, everything after the colon (spaces and comment).
    private static func tail(of line: String) -> String {
        guard let colon = line.firstIndex(of: ":") else { return "" }
        let rest = line[line.index(after: colon)...]
        let after = rest.lastIndex(of: "}").map { rest[rest.index(after: $0)...] } ?? rest
        return after.contains("#") ? String(after) : ""
    }

    // MARK: Reading positions

    private struct Entry {
        let name: String
        /// First line (0-based) and the line after the last line of the entry.
        let start: Int
        let end: Int
        let indent: Int
        let fields: [String: (key: Node.Scalar, value: Node)]
    }

    private struct Parsed {
        var lines: [String]
        var entries: [Entry]
        /// Where a new entry goes: after the last entry (before trailing comments and `...`).
        var end: Int
        var consumersLine: Int
        var emptyFlowLine: Int?
        var entryIndent: Int
        var step: Int

        func entry(_ name: String) throws(ConsumerEditError) -> Entry {
            guard let entry = entries.first(where: { $0.name == name }) else {
                let names = entries.map(\.name).sorted()
                throw ConsumerEditError("no consumer named '\(name)' (consumers: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
            }
            return entry
        }
    }

    private func parse() throws(ConsumerEditError) -> Parsed {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConsumerEditError("consumers.yaml is not valid YAML; fix it first (`sandgate policy check`)")
        }
        let lines = text.components(separatedBy: "\n")
        guard case .mapping(let root)? = node, let pair = root.first(where: { $0.key.string == "consumers" }) else {
            throw ConsumerEditError("consumers.yaml has no 'consumers:' mapping; fix it first (`sandgate policy check`)")
        }
        let (consumersKey, consumersValue) = (pair.key, pair.value)
        guard case .mapping(let consumers) = consumersValue else {
            throw ConsumerEditError("'consumers' is not a mapping; fix consumers.yaml first (`sandgate policy check`)")
        }
        let consumersLine = (consumersKey.mark?.line ?? 1) - 1
        if Self.valueIsFlow(lines[consumersLine]) {
            guard consumers.isEmpty, consumersValue.mark?.line == consumersKey.mark?.line else {
                throw ConsumerEditError("'consumers' is written in flow style; write one consumer per block to edit it with this command")
            }
            return Parsed(lines: lines, entries: [], end: consumersLine + 1, consumersLine: consumersLine, emptyFlowLine: consumersLine,
                          entryIndent: 2, step: 2)
        }
        var entries: [Entry] = []
        let keys = Array(consumers)
        for (index, pair) in keys.enumerated() {
            guard let mark = pair.key.mark else { continue }
            let start = mark.line - 1
            let indent = mark.column - 1
            let limit = index + 1 < keys.count ? (keys[index + 1].key.mark?.line ?? lines.count + 1) - 1 : lines.count
            let end = Self.contentEnd(lines, from: start, limit: limit, indent: indent)
            var fields: [String: (key: Node.Scalar, value: Node)] = [:]
            if case .mapping(let mapping) = pair.value {
                for (key, value) in mapping {
                    if case .scalar(let scalar) = key { fields[scalar.string] = (key: scalar, value: value) }
                }
            }
            entries.append(Entry(name: pair.key.string ?? "", start: start, end: end, indent: indent, fields: fields))
        }
        let entryIndent = entries.first?.indent ?? 2
        let firstField = entries.first?.fields.values.compactMap { $0.key.mark?.column }.min()
        let step = max(1, (firstField.map { $0 - 1 } ?? entryIndent * 2) - entryIndent)
        let end = entries.last?.end ?? consumersLine + 1
        return Parsed(lines: lines, entries: entries, end: end, consumersLine: consumersLine, emptyFlowLine: nil,
                      entryIndent: entryIndent, step: step)
    }

    /// The line after an entry's last line: the next line (before `limit`) whose content is
    /// indented no deeper than the entry, or `...`; blank lines and comments at the entry's
    /// indentation or less just before it belong to what follows.
    private static func contentEnd(_ lines: [String], from start: Int, limit: Int, indent: Int) -> Int {
        var end = start + 1
        var index = start + 1
        while index < min(limit, lines.count) {
            let line = lines[index]
            let content = line.drop { $0 == " " }
            let width = line.count - content.count
            if content.isEmpty || (content.hasPrefix("#") && width <= indent) {
                index += 1
                continue
            }
            if width <= indent || line.hasPrefix("...") || line.hasPrefix("---") { break }
            index += 1
            end = index
        }
        return end
    }

    private func pad(_ count: Int) -> String { String(repeating: " ", count: count) }

    private func join(_ lines: [String]) -> String { lines.joined(separator: "\n") }
}

private extension Node {
    var string: String? {
        if case .scalar(let scalar) = self { return scalar.string }
        return nil
    }
}
