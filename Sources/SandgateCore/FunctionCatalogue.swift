/// The functions a consumer can call, as text for people: `sandgate describe --functions` prints
/// it and the analyst guide carries the same block (a test keeps them equal), so the list has one
/// source of truth — the allowlist the authorizer and the checker enforce.
public enum FunctionCatalogue {
    /// Every function a query on a rows table may call, sorted.
    public static var callable: [String] {
        FunctionAllowlist.names.union(FunctionRules.boundedFunctions).sorted()
    }

    /// The functions stage 1 of an aggregate plan allows in WHERE and GROUP BY, sorted.
    public static var stageOne: [String] {
        StageOneFunctions.arities.keys.sorted()
    }

    /// The Markdown block of the analyst guide (also what `describe --functions` prints).
    public static var text: String {
        """
        - Functions you can call (SQLite's): \(callable.map { "`\($0)`" }.joined(separator: ", ")).
        - `printf` and `format` need a literal format string, widths and precisions up to \(FunctionRules.maximumWidth) and no `*`.
        - In WHERE and GROUP BY of a query on an aggregate table, only: \(stageOne.map { "`\($0)`" }.joined(separator: ", ")) \
        (`strftime` with a literal format of at most \(StageOneFunctions.maximumFormatBytes) bytes; no `'now'`).
        - Aggregates on aggregate tables: `count(*)`, `count(DISTINCT <privacy unit>)` and those `describe` lists for each measure.

        """
    }

    /// Why a function SQLite has is not offered, in words, for `function_not_allowed`.
    static func reason(forRefused name: String) -> String {
        switch name.lowercased() {
        case "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer":
            "it reaches files or memory outside the query"
        case let name where name.hasPrefix("sqlite_") && name != "sqlite_offset":
            "it describes the server, not the data"
        case "sqlite_offset":
            "it reveals where rows are stored"
        case "changes", "total_changes", "last_insert_rowid":
            "it reports on writes, and queries here never write"
        case "json_each", "json_tree":
            "table-valued functions are not offered"
        case "printf", "format":
            "its format must be a literal string with small widths"
        default:
            "this gateway does not offer it"
        }
    }
}
