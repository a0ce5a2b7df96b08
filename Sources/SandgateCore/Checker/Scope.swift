import SandgatePolicy
import SandgateSQL

/// One column of a relation in scope, with what the checker needs to know about where it came from.
struct RelationColumn {
    let name: String
    /// Derived from a masked (or tokenised) column somewhere below.
    let masked: Bool
    /// Set when the column is a base column of a published table, read directly.
    let table: TablePolicy?
    let policy: ColumnPolicy?
}

/// A table, CTE or subquery in a FROM clause, under the name the query uses for it.
struct Relation {
    /// The alias, or the table/CTE name.
    let name: String
    let columns: [RelationColumn]
    /// The published table behind it, when it is one.
    let table: TablePolicy?
    /// Columns merged by USING/NATURAL are reported once for `*`.
    var hiddenFromStar: Set<String> = []

    func column(_ name: String) -> RelationColumn? {
        columns.first { equalNames($0.name, name) }
    }
}

/// A column reference resolved to its relation.
struct ResolvedColumn {
    let relation: Relation
    let column: RelationColumn
    /// 0 for the current SELECT, 1 for the enclosing one, …
    let depth: Int
}

/// Names visible at one point of a query: FROM relations of this SELECT and the enclosing ones,
/// result-column aliases, and common table expressions.
final class Scope {
    var relations: [Relation] = []
    /// Result aliases, usable in WHERE, GROUP BY, HAVING and ORDER BY as in SQLite.
    var aliases: [(name: String, info: ExprInfo)] = []
    var commonTables: [String: Relation] = [:]
    let parent: Scope?

    init(parent: Scope?) {
        self.parent = parent
    }

    func commonTable(_ name: String) -> Relation? {
        if let found = commonTables.first(where: { equalNames($0.key, name) })?.value { return found }
        return parent?.commonTable(name)
    }
}

/// What the checker learned about an expression.
struct ExprInfo {
    var masked = false
    var containsAggregate = false
    var containsWindow = false
    var columns: [ResolvedColumn] = []

    mutating func merge(_ other: ExprInfo) {
        masked = masked || other.masked
        containsAggregate = containsAggregate || other.containsAggregate
        containsWindow = containsWindow || other.containsWindow
        columns += other.columns
    }
}
