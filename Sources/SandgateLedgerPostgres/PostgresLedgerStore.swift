import Crypto
import Foundation
import Logging
import PostgresNIO
import SandgateLedger

/// The usage ledger in PostgreSQL, shared by many gateway nodes (docs/CONTRACT.md §7).
///
/// Each node appends to its own keyed chain (`usage` rows with its `node_id`), so nodes never
/// wait for each other per record: a batch locks only its node's anchor row (`usage_nodes`),
/// inserts its records, charges their quota holds and moves the anchor, in one transaction.
/// Quota holds are rows of `usage_reservations`, decided under a transaction-scoped advisory
/// lock per consumer × dataset, so quotas are exact across every node sharing the database.
///
/// `@unchecked Sendable`: the writer session is used only by the writer thread (`GroupCommit`),
/// other sessions are lent by `PostgresConnector` to one caller at a time, and `anchorProblem`
/// is read and written only under `anchorLock`.
public final class PostgresLedgerStore: LedgerStore, @unchecked Sendable {
    public let url: PostgresLedgerURL
    public let nodeID: String
    private let key: SymmetricKey
    private let connector: PostgresConnector
    private let committer: GroupCommit
    /// The writer thread's own session, reconnected when it breaks.
    private var writerSession: PostgresSession?
    private let anchorLock = NSLock()
    private var anchorProblem: String?
    /// How long a hold counts when its node never charges or releases it (a crash).
    static let holdLifetime = "5 minutes"

    /// Connects, creates the tables when missing and registers `nodeID`'s chain. The key (the
    /// same file on every node: `usage verify` checks every node's chain with it) is read from
    /// `keyPath`, or created there.
    public init(url: PostgresLedgerURL, nodeID: String, keyPath: String, logger: Logger = Logger(label: "sandgate.ledger")) throws(LedgerError) {
        guard !nodeID.isEmpty, nodeID.utf8.count <= UsageRecord.nameLimit else {
            throw LedgerError("the node id must be 1 to \(UsageRecord.nameLimit) bytes")
        }
        self.url = url
        self.nodeID = nodeID
        key = try LedgerKey.loadOrCreate(path: keyPath).0
        connector = PostgresConnector(url: url, logger: logger)
        committer = GroupCommit(name: "sandgate-ledger-pg")
        try connector.withSession { session throws(LedgerError) in
            try Self.createSchema(session)
            try session.run(
                "INSERT INTO usage_nodes (node_id, seq, hash, mac) VALUES ($1, 0, $2, $3) ON CONFLICT (node_id) DO NOTHING",
                Self.binds(nodeID, HashChain.genesisHash, anchorMAC(seq: 0, hash: HashChain.genesisHash)))
            anchorProblem = try checkAnchor(session, node: nodeID)
        }
        committer.configure(owner: self, commit: { [unowned self] batch in commit(batch) })
    }

    deinit { connector.closeAll() }

    public var anchorFailure: String? {
        anchorLock.lock()
        defer { anchorLock.unlock() }
        return anchorProblem
    }

    public var pendingCount: Int { committer.pendingCount }

    // MARK: Schema

    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS usage (
            node_id text NOT NULL, seq bigint NOT NULL,
            query_id text NOT NULL, started_at bigint NOT NULL, finished_at bigint NOT NULL,
            consumer text NOT NULL, dataset text NOT NULL, dataset_version text NOT NULL,
            policy_version text NOT NULL, status text NOT NULL, error_code text NOT NULL,
            rows bigint NOT NULL, cells bigint NOT NULL, bytes bigint NOT NULL,
            masked_cells bigint NOT NULL, suppressed_groups bigint NOT NULL, truncated boolean NOT NULL,
            vm_steps bigint NOT NULL, elapsed_us bigint NOT NULL, cost_micros bigint NOT NULL,
            currency text NOT NULL, sql_sha256 text NOT NULL, prev_hash text NOT NULL,
            record_hash text NOT NULL, sql text NOT NULL, rewritten_sql text NOT NULL,
            chain integer NOT NULL,
            PRIMARY KEY (node_id, seq)
        )
        """,
        // Chain version 3's fields; a ledger created before them reads them as empty.
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT ''",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS epsilon_micros bigint NOT NULL DEFAULT 0",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS client_address text NOT NULL DEFAULT ''",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS holder text NOT NULL DEFAULT ''",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS holder_share_ppm bigint NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS usage_by_consumer_day ON usage (consumer, dataset, started_at)",
        "CREATE INDEX IF NOT EXISTS usage_by_time ON usage (started_at)",
        "CREATE INDEX IF NOT EXISTS usage_by_query_id ON usage (query_id)",
        // Each node's chain tail, MACed under the ledger key: the anchor of that chain.
        "CREATE TABLE IF NOT EXISTS usage_nodes (node_id text PRIMARY KEY, seq bigint NOT NULL, hash text NOT NULL, mac text NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS usage_reservations (
            id text PRIMARY KEY, node_id text NOT NULL, consumer text NOT NULL, dataset text NOT NULL,
            day bigint NOT NULL, rows bigint NOT NULL, expires_at timestamptz NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS usage_reservations_by_key ON usage_reservations (consumer, dataset, day)",
        // ε held by queries in flight (issue 10); a reservation made before it holds none.
        "ALTER TABLE usage_reservations ADD COLUMN IF NOT EXISTS epsilon_micros bigint NOT NULL DEFAULT 0",
    ]

    /// Creates the tables under an advisory lock: nodes starting together would otherwise race
    /// in `CREATE TABLE IF NOT EXISTS` (a unique violation in the catalog).
    private static func createSchema(_ session: PostgresSession) throws(LedgerError) {
        do {
            try session.run("BEGIN")
            try session.run("SELECT pg_advisory_xact_lock(7378696400)")
            for statement in schema { try session.run(statement) }
            try session.run("COMMIT")
        } catch {
            throw LedgerError("cannot create the ledger tables: \(error.message)")
        }
    }

    // MARK: Appending

    public func append(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion) {
        guard committer.enqueue(record, hold: hold, completion: completion) else {
            if let hold { release(hold) }
            completion(.failure(LedgerError("the ledger is closed")))
            return
        }
    }

    /// One transaction per batch: lock this node's anchor row, link and insert the records,
    /// delete their holds, move the anchor. Every record of a failed batch fails.
    private func commit(_ batch: [GroupCommit.Entry]) -> [Result<UsageRecord, LedgerError>] {
        do throws(LedgerError) {
            let session: PostgresSession
            if let current = writerSession, !current.isClosed {
                session = current
            } else {
                session = try connector.connect()
                writerSession = session
            }
            do {
                let records = try commit(batch, on: session)
                return records.map { .success($0) }
            } catch {
                if !session.isClosed { _ = try? session.run("ROLLBACK") }
                throw error
            }
        } catch {
            let failure = LedgerError("append failed: \(error.message)")
            return batch.map { _ in .failure(failure) }
        }
    }

    private func commit(_ batch: [GroupCommit.Entry], on session: PostgresSession) throws(LedgerError) -> [UsageRecord] {
        try session.run("BEGIN")
        let tail = try session.run("SELECT seq, hash FROM usage_nodes WHERE node_id = $1 FOR UPDATE", Self.binds(nodeID))
        guard let row = tail.first else { throw LedgerError("node \(nodeID) is not registered in usage_nodes") }
        let (seq, hash) = try Self.decode(row, (Int64.self, String.self))
        var chain = HashChain(key: key, nodeID: nodeID, seq: seq, hash: hash)
        var statements: [(String, PostgresBindings)] = []
        var records: [UsageRecord] = []
        for entry in batch {
            let record = chain.link(entry.record)
            records.append(record)
            statements.append((Self.insertSQL, Self.binds(for: record)))
        }
        let holdIDs = batch.compactMap(\.hold?.id)
        if !holdIDs.isEmpty {
            var binds = PostgresBindings()
            binds.append(holdIDs)
            statements.append(("DELETE FROM usage_reservations WHERE id = ANY($1)", binds))
        }
        statements.append(("UPDATE usage_nodes SET seq = $2, hash = $3, mac = $4 WHERE node_id = $1",
                           Self.binds(nodeID, chain.seq, chain.hash, anchorMAC(seq: chain.seq, hash: chain.hash))))
        statements.append(("COMMIT", PostgresBindings()))
        try session.pipeline(statements)
        return records
    }

    static let insertSQL = """
        INSERT INTO usage (node_id, seq, query_id, started_at, finished_at, consumer, dataset, dataset_version,
            policy_version, status, error_code, rows, cells, bytes, masked_cells, suppressed_groups, truncated,
            vm_steps, elapsed_us, cost_micros, currency, sql_sha256, prev_hash, record_hash, sql, rewritten_sql, chain,
            purpose, epsilon_micros, client_address, holder, holder_share_ppm)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,
            $28,$29,$30,$31,$32)
        """

    static func binds(for r: UsageRecord) -> PostgresBindings {
        var b = PostgresBindings(capacity: 32)
        b.append(r.nodeID); b.append(r.seq); b.append(r.queryID); b.append(r.startedAt); b.append(r.finishedAt)
        b.append(r.consumer); b.append(r.dataset); b.append(r.datasetVersion); b.append(r.policyVersion)
        b.append(r.status.rawValue); b.append(r.errorCode); b.append(r.rows); b.append(r.cells); b.append(r.bytes)
        b.append(r.maskedCells); b.append(r.suppressedGroups); b.append(r.truncated); b.append(r.vmSteps)
        b.append(r.elapsedMicroseconds); b.append(r.costMicros); b.append(r.currency); b.append(r.sqlSHA256)
        b.append(r.prevHash); b.append(r.recordHash); b.append(r.sql); b.append(r.rewrittenSQL)
        b.append(Int32(truncatingIfNeeded: r.chain))
        b.append(r.purpose); b.append(r.epsilonMicros); b.append(r.clientAddress); b.append(r.holder)
        b.append(r.holderSharePPM)
        return b
    }

    public func sync() { committer.sync() }

    public func close() {
        committer.stop()
        writerSession = nil
        connector.closeAll()
    }

    // MARK: Quotas

    /// Decides `request` in one transaction under an advisory lock on consumer × dataset: the
    /// committed use and the live holds of every node are summed by one statement (one snapshot),
    /// and a granted hold is inserted before the lock is released.
    public func reserve(_ request: QuotaRequest) throws(LedgerError) -> QuotaDecision {
        do {
            return try connector.withSession { session throws(LedgerError) in
                try session.run("BEGIN")
                try session.run("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", Self.binds(request.consumer + "\u{1F}" + request.dataset))
                // ε (issue 10) is counted from the start of its budget's period, whatever the day;
                // without an ε budget that start is the month's, so nothing more is read.
                let epsilonSince = request.limits.epsilonMicros == nil ? request.month : request.limits.epsilonSince
                let rows = try session.run("""
                    WITH committed AS (
                        SELECT count(*) FILTER (WHERE status = 'ok' AND started_at >= $3) AS queries,
                               coalesce(sum(rows) FILTER (WHERE status = 'ok' AND started_at >= $3), 0)::bigint AS rows,
                               coalesce(sum(cost_micros) FILTER (WHERE started_at >= $4), 0)::bigint AS cost,
                               coalesce(sum(epsilon_micros) FILTER (WHERE started_at >= $5), 0)::bigint AS epsilon
                        FROM usage WHERE consumer = $1 AND dataset = $2 AND started_at >= least($4, $5)),
                    held AS (
                        SELECT count(*) FILTER (WHERE day = $3) AS queries, coalesce(sum(rows) FILTER (WHERE day = $3), 0)::bigint AS rows,
                               coalesce(sum(epsilon_micros), 0)::bigint AS epsilon
                        FROM usage_reservations WHERE consumer = $1 AND dataset = $2 AND expires_at > now())
                    SELECT committed.queries + held.queries, committed.rows + held.rows, committed.cost, committed.epsilon + held.epsilon
                    FROM committed, held
                    """, Self.binds(request.consumer, request.dataset, request.day, request.month, epsilonSince))
                guard let row = rows.first else { throw LedgerError("no quota row") }
                let (queries, usedRows, cost, epsilon) = try Self.decode(row, (Int64.self, Int64.self, Int64.self, Int64.self))
                let used = QuotaUse(queries: queries, rows: usedRows, costMicros: cost, epsilonMicros: epsilon)
                let decision = request.decide(used: used, holdID: UUID().uuidString)
                if case .granted(let hold, _) = decision {
                    try session.run("""
                        INSERT INTO usage_reservations (id, node_id, consumer, dataset, day, rows, epsilon_micros, expires_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '\(Self.holdLifetime)')
                        """, Self.binds(hold.id, nodeID, hold.consumer, hold.dataset, hold.day, hold.rows, hold.epsilonMicros))
                }
                try session.run("COMMIT")
                return decision
            }
        } catch {
            throw LedgerError("cannot decide a quota: \(error.message)")
        }
    }

    /// Deletes the hold; if the ledger is down, the hold lapses after `holdLifetime` (erring on
    /// the side of refusing).
    public func release(_ hold: QuotaHold) {
        _ = try? connector.withSession { session throws(LedgerError) in
            try session.run("DELETE FROM usage_reservations WHERE id = $1", Self.binds(hold.id))
        }
    }

    // MARK: Reading

    public func usage(consumer: String, dataset: String, since: Int64) throws(LedgerError) -> (queries: Int64, rows: Int64) {
        do {
            return try connector.withSession { session throws(LedgerError) in
                let rows = try session.run(
                    "SELECT count(*), coalesce(sum(rows), 0)::bigint FROM usage WHERE consumer = $1 AND dataset = $2 AND started_at >= $3 AND status = 'ok'",
                    Self.binds(consumer, dataset, since))
                guard let row = rows.first else { return (0, 0) }
                let (queries, used) = try Self.decode(row, (Int64.self, Int64.self))
                return (queries, used)
            }
        } catch {
            throw LedgerError("cannot read usage: \(error.message)")
        }
    }

    /// Pages through the records by `(node_id, seq)`, so a scan of millions of records holds one
    /// page in memory and no transaction open between pages.
    public func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError) {
        var clauses: [String] = []
        var binds = PostgresBindings()
        if let from = filter.from { binds.append(from); clauses.append("started_at >= $\(binds.count)") }
        if let to = filter.to { binds.append(to); clauses.append("started_at < $\(binds.count)") }
        if let consumer = filter.consumer { binds.append(consumer); clauses.append("consumer = $\(binds.count)") }
        if let dataset = filter.dataset { binds.append(dataset); clauses.append("dataset = $\(binds.count)") }
        try scan(clauses: clauses, binds: binds) { record in visit(record) }
    }

    private static let pageSize = 2_000

    private func scan(clauses: [String], binds: PostgresBindings, _ visit: (UsageRecord) -> Bool) throws(LedgerError) {
        var after: (node: String, seq: Int64)?
        do {
            while true {
                var pageBinds = binds
                var pageClauses = clauses
                if let after {
                    pageBinds.append(after.node)
                    pageBinds.append(after.seq)
                    pageClauses.append("(node_id, seq) > ($\(pageBinds.count - 1), $\(pageBinds.count))")
                }
                let condition = pageClauses.isEmpty ? "true" : pageClauses.joined(separator: " AND ")
                let rows = try connector.withSession { session throws(LedgerError) in
                    try session.run("SELECT \(Self.columns) FROM usage WHERE \(condition) ORDER BY node_id, seq LIMIT \(Self.pageSize)", pageBinds)
                }
                for row in rows {
                    let record = try Self.record(from: row)
                    if !visit(record) { return }
                    after = (record.nodeID, record.seq)
                }
                if rows.count < Self.pageSize { return }
            }
        } catch {
            throw LedgerError("cannot read usage: \(error.message)")
        }
    }

    static let columns = """
        node_id, seq, query_id, started_at, finished_at, consumer, dataset, dataset_version, policy_version, status,
        error_code, rows, cells, bytes, masked_cells, suppressed_groups, truncated, vm_steps, elapsed_us, cost_micros,
        currency, sql_sha256, prev_hash, record_hash, sql, rewritten_sql, chain, purpose, epsilon_micros,
        client_address, holder, holder_share_ppm
        """

    static func record(from row: PostgresRow) throws(LedgerError) -> UsageRecord {
        let cells = row.makeRandomAccess()
        func value<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws(LedgerError) -> T {
            do { return try cells[index].decode(T.self) } catch { throw LedgerError("column \(index) of a usage row does not decode") }
        }
        var record = UsageRecord(
            queryID: try value(2, String.self), startedAt: try value(3, Int64.self), finishedAt: try value(4, Int64.self),
            consumer: try value(5, String.self), dataset: try value(6, String.self), datasetVersion: try value(7, String.self),
            policyVersion: try value(8, String.self), status: UsageStatus(rawValue: try value(9, String.self)) ?? .failed,
            errorCode: try value(10, String.self), rows: try value(11, Int64.self), cells: try value(12, Int64.self),
            bytes: try value(13, Int64.self), maskedCells: try value(14, Int64.self), suppressedGroups: try value(15, Int64.self),
            truncated: try value(16, Bool.self), vmSteps: try value(17, Int64.self), elapsedMicroseconds: try value(18, Int64.self),
            costMicros: try value(19, Int64.self), currency: try value(20, String.self), sqlSHA256: try value(21, String.self),
            sql: try value(24, String.self), rewrittenSQL: try value(25, String.self))
        record.nodeID = try value(0, String.self)
        record.seq = try value(1, Int64.self)
        record.prevHash = try value(22, String.self)
        record.recordHash = try value(23, String.self)
        record.chain = Int64(try value(26, Int32.self))
        record.purpose = try value(27, String.self)
        record.epsilonMicros = try value(28, Int64.self)
        record.clientAddress = try value(29, String.self)
        record.holder = try value(30, String.self)
        record.holderSharePPM = try value(31, Int64.self)
        return record
    }

    public func receipt(queryID: String) throws(LedgerError) -> Receipt? {
        var binds = PostgresBindings()
        binds.append(queryID)
        var found: UsageRecord?
        try scan(clauses: ["query_id = $1"], binds: binds) { record in found = record; return false }
        guard let record = found else { return nil }
        do {
            return try connector.withSession { session throws(LedgerError) in
                let rows = try session.run("SELECT seq, prev_hash, record_hash FROM usage WHERE node_id = $1 AND seq >= $2 ORDER BY seq",
                                           Self.binds(record.nodeID, record.seq))
                let links = try rows.map { row throws(LedgerError) in
                    let (seq, prev, hash) = try Self.decode(row, (Int64.self, String.self, String.self))
                    return Receipt.Link(seq: seq, prevHash: prev, recordHash: hash)
                }
                return Receipt(record: record, links: links)
            }
        } catch {
            throw LedgerError("cannot read the chain after seq \(record.seq): \(error.message)")
        }
    }

    // MARK: Verifying

    private func anchorMAC(seq: Int64, hash: String) -> String {
        LedgerCheckpoint(nodeID: nodeID, seq: seq, hash: hash, firstKeyedSeq: 1).mac(key: key)
    }

    /// Whether `node`'s anchor row verifies under the key and its chain ends where it says.
    private func checkAnchor(_ session: PostgresSession, node: String) throws(LedgerError) -> String? {
        let anchors = try session.run("SELECT seq, hash, mac FROM usage_nodes WHERE node_id = $1", Self.binds(node))
        guard let row = anchors.first else { return "node \(node) has no anchor row" }
        let (seq, hash, mac) = try Self.decode(row, (Int64.self, String.self, String.self))
        guard constantTimeEqual(LedgerCheckpoint(nodeID: node, seq: seq, hash: hash, firstKeyedSeq: 1).mac(key: key), mac) else {
            return "node \(node): the anchor does not verify under the ledger key"
        }
        let last = try session.run("SELECT seq, record_hash FROM usage WHERE node_id = $1 ORDER BY seq DESC LIMIT 1", Self.binds(node))
        let tail = try last.first.map { row throws(LedgerError) in try Self.decode(row, (Int64.self, String.self)) } ?? (Int64(0), HashChain.genesisHash)
        guard tail.0 == seq, tail.1 == hash else {
            return "node \(node): the chain ends at seq \(tail.0) but its anchor names seq \(seq)"
        }
        return nil
    }

    /// Verifies every node's chain against its anchor row, and that no record belongs to a node
    /// without one. Anchors are read first: records committed meanwhile extend past them.
    public func verify() throws(LedgerError) -> LedgerProblem? {
        let anchors: [(node: String, seq: Int64, hash: String, mac: String)]
        let orphans: Int64
        do throws(LedgerError) {
            (anchors, orphans) = try connector.withSession { session throws(LedgerError) in
                let rows = try session.run("SELECT node_id, seq, hash, mac FROM usage_nodes ORDER BY node_id")
                let anchors = try rows.map { row throws(LedgerError) in
                    let (node, seq, hash, mac) = try Self.decode(row, (String.self, Int64.self, String.self, String.self))
                    return (node: node, seq: seq, hash: hash, mac: mac)
                }
                let orphanRows = try session.run("SELECT count(*) FROM usage WHERE node_id NOT IN (SELECT node_id FROM usage_nodes)")
                let orphans = try orphanRows.first.map { row throws(LedgerError) in try Self.decode(row, Int64.self) } ?? Int64(0)
                return (anchors, orphans)
            }
        } catch {
            throw LedgerError("cannot read the ledger's anchors: \(error.message)")
        }
        if orphans > 0 {
            return LedgerProblem(seq: nil, reason: "\(orphans) records belong to no registered node (inserted, or a node's anchor was deleted)")
        }
        for anchor in anchors {
            let expected = LedgerCheckpoint(nodeID: anchor.node, seq: anchor.seq, hash: anchor.hash, firstKeyedSeq: 1).mac(key: key)
            guard constantTimeEqual(expected, anchor.mac) else {
                return LedgerProblem(seq: nil, reason: "node \(anchor.node): the anchor does not verify under the ledger key")
            }
            var verifier = ChainVerifier(key: key, anchorSeq: anchor.seq)
            var problem: LedgerProblem?
            var binds = PostgresBindings()
            binds.append(anchor.node)
            try scan(clauses: ["node_id = $1"], binds: binds) { record in
                problem = verifier.check(record, chain: record.chain)
                return problem == nil
            }
            if let found = problem ?? verifier.finish(anchorHash: anchor.hash) {
                return LedgerProblem(seq: found.seq, reason: "node \(anchor.node): \(found.reason)")
            }
        }
        if let broken = anchorFailure {
            return LedgerProblem(seq: nil, reason: "the anchor was broken when this node started: \(broken)")
        }
        return nil
    }

    // MARK: Helpers

    static func binds(_ values: any PostgresDynamicTypeEncodable...) -> PostgresBindings {
        var binds = PostgresBindings(capacity: values.count)
        for value in values { binds.append(value) }
        return binds
    }

    static func decode<each T: PostgresDecodable>(_ row: PostgresRow, _ types: (repeat (each T).Type)) throws(LedgerError) -> (repeat each T) {
        do { return try row.decode((repeat each T).self) } catch { throw LedgerError("a ledger row does not decode: \(PostgresSession.describe(error))") }
    }
}
