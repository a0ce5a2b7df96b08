import SandgatePolicy

/// Errors that say what would work (issue 11): the nearest known name to a misspelt one, and
/// whether an unknown function exists in SQLite at all.
enum Suggestions {
    /// The candidate closest to `name` (see `NearestName`).
    static func closest(to name: String, among candidates: [String]) -> String? {
        NearestName.closest(to: name, among: candidates)
    }

    /// "did you mean x? " or "".
    static func didYouMean(_ name: String, among candidates: [String]) -> String {
        closest(to: name, among: candidates).map { "did you mean \($0)? " } ?? ""
    }

    /// The hint for a table that is not in the consumer's view.
    static func tableHint(_ name: String, policy: DatasetPolicy) -> String {
        didYouMean(name, among: policy.tables.map(\.name)) + "tables here: " + policy.tables.map(\.name).joined(separator: ", ")
    }

    /// SQLite functions that exist but are not offered here (refused as `function_not_allowed`);
    /// any other unknown name is `no_such_function`.
    static let sqliteFunctionsNotOffered: Set<String> = [
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "sqlite_version", "sqlite_source_id",
        "sqlite_compileoption_used", "sqlite_compileoption_get", "sqlite_offset", "changes", "total_changes",
        "last_insert_rowid", "soundex", "octet_length", "unhex", "concat", "concat_ws", "string_agg", "timediff",
        "json_each", "json_tree", "jsonb", "highlight", "snippet", "bm25", "matchinfo", "offsets", "optimize",
        "rtreecheck", "fts5", "likelihood", "zeroblob",
    ]

    /// The error for a function the allowlist does not hold.
    static func functionError(_ call: String) -> GatewayError {
        let name = call.lowercased()
        if sqliteFunctionsNotOffered.contains(name) || FunctionAllowlist.allows(name) {
            return GatewayError(.functionNotAllowed, "function \(call)() is not allowed: \(FunctionCatalogue.reason(forRefused: name))",
                                hint: "`sandgate describe --functions` lists the functions you can call")
        }
        let known = Array(FunctionAllowlist.names) + Array(FunctionRules.boundedFunctions)
        var hint = didYouMean(call, among: known)
        if ["median", "percentile", "stddev", "variance", "mode"].contains(name) {
            hint += "SQLite has no \(name)(); compute it from count, sum and avg, or ask the data holder for a measure. "
        }
        return GatewayError(.noSuchFunction, "no such function: \(call)()", hint: hint + "`sandgate describe --functions` lists the functions you can call")
    }
}
