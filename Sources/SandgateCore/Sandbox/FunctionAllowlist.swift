/// The SQL functions a consumer may call: SQLite's core scalar, aggregate, window, date/time, math
/// and JSON functions that reveal nothing beyond their inputs. Shared by the authorizer and (later)
/// the checker. Everything else is refused: `load_extension`, `fts3_tokenizer`, `readfile`,
/// `writefile`, `edit`, `sqlite_*` introspection, `sqlite_offset`, FTS/R-tree internals, and
/// `printf`/`format`, whose width argument can burn seconds inside one uninterruptible call
/// (DESIGN.md §2.3) until the checker can bound their arguments.
public enum FunctionAllowlist {
    public static let names: Set<String> = [
        // Core scalar functions.
        "abs", "char", "coalesce", "glob", "hex", "ifnull", "iif", "instr", "length", "like", "likelihood",
        "likely", "lower", "ltrim", "max", "min", "nullif", "quote", "random", "randomblob", "replace", "round",
        "rtrim", "sign", "substr", "substring", "trim", "typeof", "unicode", "unlikely", "upper", "zeroblob",
        // Date and time.
        "date", "time", "datetime", "julianday", "unixepoch", "strftime",
        // Aggregates (their use on aggregate tables is restricted by the checker).
        "avg", "count", "group_concat", "sum", "total",
        // Window functions.
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
        "first_value", "last_value", "nth_value",
        // Math.
        "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees",
        "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin", "sinh",
        "sqrt", "tan", "tanh", "trunc",
        // JSON (scalar and aggregate; the table-valued json_each/json_tree are not functions here).
        "json", "json_array", "json_array_length", "json_extract", "json_insert", "json_object", "json_patch",
        "json_remove", "json_replace", "json_set", "json_type", "json_valid", "json_quote",
        "json_group_array", "json_group_object",
    ]

    /// True when `name` (any case) may be called by a consumer.
    public static func allows(_ name: String) -> Bool {
        names.contains(name.lowercased())
    }
}
