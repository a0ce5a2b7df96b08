import Crypto
import Foundation
import Logging
import PostgresNIO
import SandgateLedger
import Synchronization
import SandgateSupport

/// The usage ledger in PostgreSQL, shared by many gateway nodes (docs/CONTRACT.md §7).
///
/// Each node appends to its own keyed chain (`usage` rows with its `node_id`), so nodes never
/// wait for each other per record: a batch locks only its node's anchor row (`usage_nodes`),
/// inserts its records, charges their quota holds and moves the anchor, in one transaction.
/// Quota holds are rows of `usage_reservations`, decided under a transaction-scoped advisory
/// lock per consumer × dataset, so quotas are exact across every node sharing the database.
///
/// `@unchecked Sendable`: the writer session is used only by the writer thread (`GroupCommit`),
/// other sessions are lent by `PostgresConnector` to one caller at a time, and the anchor's
/// problem is in a `Mutex`.
public final class PostgresLedgerStore: LedgerStore, @unchecked Sendable {
    public let url: PostgresLedgerURL
    public let nodeID: String
    private let key: SymmetricKey
    let connector: PostgresConnector
    private let committer: GroupCommit
    /// The writer thread's own session, reconnected when it breaks.
    private var writerSession: PostgresSession?
    /// Why this node's anchor is broken, if it is.
    private let anchorProblem = Mutex<String?>(nil)
    /// Where this node keeps its local checkpoint (beside the key).
    private let stateDirectory: String
    /// How long a hold counts when its node never charges or releases it (a crash).
    static let holdLifetime = "5 minutes"

    /// Connects, creates the tables when missing and registers `nodeID`'s chain. The key (the
    /// same file on every node: `usage verify` checks every node's chain with it) is read from
    /// `keyPath`, or created there.
    /// `answerTimeout`: how long a statement of the serving path (appends, quota decisions, reads)
    /// waits for PostgreSQL's answer before its session is closed and the statement fails (nil:
    /// no deadline); see `PostgresSession.answerTimeout`.
    public init(url: PostgresLedgerURL, nodeID: String, keyPath: String, logger: Logger = Logger(label: "sandgate.ledger"),
                progress: LedgerProgress? = nil, answerTimeout: Duration? = .seconds(30)) throws(LedgerError) {
        guard !nodeID.isEmpty, nodeID.utf8.count <= UsageRecord.nameLimit else {
            throw LedgerError(.invalidArgument, "the node id must be 1 to \(UsageRecord.nameLimit) bytes")
        }
        self.url = url
        self.nodeID = nodeID
        key = try LedgerKey.loadOrCreate(path: keyPath).0
        stateDirectory = (keyPath as NSString).deletingLastPathComponent
        connector = PostgresConnector(url: url, logger: logger, answerTimeout: answerTimeout)
        committer = GroupCommit(name: "sandgate-ledger-pg")
        try connector.withSession { session throws(LedgerError) in
            try Self.createSchema(session, progress: progress)
            try session.run(
                "INSERT INTO usage_nodes (node_id, seq, hash, mac) VALUES ($1, 0, $2, $3) ON CONFLICT (node_id) DO NOTHING",
                Self.binds(nodeID, HashChain.genesisHash, anchorMAC(seq: 0, hash: HashChain.genesisHash)))
            let problem = try checkAnchor(session, node: nodeID)
            anchorProblem.withLock { $0 = problem }
        }
        committer.configure(owner: self, commit: { [unowned self] batch in commit(batch) },
                            anchor: { [unowned self] last in writeLocalCheckpoint(seq: last.seq, hash: last.recordHash) })
    }

    deinit { connector.closeAll() }

    public var anchorFailure: String? {
        anchorProblem.withLock { $0 }
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
        // Chain version 4's fields (lists as JSON text, `RecordColumns`).
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT ''",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS members text NOT NULL DEFAULT ''",
        "ALTER TABLE usage ADD COLUMN IF NOT EXISTS extensions text NOT NULL DEFAULT ''",
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
        // Running totals (issue 24), one row per node so nodes never wait for each other's rows.
        "CREATE TABLE IF NOT EXISTS usage_totals (\(totalsColumnDefinitions))",
        "CREATE TABLE IF NOT EXISTS usage_totals_archived (\(totalsColumnDefinitions))",
        "CREATE TABLE IF NOT EXISTS ledger_meta (name text PRIMARY KEY, value text NOT NULL)",
        // ε held by queries in flight (issue 10); a reservation made before it holds none.
        "ALTER TABLE usage_reservations ADD COLUMN IF NOT EXISTS epsilon_micros bigint NOT NULL DEFAULT 0",
        // The most a query in flight can cost, held against monthly_cost_micros.
        "ALTER TABLE usage_reservations ADD COLUMN IF NOT EXISTS cost_micros bigint NOT NULL DEFAULT 0",
        // Where each node's stored chain begins after `usage archive` (NodeArchive's boundaries).
        """
        CREATE TABLE IF NOT EXISTS usage_archives (
            node_id text NOT NULL, through_seq bigint NOT NULL, through_hash text NOT NULL, file text NOT NULL,
            mac text NOT NULL, PRIMARY KEY (node_id, through_seq)
        )
        """,
    ]

    /// Creates the tables under an advisory lock: nodes starting together would otherwise race
    /// in `CREATE TABLE IF NOT EXISTS` (a unique violation in the catalog). The first node with
    /// running totals builds them from the records in the same transaction.
    private static func createSchema(_ session: PostgresSession, progress: LedgerProgress?) throws(LedgerError) {
        do {
            try session.run("BEGIN", timeout: nil)
            try session.run("SELECT pg_advisory_xact_lock(7378696400)", timeout: nil)
            for statement in schema { try session.run(statement, timeout: nil) }
            try buildTotalsOnce(session, progress: progress)
            try session.run("COMMIT", timeout: nil)
        } catch {
            throw LedgerError(.store, "cannot create the ledger tables: \(error.message)")
        }
    }

    // MARK: Appending

    public func append(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion) {
        guard committer.enqueue(record, hold: hold, completion: completion) else {
            if let hold { release(hold) }
            completion(.failure(LedgerError(.closed, "the ledger is closed")))
            return
        }
    }

    /// One statement per batch (one round trip, one implicit transaction): move the anchor from
    /// the tail this node last wrote, insert the linked records, delete their holds. Only this
    /// node appends to its chain, so the tail is kept in memory; the anchor moves only from that
    /// tail (otherwise nothing is written) and `(node_id, seq)` is the primary key, so a second
    /// writer with the same node id (a misconfiguration) cannot fork the chain: the tail is read
    /// again and the batch is linked and sent once more. Every record of a batch that still
    /// fails, fails.
    private func commit(_ batch: [GroupCommit.Entry]) -> [Result<UsageRecord, LedgerError>] {
        var lastError = LedgerError(.store, "append failed")
        for _ in 0..<2 {
            do throws(LedgerError) {
                let session: PostgresSession
                if let current = writerSession, !current.isClosed {
                    session = current
                } else {
                    session = try connector.connect()
                    writerSession = session
                    tail = nil
                }
                do {
                    return try commit(batch, on: session).map { .success($0) }
                } catch {
                    tail = nil
                    throw error
                }
            } catch {
                lastError = LedgerError(.store, "append failed: \(error.message)")
                // A broken connection may have committed before the answer was lost: never resend.
                if writerSession?.isClosed ?? true { break }
            }
        }
        return batch.map { _ in .failure(lastError) }
    }

    /// The writer thread's view of this node's chain tail (nil: read it from `usage_nodes`).
    private var tail: (seq: Int64, hash: String)?

    private func commit(_ batch: [GroupCommit.Entry], on session: PostgresSession) throws(LedgerError) -> [UsageRecord] {
        let start: (seq: Int64, hash: String)
        if let tail {
            start = tail
        } else {
            let rows = try session.run("SELECT seq, hash FROM usage_nodes WHERE node_id = $1", Self.binds(nodeID))
            guard let row = rows.first else { throw LedgerError(.conflict, "node \(nodeID) is not registered in usage_nodes") }
            start = try Self.decode(row, (Int64.self, String.self))
        }
        var chain = HashChain(key: key, nodeID: nodeID, seq: start.seq, hash: start.hash)
        let records = batch.map { chain.link($0.record) }
        var binds = Self.binds(for: records)
        binds.append(nodeID); binds.append(chain.seq); binds.append(chain.hash); binds.append(anchorMAC(seq: chain.seq, hash: chain.hash))
        binds.append(start.seq); binds.append(start.hash); binds.append(batch.compactMap(\.hold?.id))
        Self.appendTotals(RunningTotals.deltas(records), to: &binds)
        binds.append(records.map { StoredText.encode(RecordColumns.kind($0.kind)) })
        binds.append(records.map { StoredText.encode(RecordColumns.members($0.members)) })
        binds.append(records.map { StoredText.encode(RecordColumns.extensions($0.extensions)) })
        let rows = try session.run(Self.commitSQL, binds)
        guard let row = rows.first else { throw LedgerError(.integrity, "the batch's commit returned nothing") }
        let (moved, inserted) = try Self.decode(row, (Int64.self, Int64.self))
        guard moved == 1, inserted == Int64(records.count) else {
            throw LedgerError(.conflict, "node \(nodeID)'s chain moved past seq \(start.seq) (another writer with this node id?); nothing was written")
        }
        tail = (chain.seq, chain.hash)
        return records
    }

    // MARK: Local checkpoint

    /// The anchor row lives in the database an attacker may write; a copy of this node's tail
    /// outside it (`<state>/usage-node-<id>.checkpoint`, MACed like the SQLite ledger's) lets
    /// `usage verify` find a deleted node or a rolled-back tail (red team). Written by the group
    /// commit's anchor rule (after the batch's results are released; at most 100 ms behind), and
    /// on close.
    static func checkpointPath(directory: String, node: String) -> String {
        let safe = node.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
        return (directory as NSString).appendingPathComponent("usage-node-\(safe ? node : Hex.encode(Array(node.utf8))).checkpoint")
    }

    private func writeLocalCheckpoint(seq: Int64, hash: String) {
        do {
            try LedgerCheckpoint(nodeID: nodeID, seq: seq, hash: hash, firstKeyedSeq: 1)
                .write(path: Self.checkpointPath(directory: stateDirectory, node: nodeID), key: key)
        } catch {
            anchorProblem.withLock { $0 = $0 ?? "cannot write the local checkpoint: \(error.message)" }
        }
    }

    /// Every node checkpoint in the state directory (this node's, and any an operator copied
    /// there from other nodes), MAC-checked.
    private func localCheckpoints() throws(LedgerError) -> [LedgerCheckpoint] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []
        var found: [LedgerCheckpoint] = []
        for name in names.sorted() where name.hasPrefix("usage-node-") && name.hasSuffix(".checkpoint") {
            if let checkpoint = try LedgerCheckpoint.read(path: (stateDirectory as NSString).appendingPathComponent(name), key: key) {
                found.append(checkpoint)
            }
        }
        return found
    }

    /// A whole batch in one statement: each record column is one array parameter (`$1`…`$32`);
    /// the anchor moves from the batch's starting tail (`$37`, `$38`) to its end (`$34`…`$36`) or
    /// nothing is written; the holds `$39` end with the records that charge them; the batch's sums
    /// (`$40`…`$51`, one element per row of this node's totals) are added to the running totals;
    /// `$52`…`$54` are chain version 4's record columns.
    static let commitSQL = """
        WITH moved AS (
            UPDATE usage_nodes SET seq = $34, hash = $35, mac = $36 WHERE node_id = $33 AND seq = $37 AND hash = $38 RETURNING 1),
        inserted AS (
            INSERT INTO usage (node_id, seq, query_id, started_at, finished_at, consumer, dataset, dataset_version,
                policy_version, status, error_code, rows, cells, bytes, masked_cells, suppressed_groups, truncated,
                vm_steps, elapsed_us, cost_micros, currency, sql_sha256, prev_hash, record_hash, sql, rewritten_sql, chain,
                purpose, epsilon_micros, client_address, holder, holder_share_ppm, kind, members, extensions)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
                $16::bigint[], $17::boolean[], $18::bigint[], $19::bigint[], $20::bigint[], $21::text[], $22::text[],
                $23::text[], $24::text[], $25::text[], $26::text[], $27::integer[], $28::text[], $29::bigint[], $30::text[],
                $31::text[], $32::bigint[], $52::text[], $53::text[], $54::text[])
            WHERE EXISTS (SELECT 1 FROM moved)
            RETURNING 1),
        released AS (
            DELETE FROM usage_reservations WHERE id = ANY($39::text[]) AND EXISTS (SELECT 1 FROM moved)),
        totals AS (
            INSERT INTO usage_totals
            SELECT $33, * FROM unnest($40::text[], $41::text[], $42::text[], $43::bigint[], $44::text[], $45::bigint[], $46::bigint[],
                $47::bigint[], $48::bigint[], $49::bigint[], $50::bigint[], $51::bigint[])
            WHERE EXISTS (SELECT 1 FROM moved)
            \(upsertSQL(table: "usage_totals")))
        SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM inserted)
        """

    static func binds(for records: [UsageRecord]) -> PostgresBindings {
        var b = PostgresBindings(capacity: 32)
        func text(_ field: (UsageRecord) -> String) { b.append(records.map { StoredText.encode(field($0)) }) }
        func integer(_ field: (UsageRecord) -> Int64) { b.append(records.map(field)) }
        text(\.nodeID); integer(\.seq); text(\.queryID); integer(\.startedAt); integer(\.finishedAt)
        text(\.consumer); text(\.dataset); text(\.datasetVersion); text(\.policyVersion); text(\.status.rawValue)
        text(\.errorCode); integer(\.rows); integer(\.cells); integer(\.bytes); integer(\.maskedCells)
        integer(\.suppressedGroups); b.append(records.map(\.truncated)); integer(\.vmSteps); integer(\.elapsedMicroseconds)
        integer(\.costMicros); text(\.currency); text(\.sqlSHA256); text(\.prevHash); text(\.recordHash); text(\.sql)
        text(\.rewrittenSQL); b.append(records.map { Int32(truncatingIfNeeded: $0.chain) }); text(\.purpose)
        integer(\.epsilonMicros); text(\.clientAddress); text(\.holder); integer(\.holderSharePPM)
        return b
    }

    public func sync() { committer.sync() }

    public func close() {
        committer.stop()
        if let tail { writeLocalCheckpoint(seq: tail.seq, hash: tail.hash) }
        writerSession = nil
        connector.closeAll()
    }

    // MARK: Quotas

    /// Decides `request` in one transaction under an advisory lock on consumer × dataset: the
    /// committed use and the live holds of every node are summed by one statement (one snapshot),
    /// and a granted hold is inserted before the lock is released. Two round trips: the lock and
    /// the sums are pipelined, then the hold and the COMMIT.
    public func reserve(_ request: QuotaRequest) throws(LedgerError) -> QuotaDecision {
        do {
            return try connector.withSession { session throws(LedgerError) in
                do throws(LedgerError) {
                    let results = try session.pipeline([
                        ("BEGIN", PostgresBindings()),
                        // A hold is visible to every node at COMMIT either way; waiting for its WAL
                        // flush only made each admission pay an fsync (docs/CONTRACT.md §7).
                        ("SET LOCAL synchronous_commit = off", PostgresBindings()),
                        ("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", Self.binds(request.consumer + "\u{1F}" + request.dataset)),
                        (Self.quotaUseSQL, Self.binds(StoredText.encode(request.consumer), StoredText.encode(request.dataset), request.day,
                                                      request.month, request.limits.epsilonPeriod.rawValue)),
                    ])
                    guard let row = results.last?.first else { throw LedgerError(.integrity, "no quota row") }
                    let (queries, usedRows, cost, epsilon) = try Self.decode(row, (Int64.self, Int64.self, Int64.self, Int64.self))
                    let used = QuotaUse(queries: queries, rows: usedRows, costMicros: cost, epsilonMicros: epsilon)
                    let decision = request.decide(used: used, holdID: UUID().uuidString)
                    var finish: [(String, PostgresBindings)] = []
                    if case .granted(let hold, _) = decision {
                        finish.append(("""
                            INSERT INTO usage_reservations (id, node_id, consumer, dataset, day, rows, epsilon_micros, cost_micros, expires_at)
                            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + interval '\(Self.holdLifetime)')
                            """, Self.binds(hold.id, nodeID, hold.consumer, hold.dataset, hold.day, hold.rows, hold.epsilonMicros, hold.costMicros)))
                    }
                    finish.append(("COMMIT", PostgresBindings()))
                    try session.pipeline(finish)
                    return decision
                } catch {
                    if !session.isClosed { _ = try? session.run("ROLLBACK") }
                    throw error
                }
            }
        } catch {
            throw LedgerError(.store, "cannot decide a quota: \(error)")
        }
    }

    /// Today's queries that ran (ok or failed) and released rows plus live holds, the month's cost, and the ε spent in the
    /// budget's period $5 plus ε held (issue 10), of consumer × dataset: from the running totals
    /// (a few rows per node and purpose, however many records), not from the records.
    static let quotaUseSQL = """
        WITH committed AS (
            SELECT coalesce(sum(records - refused) FILTER (WHERE period = 'day'), 0)::bigint AS queries,
                   coalesce(sum(ok_rows) FILTER (WHERE period = 'day'), 0)::bigint AS rows,
                   coalesce(sum(cost_micros) FILTER (WHERE period = 'month'), 0)::bigint AS cost,
                   coalesce(sum(epsilon_micros) FILTER (WHERE period = $5), 0)::bigint AS epsilon
            FROM usage_totals WHERE consumer = $1 AND dataset = $2
                AND ((period = 'day' AND start = $3) OR (period = 'month' AND start = $4) OR (period = 'total' AND start = 0))),
        held AS (
            SELECT count(*) FILTER (WHERE day = $3) AS queries, coalesce(sum(rows) FILTER (WHERE day = $3), 0)::bigint AS rows,
                   coalesce(sum(epsilon_micros), 0)::bigint AS epsilon, coalesce(sum(cost_micros), 0)::bigint AS cost
            FROM usage_reservations WHERE consumer = $1 AND dataset = $2 AND expires_at > now())
        SELECT committed.queries + held.queries, committed.rows + held.rows, committed.cost + held.cost, committed.epsilon + held.epsilon
        FROM committed, held
        """

    /// Deletes the hold; if the ledger is down, the hold lapses after `holdLifetime` (erring on
    /// the side of refusing).
    public func release(_ hold: QuotaHold) {
        _ = try? connector.withSession { session throws(LedgerError) in
            do throws(LedgerError) {
                try session.pipeline([
                    ("BEGIN", PostgresBindings()), ("SET LOCAL synchronous_commit = off", PostgresBindings()),
                    ("DELETE FROM usage_reservations WHERE id = $1", Self.binds(hold.id)), ("COMMIT", PostgresBindings()),
                ])
            } catch {
                if !session.isClosed { _ = try? session.run("ROLLBACK") }
                throw error
            }
        }
    }

    // MARK: Reading

    public func totals(consumer: String, dataset: String, at time: Int64) throws(LedgerError) -> UsageTotals {
        let sums = RunningTotals.countColumns.map { "coalesce(sum(\($0)), 0)::bigint" }.joined(separator: ", ")
        do {
            return try connector.withSession { session throws(LedgerError) in
                let rows = try session.run("""
                    SELECT period, \(sums) FROM usage_totals WHERE consumer = $1 AND dataset = $2
                        AND ((period = 'day' AND start = $3) OR (period = 'month' AND start = $4) OR (period = 'total' AND start = 0))
                    GROUP BY period
                    """, Self.binds(StoredText.encode(consumer), StoredText.encode(dataset), Timestamp.startOfDay(containing: time),
                                    Timestamp.startOfMonth(containing: time)))
                var totals = UsageTotals()
                for row in rows {
                    let (period, a, b, c, d, e, f, g) = try Self.decode(row, (String.self, Int64.self, Int64.self, Int64.self, Int64.self,
                                                                              Int64.self, Int64.self, Int64.self))
                    guard let key = TotalsPeriod(rawValue: period) else { continue }
                    totals[key] = UsageCounts(records: a, okQueries: b, okRows: c, costMicros: d, epsilonMicros: e, refused: f, suppressedGroups: g)
                }
                return totals
            }
        } catch {
            throw LedgerError(.store, "cannot read usage: \(error.message)")
        }
    }

    /// Pages through the records by `(node_id, seq)`, so a scan of millions of records holds one
    /// page in memory and no transaction open between pages.
    public func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError) {
        var clauses: [String] = []
        var binds = PostgresBindings()
        if let from = filter.from { binds.append(from); clauses.append("started_at >= $\(binds.count)") }
        if let to = filter.to { binds.append(to); clauses.append("started_at < $\(binds.count)") }
        if let consumer = filter.consumer { binds.append(StoredText.encode(consumer)); clauses.append("consumer = $\(binds.count)") }
        if let dataset = filter.dataset { binds.append(StoredText.encode(dataset)); clauses.append("dataset = $\(binds.count)") }
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
            throw LedgerError(.store, "cannot read usage: \(error.message)")
        }
    }

    static let columns = """
        node_id, seq, query_id, started_at, finished_at, consumer, dataset, dataset_version, policy_version, status,
        error_code, rows, cells, bytes, masked_cells, suppressed_groups, truncated, vm_steps, elapsed_us, cost_micros,
        currency, sql_sha256, prev_hash, record_hash, sql, rewritten_sql, chain, purpose, epsilon_micros,
        client_address, holder, holder_share_ppm, kind, members, extensions
        """

    static func record(from row: PostgresRow) throws(LedgerError) -> UsageRecord {
        let cells = row.makeRandomAccess()
        func value<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws(LedgerError) -> T {
            do { return try cells[index].decode(T.self) } catch { throw LedgerError(.integrity, "column \(index) of a usage row does not decode") }
        }
        func value(_ index: Int, _ type: String.Type) throws(LedgerError) -> String {
            let stored: String
            do { stored = try cells[index].decode(String.self) } catch { throw LedgerError(.integrity, "column \(index) of a usage row does not decode") }
            guard let text = StoredText.decode(stored) else { throw LedgerError(.integrity, "column \(index) of a usage row is not valid stored text") }
            return text
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
        record.readVersion4(kind: try value(32, String.self), members: try value(33, String.self), extensions: try value(34, String.self))
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
            throw LedgerError(.store, "cannot read the chain after seq \(record.seq): \(error.message)")
        }
    }

    // MARK: Archives

    /// Where `node`'s stored records begin: its last archive boundary (MAC checked) or the genesis.
    private func archiveBoundary(_ session: PostgresSession, node: String) throws(LedgerError) -> Result<(seq: Int64, hash: String), LedgerProblem> {
        let rows = try session.run("SELECT through_seq, through_hash, mac FROM usage_archives WHERE node_id = $1 ORDER BY through_seq DESC LIMIT 1",
                                   Self.binds(node))
        guard let row = rows.first else { return .success((0, HashChain.genesisHash)) }
        let (seq, hash, mac) = try Self.decode(row, (Int64.self, String.self, String.self))
        guard constantTimeEqual(NodeArchive.boundaryMAC(node: node, seq: seq, hash: hash, key: key), mac) else {
            return .failure(LedgerProblem(seq: nil, reason: "node \(node): the archive boundary does not verify under the ledger key"))
        }
        return .success((seq, hash))
    }

    /// Moves every node's records before its first record that started at or after `before` (µs)
    /// into a new node archive at `path` (`NodeArchive`, verifiable on its own), then, in one
    /// transaction, deletes them and records each node's boundary, so every chain stays checkable
    /// across the cut. The ledger must verify first. Returns how many records moved.
    public func archive(before: Int64, to path: String) throws(LedgerError) -> Int64 {
        if let problem = try verify() { throw LedgerError(.integrity, "the ledger does not verify (\(problem)); nothing archived") }
        let nodes = try connector.withSession { session throws(LedgerError) in
            try session.run("SELECT node_id FROM usage_nodes ORDER BY node_id").map { row throws(LedgerError) in try Self.decode(row, String.self) }
        }
        let writer = try NodeArchive.Writer(path: path, key: key)
        var moved: Int64 = 0
        var cuts: [(node: String, seq: Int64, hash: String)] = []
        do throws(LedgerError) {
            for node in nodes {
                let start = try connector.withSession { session throws(LedgerError) in try archiveBoundary(session, node: node) }
                guard case .success(let begin) = start else { throw LedgerError(.integrity, "node \(node): the archive boundary does not verify") }
                var binds = PostgresBindings()
                binds.append(node)
                binds.append(before)
                var end = begin
                var failure: LedgerError?
                try scan(clauses: ["node_id = $1", """
                    seq <= coalesce((SELECT min(seq) - 1 FROM usage WHERE node_id = $1 AND started_at >= $2),
                                    (SELECT max(seq) FROM usage WHERE node_id = $1))
                    """], binds: binds) { record in
                    do throws(LedgerError) { try writer.add(record) } catch { failure = error; return false }
                    end = (record.seq, record.recordHash)
                    moved += 1
                    return true
                }
                if let failure { throw failure }
                guard end.seq > begin.seq else { continue }
                try writer.bound(node: node, start: begin, end: end)
                cuts.append((node, end.seq, end.hash))
            }
            guard !cuts.isEmpty else {
                writer.discard()
                return 0
            }
            try writer.finish()
        } catch {
            writer.discard()
            throw error
        }
        do throws(LedgerError) {
            try connector.withSession { session throws(LedgerError) in
                var statements: [(String, PostgresBindings)] = [("BEGIN", PostgresBindings())]
                for cut in cuts {
                    statements.append(("INSERT INTO usage_archives VALUES ($1, $2, $3, $4, $5)",
                                       Self.binds(cut.node, cut.seq, cut.hash, path, NodeArchive.boundaryMAC(node: cut.node, seq: cut.seq, hash: cut.hash, key: key))))
                    statements.append(("""
                        INSERT INTO usage_totals_archived SELECT * FROM (\(Self.recomputeSQL(where: "node_id = $1 AND seq <= $2"))) sums
                        \(Self.upsertSQL(table: "usage_totals_archived"))
                        """, Self.binds(cut.node, cut.seq)))
                    statements.append(("DELETE FROM usage WHERE node_id = $1 AND seq <= $2", Self.binds(cut.node, cut.seq)))
                }
                statements.append(("COMMIT", PostgresBindings()))
                do throws(LedgerError) {
                    try session.pipeline(statements, timeout: nil)
                } catch {
                    if !session.isClosed { _ = try? session.run("ROLLBACK") }
                    throw error
                }
            }
        } catch {
            throw LedgerError(.conflict, "the archive \(path) is written but the ledger still holds its records (\(error.message)); delete the file and retry")
        }
        return moved
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
        let tail: (Int64, String)
        if let row = last.first {
            tail = try Self.decode(row, (Int64.self, String.self))
        } else {
            switch try archiveBoundary(session, node: node) {
            case .success(let boundary): tail = boundary
            case .failure(let problem): return problem.reason
            }
        }
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
            throw LedgerError(.store, "cannot read the ledger's anchors: \(error.message)")
        }
        if orphans > 0 {
            return LedgerProblem(seq: nil, reason: "\(orphans) records belong to no registered node (inserted, or a node's anchor was deleted)")
        }
        var boundaries: [String: (seq: Int64, hash: String)] = [:]
        for anchor in anchors {
            let expected = LedgerCheckpoint(nodeID: anchor.node, seq: anchor.seq, hash: anchor.hash, firstKeyedSeq: 1).mac(key: key)
            guard constantTimeEqual(expected, anchor.mac) else {
                return LedgerProblem(seq: nil, reason: "node \(anchor.node): the anchor does not verify under the ledger key")
            }
            let boundary: (seq: Int64, hash: String)
            switch try connector.withSession({ session throws(LedgerError) in try archiveBoundary(session, node: anchor.node) }) {
            case .success(let found): boundary = found
            case .failure(let problem): return problem
            }
            boundaries[anchor.node] = boundary
            var verifier = ChainVerifier(key: key, anchorSeq: anchor.seq, after: boundary)
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
        if let problem = try checkLocalCheckpoints(anchors: anchors, boundaries: boundaries) { return problem }
        if let problem = try verifyTotals() { return problem }
        if let broken = anchorFailure {
            return LedgerProblem(seq: nil, reason: "the anchor was broken when this node started: \(broken)")
        }
        return nil
    }

    /// Each node checkpoint kept outside the database must still be in its node's verified chain:
    /// a node deleted from the database, or its tail rolled back with an older anchor row,
    /// verifies inside the database but not against the copy outside it.
    private func checkLocalCheckpoints(anchors: [(node: String, seq: Int64, hash: String, mac: String)],
                                       boundaries: [String: (seq: Int64, hash: String)]) throws(LedgerError) -> LedgerProblem? {
        for checkpoint in try localCheckpoints() where checkpoint.seq > 0 {
            guard let anchor = anchors.first(where: { $0.node == checkpoint.nodeID }) else {
                return LedgerProblem(seq: checkpoint.seq, reason: "node \(checkpoint.nodeID): its checkpoint outside the database names seq \(checkpoint.seq), but the ledger has no chain of that node (deleted)")
            }
            guard anchor.seq >= checkpoint.seq else {
                return LedgerProblem(seq: anchor.seq + 1, reason: "node \(checkpoint.nodeID): the chain ends at seq \(anchor.seq) but its checkpoint outside the database names seq \(checkpoint.seq) (rolled back)")
            }
            let boundary = boundaries[checkpoint.nodeID] ?? (0, HashChain.genesisHash)
            let hash: String?
            if checkpoint.seq < boundary.seq {
                continue   // archived: the archive file carries it
            } else if checkpoint.seq == boundary.seq {
                hash = boundary.hash
            } else {
                let rows = try connector.withSession { session throws(LedgerError) in
                    try session.run("SELECT record_hash FROM usage WHERE node_id = $1 AND seq = $2", Self.binds(checkpoint.nodeID, checkpoint.seq))
                }
                if let row = rows.first { hash = try Self.decode(row, String.self) } else { hash = nil }
            }
            guard hash == checkpoint.hash else {
                return LedgerProblem(seq: checkpoint.seq, reason: "node \(checkpoint.nodeID): the record differs from its checkpoint outside the database")
            }
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
        do { return try row.decode((repeat each T).self) } catch { throw LedgerError(.integrity, "a ledger row does not decode: \(PostgresSession.describe(error))") }
    }
}

/// PostgreSQL's `text` cannot hold U+0000, but a consumer's SQL (or a failed login's name) can:
/// one such record must not fail its whole batch (every other consumer's results with it).
/// Text with U+0000, or that starts with U+0001, is stored as U+0001 + base64 of its UTF-8;
/// everything else as it is, so the table stays readable. Reads undo it, so hashes recompute.
enum StoredText {
    static let marker: Character = "\u{1}"

    static func encode(_ text: String) -> String {
        guard text.utf8.contains(0) || text.utf8.first == 1 else { return text }
        return String(marker) + Data(text.utf8).base64EncodedString()
    }

    /// nil when a marked value is not base64 of UTF-8 (the table was edited).
    static func decode(_ stored: String) -> String? {
        guard stored.utf8.first == 1 else { return stored }
        guard let data = Data(base64Encoded: String(stored.dropFirst())) else { return nil }
        return String(bytes: data, encoding: .utf8)
    }
}
