import SandgateSQL

/// The lexical gate in front of SQLite until the full parser and checker exist: the text must be
/// one SELECT/WITH/VALUES statement, must not qualify names with a schema, and must not name a
/// table or view of the source that the policy does not publish (so error messages never reveal
/// that such an object exists). The authorizer enforces the policy again underneath.
struct Precheck {
    /// Lower-cased names of snapshot objects the consumer must not learn about.
    let hiddenObjects: Set<String>
    /// Lower-cased names of visible columns; a hidden object with such a name is left to the
    /// authorizer, so that the column stays usable.
    let visibleColumns: Set<String>

    static let schemaNames: Set<String> = ["main", "temp", "sqlite_temp_schema", "sqlite_temp_master"]

    func check(_ sql: String) -> GatewayError? {
        let tokens: [Token]
        do {
            tokens = try Lexer.tokenize(sql)
        } catch {
            return GatewayError(.syntaxError, "\(error.message) at \(error.position)")
        }
        guard let first = tokens.first else {
            return GatewayError(.syntaxError, "the query is empty")
        }
        guard first.isWord("SELECT") || first.isWord("WITH") || first.isWord("VALUES") || first.isSymbol("(") else {
            return GatewayError(.notASelect, "only SELECT queries are allowed, not \(first.value.uppercased())",
                                hint: "send one SELECT (or WITH … SELECT) statement")
        }
        for (index, token) in tokens.enumerated() {
            if token.isSymbol(";") {
                if tokens[(index + 1)...].contains(where: { !$0.isSymbol(";") }) {
                    return GatewayError(.notASelect, "only one statement per request is allowed (\(token.position))")
                }
                continue
            }
            guard token.kind == .word || token.kind == .quotedIdentifier else { continue }
            let name = token.value.lowercased()
            let qualifies = index + 1 < tokens.count && tokens[index + 1].isSymbol(".")
            if qualifies, Self.schemaNames.contains(name) {
                return GatewayError(.noSuchTable, "no such table: \(token.value).\(index + 2 < tokens.count ? tokens[index + 2].value : "")",
                                    hint: "write table names without a schema")
            }
            let calls = index + 1 < tokens.count && tokens[index + 1].isSymbol("(")
            // sqlite_*() functions are left to the authorizer, which refuses them as functions.
            if (name.hasPrefix("sqlite_") && !calls) || name.hasPrefix("pragma_") || (hiddenObjects.contains(name) && !visibleColumns.contains(name)) {
                return GatewayError(.noSuchTable, "no such table: \(token.value)", hint: "`sandgate describe` lists the tables you can query")
            }
        }
        return nil
    }
}
