/// Statement text to tokenize, translate and classify (CONTRACT.md §6): a cost that grows with
/// the text, so the handler does it off the event loop for all but short texts and feeds the
/// result to the state with `statementsPrepared`. Pure: the settings are a copy, and what a
/// statement's `SET` changes comes back in the result, applied by the state in turn.
struct PGPreparation: Sendable {
    enum Kind: Sendable {
        /// A Parse's statement: one statement, and the highest `$n` it names.
        case statement
        /// A simple query's string: statements split at semicolons outside strings and comments.
        case statements
    }

    let kind: Kind
    let sql: String
    /// The session's names (consumer, dataset) that catalog translation uses.
    let session: PGSessionSettings

    /// The bytes of statement text.
    var textBytes: Int { sql.utf8.count }

    func prepare() -> PGPrepared {
        switch kind {
        case .statement:
            let tokens = PGDialect.tokenize(sql)
            return .statement(session.classify(tokens: tokens, sql: sql), parameterCount: PGSessionSettings.parameterCount(tokens))
        case .statements:
            return .statements(PGDialect.statementTokens(sql).map { session.classify(tokens: $0, sql: PGDialect.render($0)) })
        }
    }
}

/// What came of a `PGPreparation`.
enum PGPrepared: Sendable {
    case statement(PGClassified, parameterCount: Int)
    case statements([PGClassified])
}
