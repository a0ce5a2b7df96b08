import Foundation
import Yams

/// Walks a composed YAML tree and collects diagnostics with positions instead of stopping at the
/// first problem, so `policy check` can report every one.
struct YAMLReader {
    let file: String
    private(set) var diagnostics: [PolicyDiagnostic] = []
    /// Risky but valid choices: printed by `policy check`, never fatal.
    private(set) var warnings: [PolicyDiagnostic] = []

    init(file: String) { self.file = file }

    func location(_ node: Node?) -> SourceLocation {
        let mark = node?.mark
        return SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    mutating func report(_ node: Node?, _ message: String) {
        diagnostics.append(PolicyDiagnostic(location(node), message))
    }

    mutating func report(at location: SourceLocation, _ message: String) {
        diagnostics.append(PolicyDiagnostic(location, message))
    }

    mutating func warn(_ node: Node?, _ message: String) {
        warnings.append(PolicyDiagnostic(location(node), message))
    }

    /// The entries of a mapping as (key, key node, value node), reporting non-string keys.
    /// Returns nil if `node` is not a mapping. An empty or null value (`key:` with nothing after
    /// it, which is also what a reader sees while an editor rewrites the file in place) is an
    /// error, never an empty mapping: a half-written file must not load with less protection.
    mutating func entries(_ node: Node, what: String, whenEmpty hint: String = "") -> [(key: String, keyNode: Node, value: Node)]? {
        guard case .mapping(let mapping) = node else {
            if isNull(node) {
                report(node, "\(what) is empty; a mapping is expected\(hint.isEmpty ? "" : " (\(hint))")")
            } else {
                report(node, "\(what) must be a mapping")
            }
            return nil
        }
        var result: [(String, Node, Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                report(keyNode, "keys in \(what) must be plain names")
                continue
            }
            result.append((scalar.string, keyNode, value))
        }
        return result
    }

    /// Reads a mapping with a closed set of keys; unknown keys are reported at the key. Returns
    /// nil when `node` is not a mapping (an empty value included), after reporting it.
    mutating func fields(_ node: Node, what: String, allowed: Set<String>, whenEmpty hint: String = "") -> [String: (keyNode: Node, value: Node)]? {
        guard let entries = entries(node, what: what, whenEmpty: hint) else { return nil }
        var fields: [String: (Node, Node)] = [:]
        for entry in entries {
            guard allowed.contains(entry.key) else {
                let guess = NearestName.closest(to: entry.key, among: allowed).map { "did you mean '\($0)'? " } ?? ""
                report(entry.keyNode, "unknown key '\(entry.key)' in \(what) (\(guess)allowed: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            fields[entry.key] = (entry.keyNode, entry.value)
        }
        return fields
    }

    func isNull(_ node: Node) -> Bool {
        if case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any {
            return scalar.string.isEmpty || scalar.string == "~" || scalar.string == "null" || scalar.string == "Null" || scalar.string == "NULL"
        }
        return false
    }

    /// A string scalar (any scalar that is not null); numbers written plainly are accepted as text.
    mutating func string(_ node: Node, what: String) -> String? {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            report(node, "\(what) must be a string")
            return nil
        }
        return scalar.string
    }

    /// An integer scalar within `range`; quoted numbers are a type error.
    mutating func integer<T: FixedWidthInteger>(_ node: Node, what: String, range: ClosedRange<T>) -> T? {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any,
              let value = T(scalar.string.replacingOccurrences(of: "_", with: ""))
        else {
            report(node, "\(what) must be an integer")
            return nil
        }
        guard range.contains(value) else {
            report(node, "\(what) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
            return nil
        }
        return value
    }

    /// A plain decimal number (`0.5`, `1.0e-7`, `5000`), with the decimal places written after the
    /// point (for fixed-point grids); quoted numbers, `.inf` and `.nan` are type errors.
    mutating func number(_ node: Node, what: String) -> (value: Double, decimals: Int)? {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else {
            report(node, "\(what) must be a number")
            return nil
        }
        let text = scalar.string.replacingOccurrences(of: "_", with: "")
        let allowed = Set("0123456789+-.eE")
        guard !text.isEmpty, text.allSatisfy({ allowed.contains($0) }), let value = Double(text), value.isFinite else {
            report(node, "\(what) must be a number")
            return nil
        }
        var decimals = 0
        if let point = text.firstIndex(of: "."), !text.contains(where: { $0 == "e" || $0 == "E" }) {
            decimals = text[text.index(after: point)...].count
        }
        return (value, decimals)
    }

    /// A scalar from a closed set of words.
    mutating func choice<T: RawRepresentable<String>>(_ node: Node, what: String, as type: T.Type, options: [String]) -> T? {
        guard let text = string(node, what: what) else { return nil }
        guard let value = T(rawValue: text) else {
            report(node, "\(what) must be one of \(options.joined(separator: ", ")), not '\(text)'\(NearestName.suggestion(for: text, among: options))")
            return nil
        }
        return value
    }
}
