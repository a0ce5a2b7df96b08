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
                    problems.append(PolicyDiagnostic(table.location, "table '\(table.name)' does not exist in the source"))
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
            let existing = Set(columns.compactMap { row -> String? in
                if case .text(let name) = row.first { return name.lowercased() }
                return nil
            })
            for column in table.columns where !existing.contains(column.name.lowercased()) {
                problems.append(PolicyDiagnostic(column.location, "column '\(column.name)' does not exist in table '\(table.name)'"))
            }
            if let unit = table.privacyUnit, !existing.contains(unit.lowercased()) {
                problems.append(PolicyDiagnostic(table.location, "privacy_unit '\(unit)' is not a column of table '\(table.name)'"))
            }
            if let filter = table.rowFilter, let location = table.rowFilterLocation {
                do {
                    guard let statement = try db.prepare("SELECT 1 FROM \(Renderer.identifier(table.name)) WHERE (\(filter))"), statement.isReadOnly else {
                        problems.append(PolicyDiagnostic(location, "row_filter is not an expression"))
                        continue
                    }
                } catch {
                    problems.append(PolicyDiagnostic(location, "row_filter does not prepare: \(error.message)"))
                }
            }
        }
        return problems
    }
}
