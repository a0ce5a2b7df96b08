import SandgatePolicy
import SandgateSQL
import SandgateSQLite

/// What the aggregate planner knows about a snapshot's data, measured once when the snapshot is
/// taken (DESIGN.md §3): the tables' sizes (the consumer's metered steps depend on these, never on
/// the rows a query happens to touch), the column sets each table is unique on (a table joined to
/// an aggregate table must be, so that no aggregate row is counted twice), and the measures whose
/// integer `sum` could overflow (SQLite raises an error then, so the planner sums them in parts).
public struct SnapshotFacts: Sendable, Equatable {
    /// Rows of each published table, before its row filter (lower-cased name).
    public var rowCounts: [String: Int64]
    /// Column sets (lower-cased) each published table is unique on: its primary key, INTEGER
    /// PRIMARY KEY and full unique indexes.
    public var uniqueKeys: [String: [Set<String>]]
    /// `table.column` (lower-cased) of measures whose integer sum can pass 2⁶³ − 1.
    public var overflowingSums: Set<String>
    /// Declared type of each column of each published table (lower-cased names): for `describe`
    /// and for front ends that type their columns (PostgreSQL's catalog).
    public var declaredTypes: [String: [String: String]]

    public init(rowCounts: [String: Int64] = [:], uniqueKeys: [String: [Set<String>]] = [:], overflowingSums: Set<String> = [],
                declaredTypes: [String: [String: String]] = [:]) {
        self.rowCounts = rowCounts
        self.uniqueKeys = uniqueKeys
        self.overflowingSums = overflowingSums
        self.declaredTypes = declaredTypes
    }

    /// Reads the facts of every published table of `policy` from the snapshot at `path`.
    public static func measure(_ policy: DatasetPolicy, snapshotPath path: String) throws(SQLiteError) -> SnapshotFacts {
        let db = try Connection(path: path, mode: .readOnlyImmutable)
        var facts = SnapshotFacts()
        for table in policy.tables {
            let name = table.name.lowercased()
            let quoted = Renderer.identifier(table.name)
            if case .integer(let count)? = try db.rows("SELECT count(*) FROM \(quoted)").first?.first {
                facts.rowCounts[name] = count
            }
            facts.uniqueKeys[name] = try uniqueKeys(of: table.name, in: db)
            var types: [String: String] = [:]
            for row in try db.rows("SELECT name, type FROM pragma_table_info(?)", [.text(table.name)]) {
                if row.count == 2, case .text(let column) = row[0], case .text(let type) = row[1] { types[column.lowercased()] = type }
            }
            facts.declaredTypes[name] = types
            for column in table.columns where column.role == .measure && column.aggregates.contains("sum") {
                let measure = Renderer.identifier(column.name)
                let row = try db.rows("SELECT min(\(measure)), max(\(measure)), count(\(measure)) FROM \(quoted)").first ?? []
                guard row.count == 3, case .integer(let count) = row[2] else { continue }
                var largest = 0.0
                for value in row.prefix(2) {
                    if case .integer(let number) = value { largest = max(largest, Double(number).magnitude) }
                }
                // Text that looks like a number also sums as an integer: when in doubt, split.
                if largest * Double(count) >= 9.0e18 || row.prefix(2).contains(where: { if case .text = $0 { true } else { false } }) {
                    facts.overflowingSums.insert("\(name).\(column.name.lowercased())")
                }
            }
        }
        return facts
    }

    static func uniqueKeys(of table: String, in db: Connection) throws(SQLiteError) -> [Set<String>] {
        var keys: [Set<String>] = []
        let columns = try db.rows("SELECT name, type, pk FROM pragma_table_info(?)", [.text(table)])
        let primary = columns.filter { if case .integer(let pk) = $0[2] { pk > 0 } else { false } }
        if primary.count == 1, case .text(let type) = primary[0][1], type.uppercased() == "INTEGER", case .text(let name) = primary[0][0] {
            keys.append([name.lowercased()])
        }
        for index in try db.rows("SELECT name, \"unique\", partial FROM pragma_index_list(?)", [.text(table)]) {
            guard index.count == 3, case .text(let indexName) = index[0], index[1] == .integer(1), index[2] == .integer(0) else { continue }
            let parts = try db.rows("SELECT name FROM pragma_index_info(?)", [.text(indexName)])
            var key: Set<String> = []
            var expression = false
            for part in parts {
                if case .text(let name) = part.first { key.insert(name.lowercased()) } else { expression = true }
            }
            if !expression, !key.isEmpty { keys.append(key) }
        }
        return keys
    }
}
