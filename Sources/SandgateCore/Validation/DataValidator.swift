import Foundation
import SandgatePolicy
import SandgateSQL
import SandgateSQLite

/// Checks a structurally valid policy against the data it publishes: every listed table exists
/// (as a table, not a view), every listed column exists, the privacy unit exists, and the row
/// filter prepares. Problems point at the policy line that names the missing thing.
public enum DataValidator {
    /// Validates `policy` against the SQLite file at `databasePath` (the source or its snapshot).
    public static func validate(_ policy: DatasetPolicy, databasePath: String) -> [PolicyDiagnostic] {
        let db: Connection
        do {
            db = try Connection(path: databasePath, mode: .readOnly)
        } catch {
            return [PolicyDiagnostic(policy.sourceLocation, "cannot open source: \(error.message)")]
        }
        var problems: [PolicyDiagnostic] = []
        for table in policy.tables {
            let kind: String
            do {
                guard case .text(let type) = try db.scalar(
                    "SELECT type FROM sqlite_schema WHERE name = ? COLLATE NOCASE AND type IN ('table', 'view')",
                    [.text(table.name)]) else {
                    let tables = (try? db.rows("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")) ?? []
                    let names = tables.compactMap { row -> String? in if case .text(let name) = row.first { name } else { nil } }
                    problems.append(PolicyDiagnostic(table.location, "table '\(table.name)' does not exist in the source\(NearestName.suggestion(for: table.name, among: names))"))
                    continue
                }
                kind = type
            } catch {
                problems.append(PolicyDiagnostic(policy.sourceLocation, "cannot read the source schema: \(error.message)"))
                return problems
            }
            guard kind == "table" else {
                problems.append(PolicyDiagnostic(table.location, "'\(table.name)' is a view in the source; only tables can be published"))
                continue
            }
            let columns = (try? db.rows("SELECT name FROM pragma_table_info(?)", [.text(table.name)])) ?? []
            let names = columns.compactMap { row -> String? in
                if case .text(let name) = row.first { return name }
                return nil
            }
            let existing = Set(names.map { $0.lowercased() })
            for column in table.columns where !existing.contains(column.name.lowercased()) {
                problems.append(PolicyDiagnostic(column.location,
                    "column '\(column.name)' does not exist in table '\(table.name)'\(NearestName.suggestion(for: column.name, among: names))"))
            }
            if let unit = table.privacyUnit, !existing.contains(unit.lowercased()) {
                problems.append(PolicyDiagnostic(table.location, "privacy_unit '\(unit)' is not a column of table '\(table.name)'"))
            }
            // δ is the chance that one person's key is released: at δ ≥ 1/units, releasing one
            // person outright on every query would still meet it.
            if let privacy = table.privacy, let unit = table.privacyUnit, existing.contains(unit.lowercased()),
               case .integer(let units)? = try? db.scalar("SELECT count(DISTINCT \(Renderer.identifier(unit))) FROM \(Renderer.identifier(table.name))"),
               units > 0, privacy.delta >= 1 / Double(units) {
                problems.append(PolicyDiagnostic(privacy.location, "privacy: delta \(privacy.delta) is not below 1/\(units) (one over the number of distinct \(unit) values): it would allow releasing one person's data outright"))
            }
            if let filter = table.rowFilter, let location = table.rowFilterLocation {
                do {
                    guard let statement = try db.prepare("SELECT 1 FROM \(Renderer.identifier(table.name)) WHERE (\(filter))"), statement.isReadOnly else {
                        problems.append(PolicyDiagnostic(location, "row_filter is not an expression"))
                        continue
                    }
                } catch {
                    // A syntax error: our own parser says what it expected, at the filter's own
                    // line and column (SQLite points at the parenthesis sandgate wraps it in).
                    do throws(SQLSyntaxError) {
                        _ = try Parser.parseExpression(filter)
                    } catch let syntax {
                        problems.append(PolicyDiagnostic(rowFilterPosition(syntax.position, in: filter, from: location), "row_filter: \(syntax.message)"))
                        continue
                    }
                    var message = "row_filter does not prepare: \(error.message)"
                    if let missing = error.message.range(of: "no such column: ").map({ String(error.message[$0.upperBound...]) }) {
                        message += NearestName.suggestion(for: missing, among: names)
                    }
                    problems.append(PolicyDiagnostic(location, message))
                }
            }
        }
        return problems
    }

    /// The file position of a parser position inside a row filter that starts at `start` (exact
    /// for filters on one line without escapes, which is how they are written); the end of the
    /// filter when the parser ran out of text.
    static func rowFilterPosition(_ position: SourcePosition?, in filter: String, from start: SourceLocation) -> SourceLocation {
        guard let position else {
            let lines = filter.split(separator: "\n", omittingEmptySubsequences: false)
            let lastLength = lines.last.map { $0.unicodeScalars.count } ?? 0
            return SourceLocation(file: start.file, line: start.line + lines.count - 1, column: (lines.count == 1 ? start.column : 1) + lastLength)
        }
        return SourceLocation(file: start.file, line: start.line + position.line - 1,
                              column: position.line == 1 ? start.column + position.column - 1 : position.column)
    }
}
