import NIOCore
import SandgateCore
import SandgateSQLite

/// What the state does once the work it asked for has an outcome.
enum PGContinuation: Sendable {
    /// A Parse's statement text is being prepared.
    case parse(name: String, types: [Int32], textBytes: Int)
    /// A simple query's string is being split and its statements classified.
    case simpleQuery
    /// A simple query's statement ran in the unnamed portal; these statements follow.
    case simple(remaining: ArraySlice<PGClassified>)
    case describePortal(String)
    case execute(String, maxRows: Int32)
    /// A catalog statement described by running it with NULL parameters.
    case describeCatalogStatement
    /// A data statement's columns from preparing it (no portal).
    case describeQueryStatement

    /// Waiting for `statementsPrepared`, not for work.
    var isPreparation: Bool {
        switch self {
        case .parse, .simpleQuery: true
        default: false
        }
    }

    /// The portal whose command ran.
    var portal: String? {
        switch self {
        case .parse, .simpleQuery: nil
        case .simple: ""
        case .describePortal(let name), .execute(let name, _): name
        case .describeCatalogStatement: PGProtocolState.describePortalName
        case .describeQueryStatement: nil
        }
    }
}

/// Simple and extended query (CONTRACT.md §6): statements, portals, running a portal's command
/// once, and what each message answers.
extension PGProtocolState {
    /// The portal that describes a catalog statement; a name no client can send (it holds a zero byte).
    static let describePortalName = "\u{0}describe"

    // MARK: Simple query

    /// The string is split and classified first (`prepare`), then its statements run in turn.
    mutating func simpleQuery(_ sql: String) -> [PGAction] {
        pending = .simpleQuery
        return [.prepare(PGPreparation(kind: .statements, sql: sql, session: session))]
    }

    /// The text of the pending Parse or simple query, split and classified.
    mutating func statementsPrepared(_ prepared: PGPrepared) -> [PGAction] {
        guard case .ready = phase, let continuation = pending, continuation.isPreparation else { return [] }
        pending = nil
        switch (continuation, prepared) {
        case (.parse(let name, let types, let textBytes), .statement(let classified, let parameterCount)):
            return parsed(name: name, types: types, textBytes: textBytes, classified: classified, parameterCount: parameterCount)
        case (.simpleQuery, .statements(let pieces)):
            guard let first = pieces.first else { return [.write(.emptyQuery)] + readyForQuery() }
            // Each statement runs on its own, metered and recorded, as PostgreSQL runs them; the
            // first error ends the string.
            return startSimple(first, remaining: pieces.dropFirst())
        default:
            return failExtended(PGErrorFields(code: "XX000", message: "internal: unexpected statement preparation"))
        }
    }

    /// A statement's `SET` takes effect when its turn comes, after the statements before it ran.
    private mutating func startSimple(_ piece: PGClassified, remaining: ArraySlice<PGClassified>) -> [PGAction] {
        let command = session.apply(piece)
        portals[""] = PGPortal(statement: PGStatement(command: command, parameterTypes: [], parameterCount: 0), parameters: [], resultFormats: [])
        return run(portal: "", then: .simple(remaining: remaining))
    }

    private mutating func continueSimple(remaining: ArraySlice<PGClassified>) -> [PGAction] {
        guard var portal = portals[""] else { return readyForQuery() }
        portals[""] = nil
        if let error = portal.error {
            var actions: [PGAction] = [.write(.error(PGErrorFields(error)))]
            if case .failed(let response)? = portal.rows { actions += notice(response) }
            return actions + readyForQuery()
        }
        // Simple query: RowDescription only for statements that return rows (no NoData).
        var actions: [PGAction] = []
        if let columns = portal.rows?.columns { actions.append(.write(.rowDescription(columns, binary: []))) }
        actions += sendRows(&portal, limit: .max).actions
        actions += finish(&portal)
        actions.append(.flushIfLarge)
        guard let next = remaining.first else { return actions + readyForQuery() }
        return actions + startSimple(next, remaining: remaining.dropFirst())
    }

    // MARK: Extended query

    mutating func parse(name: String, sql: String, types: [Int32]) -> [PGAction] {
        if !name.isEmpty, statements[name] != nil {
            return failExtended(PGErrorFields(code: "42P05", message: "prepared statement \"\(name)\" already exists"))
        }
        guard sql.utf8.count <= Gateway.maxSQLBytes else {
            return failExtended(PGErrorFields(GatewayError(.requestTooLarge, "the query is longer than \(Gateway.maxSQLBytes) bytes")))
        }
        // Refused before any text is prepared: a connection at its cap costs nothing by re-Parsing.
        guard statements.count < Self.maxStatements || statements[name] != nil, storedBytes(replacing: name) + sql.utf8.count <= Self.maxStatementBytes else {
            return statementCapError()
        }
        pending = .parse(name: name, types: types, textBytes: sql.utf8.count)
        return [.prepare(PGPreparation(kind: .statement, sql: sql, session: session))]
    }

    private mutating func parsed(name: String, types: [Int32], textBytes: Int, classified: PGClassified, parameterCount: Int) -> [PGAction] {
        // `$n` is any number of digits: without a bound, Describe would build a list of n types.
        guard parameterCount <= Self.maxParameters else {
            return failExtended(PGErrorFields(code: "54000", message: "a statement may have at most \(Self.maxParameters) parameters, this one names $\(parameterCount)"))
        }
        statements[name] = PGStatement(command: session.apply(classified), parameterTypes: types, parameterCount: parameterCount, textBytes: textBytes)
        return [.write(.parseComplete)]
    }

    /// Statement text kept on the connection, without the statement `name` would replace.
    private func storedBytes(replacing name: String) -> Int {
        statements.reduce(0) { $0 + ($1.key == name ? 0 : $1.value.textBytes) }
    }

    private mutating func statementCapError() -> [PGAction] {
        failExtended(PGErrorFields(code: "53400", message: "more than \(Self.maxStatements) prepared statements or \(Self.maxStatementBytes >> 20) MiB of statement text on this connection",
                                   hint: "close or DEALLOCATE statements you no longer use"))
    }

    mutating func bind(portal portalName: String, statement statementName: String, formats: [Int16], values: [ByteBuffer?], resultFormats: [Int16]) -> [PGAction] {
        guard let statement = statements[statementName] else {
            return failExtended(PGErrorFields(code: "26000", message: "prepared statement \"\(statementName)\" does not exist"))
        }
        guard formats.count <= 1 || formats.count == values.count else {
            return failExtended(PGErrorFields(code: "08P01", message: "Bind has \(formats.count) parameter formats for \(values.count) values"))
        }
        var parameters: [SQLValue] = []
        for (index, value) in values.enumerated() {
            let format = formats.isEmpty ? 0 : formats.count == 1 ? formats[0] : formats[index]
            let type = index < statement.parameterTypes.count ? statement.parameterTypes[index] : 0
            switch PGValueDecoder.decode(value, type: type, binary: format == 1) {
            case .success(let decoded): parameters.append(decoded)
            case .failure(let error): return failExtended(PGErrorFields(error))
            }
        }
        if !portalName.isEmpty, portals[portalName] != nil {
            return failExtended(PGErrorFields(code: "42P03", message: "portal \"\(portalName)\" already exists"))
        }
        guard portals.count < Self.maxPortals || portals[portalName] != nil else {
            return failExtended(PGErrorFields(code: "53400", message: "more than \(Self.maxPortals) open portals on this connection", hint: "close portals you no longer use"))
        }
        guard formats.allSatisfy({ $0 == 0 || $0 == 1 }), resultFormats.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            return failExtended(PGErrorFields(code: "08P01", message: "format codes must be 0 (text) or 1 (binary)"))
        }
        portals[portalName] = PGPortal(statement: statement, parameters: parameters, resultFormats: resultFormats)
        return [.write(.bindComplete)]
    }

    /// ParameterDescription, then the columns: prepared for a data query, run for a catalog one.
    mutating func describeStatement(_ name: String) -> [PGAction] {
        guard let statement = statements[name] else {
            return failExtended(PGErrorFields(code: "26000", message: "prepared statement \"\(name)\" does not exist"))
        }
        let count = max(statement.parameterCount, statement.parameterTypes.count)
        let types = (0..<count).map { index in
            let declared = index < statement.parameterTypes.count ? statement.parameterTypes[index] : 0
            return declared == 0 ? PGType.text.rawValue : declared
        }
        let actions: [PGAction] = [.write(.parameterDescription(types))]
        switch statement.command {
        case .query(let sql):
            pending = .describeQueryStatement
            return actions + [.run(.columns(sql: sql, purpose: session.purpose))]
        case .show(let name):
            return actions + [.write(.rowDescription([PGColumn(name: name, type: .text)], binary: []))]
        case .catalog:
            // Described by running it with NULL parameters on the catalog (it holds no data).
            portals[Self.describePortalName] = PGPortal(statement: statement, parameters: Array(repeating: .null, count: statement.parameterCount), resultFormats: [])
            return actions + run(portal: Self.describePortalName, then: .describeCatalogStatement)
        default:
            return actions + [.write(.noData)]
        }
    }

    mutating func describePortal(_ name: String) -> [PGAction] {
        guard portals[name] != nil else { return failExtended(PGErrorFields(code: "34000", message: "portal \"\(name)\" does not exist")) }
        return run(portal: name, then: .describePortal(name))
    }

    mutating func execute(_ name: String, maxRows: Int32) -> [PGAction] {
        guard portals[name] != nil else { return failExtended(PGErrorFields(code: "34000", message: "portal \"\(name)\" does not exist")) }
        return run(portal: name, then: .execute(name, maxRows: maxRows))
    }

    // MARK: Running a portal

    /// Runs the portal's command once, keeping its rows or error in the portal; work for the
    /// gateway or the catalog becomes a `.run` action and the continuation waits for its outcome.
    private mutating func run(portal name: String, then continuation: PGContinuation) -> [PGAction] {
        guard let portal = portals[name], portal.rows == nil, portal.error == nil else { return resume(continuation) }
        switch portal.statement.command {
        case .empty, .utility:
            return resume(continuation)
        case .refused(let error):
            portals[name]?.error = error
            return resume(continuation)
        case .show(let setting):
            portals[name]?.rows = .catalog(PGCatalog.Answer(columns: [PGColumn(name: setting, type: .text)], rows: [[.text(session.showValue(setting))]]))
            return resume(continuation)
        case .catalog(let sql):
            pending = continuation
            return [.run(.catalog(sql: sql, parameters: portal.parameters, purpose: session.purpose))]
        case .query(let sql):
            var bound: QueryParameters = .none
            if !portal.parameters.isEmpty {
                var named: [String: SQLValue] = [:]
                for (index, value) in portal.parameters.enumerated() { named[String(index + 1)] = value }
                bound = .named(named)
            }
            pending = continuation
            return [.run(.query(sql: sql, parameters: bound, purpose: session.purpose))]
        }
    }

    /// The answer of the message that ran the portal, now that its rows or error are known.
    mutating func resume(_ continuation: PGContinuation) -> [PGAction] {
        switch continuation {
        case .simple(let remaining): return continueSimple(remaining: remaining)
        case .describePortal(let name):
            guard let portal = portals[name] else { return [] }
            if let error = portal.error { return failExtended(PGErrorFields(error)) }
            if let mismatch = formatMismatch(portal) { return refuseFormats(name, mismatch) }
            return describe(portal)
        case .execute(let name, let maxRows): return continueExecute(name, maxRows: maxRows)
        case .describeCatalogStatement:
            guard let portal = portals.removeValue(forKey: Self.describePortalName) else { return [] }
            if let error = portal.error { return failExtended(PGErrorFields(error)) }
            return describe(portal)
        case .describeQueryStatement, .parse, .simpleQuery:
            return []
        }
    }

    private mutating func continueExecute(_ name: String, maxRows: Int32) -> [PGAction] {
        guard var portal = portals[name] else { return [] }
        if let error = portal.error {
            var actions: [PGAction] = [.write(.error(PGErrorFields(error)))]
            if case .failed(let response)? = portal.rows { actions += notice(response) }
            skipUntilSync = true
            portals[name] = nil
            return actions
        }
        if let mismatch = formatMismatch(portal) { return refuseFormats(name, mismatch) }
        let sent = sendRows(&portal, limit: maxRows > 0 ? Int(maxRows) : Int.max)
        portals[name] = portal
        guard sent.complete else { return sent.actions + [.write(.portalSuspended)] }
        let finished = finish(&portal)
        portals[name] = portal
        return sent.actions + finished
    }

    /// PostgreSQL's rule for Bind's result formats: none (text), one (for every column), or one
    /// per column. Checked once the portal ran, when its columns are known.
    private func formatMismatch(_ portal: PGPortal) -> PGErrorFields? {
        let columns = portal.rows?.columns?.count ?? 0
        guard portal.resultFormats.count > 1, portal.resultFormats.count != columns else { return nil }
        return PGErrorFields(code: "08P01", message: "bind message has \(portal.resultFormats.count) result formats but query has \(columns) columns")
    }

    /// The portal's formats do not fit its columns: the error (after the usage notice of a query
    /// that ran, which is recorded), the portal dropped, skipping to Sync.
    private mutating func refuseFormats(_ name: String, _ error: PGErrorFields) -> [PGAction] {
        var actions: [PGAction] = []
        if var portal = portals.removeValue(forKey: name), case .data(_, let response)? = portal.rows, !portal.noticed {
            portal.noticed = true
            actions += notice(response)
        }
        return actions + failExtended(error)
    }

    /// RowDescription for a portal that returns rows, else NoData (none for a failed data query).
    private func describe(_ portal: PGPortal) -> [PGAction] {
        guard let columns = portal.rows?.columns else {
            if case .query = portal.statement.command { return [] }
            return [.write(.noData)]
        }
        return [.write(.rowDescription(columns, binary: portal.binaryFormats(count: columns.count)))]
    }

    /// DataRows from the portal's cursor, at most `limit`; complete when the rows are all sent.
    private func sendRows(_ portal: inout PGPortal, limit: Int) -> (actions: [PGAction], complete: Bool) {
        guard let rows = portal.rows, let columns = rows.columns else { return ([], true) }
        let start = min(portal.cursor, rows.rowCount)
        let end = start + min(limit, rows.rowCount - start)
        portal.batch = end - start
        portal.cursor = end
        let batch = PGRowBatch(rows: rows, columns: columns, binary: portal.binaryFormats(count: columns.count), range: start..<end)
        return (start < end ? [.write(.dataRows(batch))] : [], end >= rows.rowCount)
    }

    /// CommandComplete (or EmptyQueryResponse) and the usage notice, once per query.
    private mutating func finish(_ portal: inout PGPortal) -> [PGAction] {
        let tag: String
        switch portal.statement.command {
        case .utility(let command):
            tag = command
            setTransaction(command)
        case .empty:
            return [.write(.emptyQuery)]
        case .show:
            tag = "SHOW"
        default:
            tag = "SELECT \(portal.batch)"
        }
        // One usage notice per query, when its last rows have gone out.
        var actions: [PGAction] = []
        if case .data(_, let response)? = portal.rows, !portal.noticed { actions += notice(response) }
        portal.noticed = true
        return actions + [.write(.commandComplete(tag))]
    }
}
