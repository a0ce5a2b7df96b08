import Foundation
import SandgatePolicy
import SandgateSQL
import SandgateSQLite

/// The outcome of one policy test case.
public struct PolicyTestResult: Sendable {
    public let dataset: String
    public let testCase: PolicyTestCase
    /// What went wrong, in words; nil when the case passed.
    public let failure: String?
    /// What happened (`allowed: 20 rows` or `refused: no_such_column: …`), for the report.
    public let actual: String

    public var passed: Bool { failure == nil }
}

/// Runs a data holder's test cases through `Gateway.run`, the path every consumer's query takes,
/// so a case sees exactly what that consumer would: grants, limits, masks, filters, thresholds.
public enum PolicyTestRunner {
    /// The alias of the distinct-unit count added to measure group sizes (`min_group_size`).
    static let unitsAlias = "sg_policy_test_units"

    /// Runs every case of `file` against `gateway` (whose ledger records the queries).
    public static func run(_ file: PolicyTestFile, gateway: Gateway) -> [PolicyTestResult] {
        file.cases.map { run($0, dataset: file.dataset, gateway: gateway) }
    }

    static func run(_ testCase: PolicyTestCase, dataset: String, gateway: Gateway) -> PolicyTestResult {
        func result(_ failure: String?, _ actual: String) -> PolicyTestResult {
            PolicyTestResult(dataset: dataset, testCase: testCase, failure: failure, actual: actual)
        }
        guard let runtime = gateway.runtime(dataset) else {
            return result("dataset '\(dataset)' is not available", "the policy did not load (see `sandgate policy check`)")
        }
        let response = gateway.run(QueryRequest(consumer: testCase.consumer, dataset: dataset, sql: testCase.query, purpose: testCase.purpose))
        let actual: String
        switch response.outcome {
        case .failure(let error): actual = "refused: \(error.code.rawValue): \(error.message)"
        case .success(let answer): actual = "allowed: \(answer.rowCount) row(s)\(response.truncated ? ", truncated" : "")"
        }
        switch testCase.expectation {
        case .refuse(let code):
            guard let error = response.error else { return result("expected a refusal with \(code)", actual) }
            return result(error.code.rawValue == code ? nil : "expected \(code), got \(error.code.rawValue)", actual)
        case .allow(let expected):
            guard let answer = response.result else { return result("expected the query to be allowed", actual) }
            let failures = check(answer, truncated: response.truncated, against: expected, testCase: testCase, dataset: dataset,
                                 runtime: runtime, gateway: gateway)
            return result(failures.isEmpty ? nil : failures.joined(separator: "; "), actual)
        }
    }

    static func check(_ answer: QueryResult, truncated: Bool, against expected: PolicyTestCase.Allowed, testCase: PolicyTestCase,
                      dataset: String, runtime: DatasetRuntime, gateway: Gateway) -> [String] {
        var failures: [String] = []
        let columns = answer.columns.map { $0.lowercased() }
        func index(of name: String) -> Int? {
            guard let index = columns.firstIndex(of: name.lowercased()) else {
                failures.append("no output column '\(name)' (columns: \(answer.columns.joined(separator: ", ")))")
                return nil
            }
            return index
        }
        if !expected.masked.isEmpty || !expected.unmasked.isEmpty {
            let masked = (try? runtime.prepare(testCase.query).get())?.plan.maskedOutputs ?? []
            for name in expected.masked {
                if let column = index(of: name), !(column < masked.count && masked[column]) {
                    failures.append("column '\(name)' is not masked")
                }
            }
            for name in expected.unmasked {
                if let column = index(of: name), column < masked.count, masked[column] {
                    failures.append("column '\(name)' is masked")
                }
            }
        }
        let rows = answer.rows
        for (name, pattern) in expected.values {
            guard let column = index(of: name), let regex = try? NSRegularExpression(pattern: pattern) else { continue }
            // Values are the holder's data: the report says which row, never the value itself.
            for (number, row) in rows.enumerated() {
                guard let text = row[column].textForm else { continue }
                let range = NSRange(text.startIndex..., in: text)
                if regex.firstMatch(in: text, range: range) == nil {
                    failures.append("row \(number + 1): the value of '\(name)' does not match '\(pattern)'")
                    break
                }
            }
        }
        if let maxRows = expected.maxRows, rows.count > maxRows {
            failures.append("\(rows.count) rows came back, more than \(maxRows)")
        }
        if let expectedTruncated = expected.truncated, truncated != expectedTruncated {
            failures.append(expectedTruncated ? "the result was not truncated" : "the result was truncated")
        }
        if let minimum = expected.minGroupSize {
            failures += groupSizeFailures(minimum: minimum, testCase: testCase, dataset: dataset, runtime: runtime, gateway: gateway)
        }
        return failures
    }

    /// Runs the query again with `count(DISTINCT <privacy unit>)` added to its outputs (a form the
    /// release model allows) and checks every released row against `minimum`: the count is
    /// SQLite's, not the planner's threshold, so a lowered threshold shows up as a failure.
    static func groupSizeFailures(minimum: Int, testCase: PolicyTestCase, dataset: String, runtime: DatasetRuntime,
                                  gateway: Gateway) -> [String] {
        guard var select = try? Parser.parseSelect(testCase.query), case .core(var core) = select.body,
              let from = core.from, let unit = unitColumn(in: from, policy: runtime.policy) else {
            return ["min_group_size applies to one SELECT that reads an aggregate table"]
        }
        let count = FunctionCall(name: "count", distinct: true, star: false, arguments: [.column(unit)], filter: nil, over: nil)
        core.columns.append(.expr(.function(count), alias: unitsAlias, span: ""))
        select.body = .core(core)
        let response = gateway.run(QueryRequest(consumer: testCase.consumer, dataset: dataset, sql: Renderer.render(select), purpose: testCase.purpose))
        guard let answer = response.result, let column = answer.columns.lastIndex(of: unitsAlias) else {
            return ["cannot measure group sizes: \(response.error.map { "\($0.code.rawValue): \($0.message)" } ?? "no count came back")"]
        }
        for (number, row) in answer.rows.enumerated() {
            guard case .integer(let units) = row[column], units >= minimum else {
                return ["row \(number + 1) stands for \(row[column].textForm ?? "NULL") distinct individuals, fewer than \(minimum)"]
            }
        }
        return []
    }

    /// The privacy unit of the aggregate table in a FROM clause, qualified as the query names it.
    static func unitColumn(in from: FromItem, policy: DatasetPolicy) -> ColumnReference? {
        switch from {
        case .table(let name, _, let alias, _):
            guard let table = policy.table(named: name), table.access == .aggregate, let unit = table.privacyUnit else { return nil }
            return ColumnReference(schema: nil, table: alias ?? name, column: unit)
        case .join(let left, _, let right, _):
            return unitColumn(in: left, policy: policy) ?? unitColumn(in: right, policy: policy)
        case .group(let inner):
            return unitColumn(in: inner, policy: policy)
        case .tableFunction, .subquery:
            return nil
        }
    }
}

extension SQLValue {
    /// The value as text for matching (numbers in SQLite's spelling); nil for NULL.
    var textForm: String? {
        switch self {
        case .null: nil
        case .integer(let number): String(number)
        case .real(let number): "\(number)"
        case .text(let text): text
        case .blob(let bytes): bytes.map { String(format: "%02x", $0) }.joined()
        }
    }
}
