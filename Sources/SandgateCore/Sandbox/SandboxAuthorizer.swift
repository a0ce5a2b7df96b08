import SandgateSQLite

/// Why the authorizer refused a statement; turned into the consumer's error code.
enum AuthorizerDenial: Equatable {
    case noSuchTable(String)
    case aggregateRequired(String)
    case functionNotAllowed(String)
    case notASelect(String)
}

/// The second layer (DESIGN.md §2.3): deny by default. Allowed are SELECT, recursive CTEs, reads of
/// sandgate's own views, reads of the snapshot's base tables only from inside sandgate's view for
/// that table, allowlisted functions, and sandgate's internal functions only inside its views.
///
/// One instance per sandbox connection; it records the first denial of the statement being
/// prepared so the gateway can report the right code.
final class SandboxAuthorizer {
    /// Lower-cased names of sandgate's views (= the visible tables).
    let viewNames: Set<String>
    /// Lower-cased names of visible tables with `access: aggregate`.
    let aggregateTables: Set<String>
    /// The attached snapshot's schema name.
    let snapshotSchema: String
    /// Prefix of sandgate's internal function names (lower-cased).
    let internalFunctionPrefix: String
    private(set) var firstDenial: AuthorizerDenial?
    /// Set for statements the checker approved as aggregate queries (with thresholds); otherwise
    /// reads of aggregate tables are refused here too.
    private var allowAggregateTables = false
    /// Set for statements whose plan calls sandgate's internal plan functions (`__sg_tally`,
    /// `__sg_packed`); the checker never lets a consumer name them.
    private var allowPlanFunctions = false

    init(viewNames: Set<String>, aggregateTables: Set<String>, snapshotSchema: String, internalFunctionPrefix: String) {
        self.viewNames = viewNames
        self.aggregateTables = aggregateTables
        self.snapshotSchema = snapshotSchema
        self.internalFunctionPrefix = internalFunctionPrefix
    }

    func reset(allowAggregateTables: Bool, allowPlanFunctions: Bool) {
        firstDenial = nil
        self.allowAggregateTables = allowAggregateTables
        self.allowPlanFunctions = allowPlanFunctions
    }

    private func deny(_ denial: AuthorizerDenial) -> AuthorizerDecision {
        if firstDenial == nil { firstDenial = denial }
        return .deny
    }

    func decide(_ request: AuthorizerRequest) -> AuthorizerDecision {
        switch request.action {
        case .select, .recursive:
            return .allow
        case .read:
            let table = (request.first ?? "").lowercased()
            let database = request.database ?? ""
            let view = request.innermostView?.lowercased()
            // No schema: a CTE or subquery of the query itself, already authorized column by column.
            if database.isEmpty { return .allow }
            if database == "temp" {
                return viewNames.contains(table) ? .allow : deny(.noSuchTable(request.first ?? ""))
            }
            // The snapshot's base tables are readable only while SQLite expands sandgate's view of
            // the same name; a consumer cannot name that schema, so it cannot write such a CTE.
            if database == snapshotSchema, viewNames.contains(table) {
                // After SQLite flattens sandgate's view into the query it may ask once more, with an
                // empty column and no view context, for a table whose columns the query does not
                // use (`SELECT 1 FROM t`): that reveals no value, and the consumer cannot name the
                // snapshot schema to ask for it directly.
                let fromOwnView = view == table
                let valueless = (request.second ?? "").isEmpty
                if fromOwnView || valueless {
                    return aggregateTables.contains(table) && !allowAggregateTables ? deny(.aggregateRequired(request.first ?? "")) : .allow
                }
            }
            return deny(.noSuchTable(request.first ?? ""))
        case .function:
            let name = (request.second ?? "").lowercased()
            if name.hasPrefix(internalFunctionPrefix) {
                if let view = request.innermostView?.lowercased(), viewNames.contains(view) { return .allow }
                return deny(.functionNotAllowed(request.second ?? ""))
            }
            if name == PlanCounters.tally || name == PlanCounters.packed {
                return allowPlanFunctions ? .allow : deny(.functionNotAllowed(request.second ?? ""))
            }
            // printf/format pass here only because the checker admitted their literal, small widths.
            if FunctionAllowlist.allows(name) || FunctionRules.boundedFunctions.contains(name) { return .allow }
            return deny(.functionNotAllowed(request.second ?? ""))
        case .pragma:
            return deny(.notASelect("PRAGMA"))
        case .attach:
            return deny(.notASelect("ATTACH/DETACH"))
        case .write:
            return deny(.notASelect("a write"))
        case .transaction:
            return deny(.notASelect("a transaction statement"))
        case .other:
            return deny(.notASelect("a schema or maintenance statement"))
        }
    }
}
