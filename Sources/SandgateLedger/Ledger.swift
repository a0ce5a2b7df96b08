import Crypto
import Foundation
import SandgateSQLite
import Synchronization
import SandgateSupport

/// A failure of the usage ledger. Without a committed record no result may be released.
public struct LedgerError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, for callers that act on it (retry, refuse, stop); `message` says where.
    public enum Kind: String, Sendable {
        /// Shut down: the ledger takes nothing more.
        case closed
        /// The store cannot be reached or is not set up (no connection, not configured).
        case unavailable
        /// A statement of the store failed (SQLite or PostgreSQL said why in the message).
        case store
        /// A file beside the store: the key, the checkpoint, a lock, an archive.
        case file
        /// What is stored does not verify or decode: tampering, corruption or a bug.
        case integrity
        /// Something is in the way: a file that exists, another writer with the same node id.
        case conflict
        /// The caller asked for something the ledger cannot be (a node id out of bounds).
        case invalidArgument
    }

    public let kind: Kind
    /// What the ledger was doing and the cause, for logs and operators (never result values).
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "ledger: \(message)" }
}

/// The append-only usage ledger in `var/usage.sqlite` (WAL, `synchronous=FULL`), chained with
/// HMAC-SHA256 under `var/usage.key` and anchored by `var/usage.checkpoint` (`LedgerChain`).
///
/// Appends are group-committed by one writer thread: records that arrive while a commit is in
/// progress are written together by the next commit, in one transaction with one fsync. A caller
/// learns its record is durable through its completion (or, with the blocking `append`, when it
/// returns) — only then may the result it meters be released. Callers need not block a thread
/// while they wait, so many queries share each fsync. Several processes may share the file: the
/// chain tail is read inside the same `BEGIN IMMEDIATE` transaction that appends.
///
/// `@unchecked Sendable`: the write connection and `batchCounter` are used only by the writer thread (`GroupCommit`),
/// the anchor state is inside `anchorState` (a `Mutex`), and the read connection is used only under `readLock`.
public final class Ledger: LedgerStore, @unchecked Sendable {
    public typealias Completion = LedgerCompletion

    public let path: String
    /// `usage.key` and `usage.checkpoint` beside `usage.sqlite`.
    public let keyPath: String
    public let checkpointPath: String
    private let key: SymmetricKey
    /// Who wrote this chain (in every checkpoint) and where its keyed part starts.
    public let nodeID: String
    private let firstKeyedSeq: Int64
    /// What the last checkpoint anchored, and why anchoring stopped.
    private struct AnchorState {
        /// Set when the anchor went missing or the chain got shorter than it: checkpoints are no
        /// longer written, so `usage verify` keeps reporting it instead of re-anchoring a tampered tail.
        var problem: String?
        var lastCheckpointSeq: Int64 = 0
    }

    /// Held across the checkpoint's write (an fsync), so two anchors never race on the file.
    private let anchorState: Mutex<AnchorState>
    let writer: Connection
    let reader: Connection
    /// Guards `reader` (a SQLite connection is used by one thread at a time). Not reentrant: a
    /// `scan`'s visitor must not read the ledger again; `LocalHolds` takes it inside its own
    /// decision lock, never the other way round.
    let readLock = Mutex<Void>(())
    private let committer = GroupCommit(name: "sandgate-ledger")
    let holds = LocalHolds()
    /// This handle's batches with quota holds, numbered in `ledger_meta` row `batchMarker` in
    /// the transaction of each (`LocalHolds.settle`); the counter is the writer thread's only.
    private var batchCounter: Int64 = 0
    let batchMarker = "holds_batch:" + UUID().uuidString

    /// The hash that precedes the first record.
    public static let genesisHash = HashChain.genesisHash

    /// Opens (creating if needed) the ledger at `path`, its key and its checkpoint. The first
    /// open after the key is created anchors the chain's current tail: records before it are
    /// version-1 records of an older sandgate, verified as they were written. The first open by a
    /// sandgate with running totals builds them from the records, reporting to `progress`.
    public init(path: String, progress: LedgerProgress? = nil) throws(LedgerError) {
        self.path = path
        // Named after the ledger file, so two ledgers in one directory never share them.
        let stem = (path as NSString).deletingPathExtension
        keyPath = stem + ".key"
        checkpointPath = stem + ".checkpoint"
        do {
            writer = try Connection(path: path, mode: .readWriteCreate)
            // A trigger planted in the file (`RAISE(IGNORE)` on insert) must not swallow records
            // while results go out (red team); views and schema tricks get no say either.
            writer.set(.enableTrigger, false)
            writer.set(.enableView, false)
            writer.set(.defensive, true)
            writer.set(.trustedSchema, false)
            writer.setBusyTimeout(milliseconds: 10_000)
            try writer.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            try writer.execute(Self.schema)
            let columns = try writer.rows("SELECT name FROM pragma_table_info('usage')").compactMap { row -> String? in
                if case .text(let name) = row[0] { return name }
                return nil
            }
            // Columns added since the first release, in order (records of older versions read
            // them as empty; the table's column order is the same as a new table's).
            for (column, definition) in Self.addedColumns where !columns.contains(column) {
                try writer.execute("ALTER TABLE usage ADD COLUMN \(column) \(definition)")
            }
            try Self.buildTotalsOnce(writer, progress: progress)
            reader = try Connection(path: path, mode: .readWrite)
            reader.set(.enableTrigger, false)
            reader.set(.enableView, false)
            reader.set(.trustedSchema, false)
            reader.setBusyTimeout(milliseconds: 10_000)
            // Consumers' SQL is in here: readable by the gateway's user only.
            chmod(path, 0o600)
        } catch let error as LedgerError {
            throw error
        } catch {
            throw LedgerError(.file, "cannot open \(path): \(error)")
        }
        let (key, created) = try LedgerKey.loadOrCreate(path: keyPath)
        self.key = key
        if created {
            let tail = try Self.tail(writer)
            var generator = SystemRandomNumberGenerator()
            let checkpoint = LedgerCheckpoint(
                nodeID: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }),
                seq: tail.seq, hash: tail.hash, firstKeyedSeq: tail.seq + 1)
            try checkpoint.write(path: checkpointPath, key: key)
        }
        var anchored = AnchorState()
        do {
            if let checkpoint = try LedgerCheckpoint.read(path: checkpointPath, key: key) {
                nodeID = checkpoint.nodeID
                firstKeyedSeq = checkpoint.firstKeyedSeq
                anchored.lastCheckpointSeq = checkpoint.seq
            } else {
                (nodeID, firstKeyedSeq) = ("unanchored", 1)
                anchored.problem = "the checkpoint \(checkpointPath) is missing although the ledger key exists"
            }
        } catch {
            (nodeID, firstKeyedSeq) = ("unanchored", 1)
            anchored.problem = error.message
        }
        anchorState = Mutex(anchored)
        committer.configure(owner: self, commit: { [unowned self] batch in commit(batch) },
                            anchor: { [unowned self] last in anchor((last.seq, last.recordHash)) })
    }

    /// Why this ledger's anchor is broken (nil when intact); the gateway logs it at start.
    public var anchorFailure: String? {
        anchorState.withLock { $0.problem }
    }

    /// The last record's seq and hash (0 and the genesis hash for an empty ledger).
    private static func tail(_ connection: Connection) throws(LedgerError) -> (seq: Int64, hash: String) {
        do {
            if let last = try connection.cachedRows("SELECT seq, record_hash FROM usage ORDER BY seq DESC LIMIT 1").first,
               case .integer(let seq) = last[0], case .text(let hash) = last[1] {
                return (seq, hash)
            }
            // Everything archived: the chain continues after the last boundary.
            if let boundary = try connection.rows("SELECT through_seq, through_hash FROM usage_archives ORDER BY through_seq DESC LIMIT 1").first,
               case .integer(let seq) = boundary[0], case .text(let hash) = boundary[1] {
                return (seq, hash)
            }
            return (0, Ledger.genesisHash)
        } catch {
            throw LedgerError(.store, "cannot read the chain's tail: \(error.message)")
        }
    }

    /// Waits until every record queued so far is committed and anchored by a checkpoint.
    public func sync() { committer.sync() }

    /// Stops the writer thread once the queue is empty and writes a last checkpoint.
    public func close() {
        committer.stop()
        try? writer.execute("DELETE FROM ledger_meta WHERE name = '\(batchMarker)'")
        if let tail = try? Self.tail(writer) { anchor(tail) }
    }

    /// Writes the checkpoint for `tail` (writer thread or close). A chain that became shorter
    /// than its last checkpoint, or a checkpoint that disappeared, is tampering: the anchor is
    /// then left as it is, so verification keeps failing.
    private func anchor(_ tail: (seq: Int64, hash: String)) {
        anchorState.withLock { state in
            guard state.problem == nil else { return }
            if tail.seq < state.lastCheckpointSeq {
                state.problem = "the ledger ends at seq \(tail.seq) but was anchored at seq \(state.lastCheckpointSeq)"
                return
            }
            if !FileManager.default.fileExists(atPath: checkpointPath) {
                state.problem = "the checkpoint \(checkpointPath) disappeared"
                return
            }
            let checkpoint = LedgerCheckpoint(nodeID: nodeID, seq: tail.seq, hash: tail.hash, firstKeyedSeq: firstKeyedSeq)
            do throws(LedgerError) {
                try checkpoint.write(path: checkpointPath, key: key)
                state.lastCheckpointSeq = max(state.lastCheckpointSeq, tail.seq)
            } catch {
                state.problem = error.message
            }
        }
    }

    /// The columns of a record after its `seq`, as stored in a ledger file and in archives (of
    /// both stores), in `storedColumns` order.
    static let recordColumnDefinitions = """
        query_id TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,
            consumer TEXT NOT NULL, dataset TEXT NOT NULL, dataset_version TEXT NOT NULL,
            policy_version TEXT NOT NULL, status TEXT NOT NULL, error_code TEXT NOT NULL,
            rows INTEGER NOT NULL, cells INTEGER NOT NULL, bytes INTEGER NOT NULL,
            masked_cells INTEGER NOT NULL, suppressed_groups INTEGER NOT NULL, truncated INTEGER NOT NULL,
            vm_steps INTEGER NOT NULL, elapsed_us INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
            currency TEXT NOT NULL, sql_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL,
            record_hash TEXT NOT NULL, sql TEXT NOT NULL, rewritten_sql TEXT NOT NULL,
            chain INTEGER NOT NULL DEFAULT 1, purpose TEXT NOT NULL DEFAULT '',
            epsilon_micros INTEGER NOT NULL DEFAULT 0, client_address TEXT NOT NULL DEFAULT '',
            holder TEXT NOT NULL DEFAULT '', holder_share_ppm INTEGER NOT NULL DEFAULT 0,
            kind TEXT NOT NULL DEFAULT '', members TEXT NOT NULL DEFAULT '', extensions TEXT NOT NULL DEFAULT ''
        """

    static let schema = """
        CREATE TABLE IF NOT EXISTS usage (seq INTEGER PRIMARY KEY, \(recordColumnDefinitions));
        CREATE TABLE IF NOT EXISTS usage_archives (
            through_seq INTEGER PRIMARY KEY, through_hash TEXT NOT NULL, file TEXT NOT NULL, mac TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS usage_by_consumer_day ON usage(consumer, dataset, started_at);
        CREATE INDEX IF NOT EXISTS usage_by_time ON usage(started_at);
        CREATE TABLE IF NOT EXISTS usage_totals (\(totalsColumnDefinitions)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS usage_totals_archived (\(totalsColumnDefinitions)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """

    /// Running totals (`RunningTotals`): the records of consumer × dataset × period × start ×
    /// purpose summed. `usage_totals` sums every record ever appended; `usage_totals_archived` what
    /// `archive` moved out, so verification recomputes the first from the records and the second.
    static let totalsColumnDefinitions = """
        consumer TEXT NOT NULL, dataset TEXT NOT NULL, period TEXT NOT NULL, start INTEGER NOT NULL, purpose TEXT NOT NULL,
            records INTEGER NOT NULL, ok_queries INTEGER NOT NULL, ok_rows INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
            epsilon_micros INTEGER NOT NULL, refused INTEGER NOT NULL, suppressed_groups INTEGER NOT NULL,
            PRIMARY KEY (consumer, dataset, period, start, purpose)
        """

    /// The columns that later versions added to `usage`, for ledgers created before them.
    static let addedColumns: [(String, String)] = [
        ("chain", "INTEGER NOT NULL DEFAULT 1"), ("purpose", "TEXT NOT NULL DEFAULT ''"),
        ("epsilon_micros", "INTEGER NOT NULL DEFAULT 0"), ("client_address", "TEXT NOT NULL DEFAULT ''"),
        ("holder", "TEXT NOT NULL DEFAULT ''"), ("holder_share_ppm", "INTEGER NOT NULL DEFAULT 0"),
        ("kind", "TEXT NOT NULL DEFAULT ''"), ("members", "TEXT NOT NULL DEFAULT ''"), ("extensions", "TEXT NOT NULL DEFAULT ''"),
    ]

    // MARK: Appending

    /// Records waiting for a commit or being committed (the `ledger lag` metric).
    public var pendingCount: Int { committer.pendingCount }

    /// Queues `record`; `completion` runs on the writer thread once the record is durable (with
    /// its `seq` and hashes) or the commit failed. `hold` is dropped from this process's holds
    /// right after the commit, before the completion runs.
    public func append(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping Completion) {
        guard committer.enqueue(record, hold: hold, completion: completion) else {
            if let hold { holds.release(hold) }
            completion(.failure(LedgerError(.closed, "the ledger is closed")))
            return
        }
    }

    /// Writes a batch in one transaction; every record of a failed batch fails.
    private func commit(_ batch: [GroupCommit.Entry]) -> [Result<UsageRecord, LedgerError>] {
        let batchHolds = batch.compactMap(\.hold)
        do {
            try writer.execute("BEGIN IMMEDIATE")
            let tail = try Self.tail(writer)
            var chain = HashChain(key: key, nodeID: nodeID, seq: tail.seq, hash: tail.hash)
            var written: [Result<UsageRecord, LedgerError>] = []
            for entry in batch {
                let record = chain.link(entry.record)
                try writer.cached(Self.insertSQL) { (insert) throws(SQLiteError) in
                    try insert.bind(Self.columnValues(record))
                    _ = try insert.step()
                }
                // No record, no result: anything but exactly one stored row fails the batch.
                guard writer.changes == 1 else { throw LedgerError(.integrity, "the ledger did not store record \(record.seq)") }
                written.append(.success(record))
            }
            // Summed as stored (linking cuts long fields), so the totals match what verify recomputes.
            try Self.addTotals(RunningTotals.deltas(written.lazy.compactMap { try? $0.get() }), to: "usage_totals", writer)
            // The commit and the end of its holds are one step for quota decisions: a decision's
            // snapshot shows the batch's number exactly when it shows its records, so a committed
            // record counts instead of its hold, never both and never neither.
            if !batchHolds.isEmpty {
                batchCounter += 1
                _ = try writer.cachedRows("INSERT INTO ledger_meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                          [.text(batchMarker), .text(String(batchCounter))])
            }
            try holds.settle(batchHolds, batch: batchCounter) { () throws(SQLiteError) in try writer.execute("COMMIT") }
            return written
        } catch {
            try? writer.execute("ROLLBACK")
            for hold in batchHolds { holds.release(hold) }
            let failure = LedgerError(.store, "append failed: \(error)")
            return batch.map { _ in .failure(failure) }
        }
    }

    /// The stored columns in table order: what `columnValues` binds and `record(from:)` reads.
    static let storedColumns = """
        seq, query_id, started_at, finished_at, consumer, dataset, dataset_version,
            policy_version, status, error_code, rows, cells, bytes, masked_cells, suppressed_groups, truncated,
            vm_steps, elapsed_us, cost_micros, currency, sql_sha256, prev_hash, record_hash, sql, rewritten_sql, chain,
            purpose, epsilon_micros, client_address, holder, holder_share_ppm, kind, members, extensions
        """

    static let insertSQL = "INSERT INTO usage (\(storedColumns)) VALUES (\(Array(repeating: "?", count: 34).joined(separator: ",")))"

    static func columnValues(_ r: UsageRecord) -> [SQLValue] {
        [
            .integer(r.seq), .text(r.queryID), .integer(r.startedAt), .integer(r.finishedAt), .text(r.consumer),
            .text(r.dataset), .text(r.datasetVersion), .text(r.policyVersion), .text(r.status.rawValue),
            .text(r.errorCode), .integer(r.rows), .integer(r.cells), .integer(r.bytes), .integer(r.maskedCells),
            .integer(r.suppressedGroups), .integer(r.truncated ? 1 : 0), .integer(r.vmSteps),
            .integer(r.elapsedMicroseconds), .integer(r.costMicros), .text(r.currency), .text(r.sqlSHA256),
            .text(r.prevHash), .text(r.recordHash), .text(r.sql), .text(r.rewrittenSQL), .integer(r.chain),
            .text(r.purpose), .integer(r.epsilonMicros), .text(r.clientAddress), .text(r.holder), .integer(r.holderSharePPM),
            .text(RecordColumns.kind(r.kind)), .text(RecordColumns.members(r.members)), .text(RecordColumns.extensions(r.extensions)),
        ]
    }

    // MARK: Hash chain

    /// The keyed hash of `record` under this ledger's key (`LedgerChain.canonicalBytes`).
    public func hash(of record: UsageRecord) -> String {
        LedgerChain.keyedHash(of: record, key: key)
    }

    /// Verifies the whole ledger: every record's link, seq and hash (keyed from the first keyed
    /// record on, version 1 before it), and the anchor: the checkpoint must verify under the key
    /// and the ledger must reach it with the same hash. Returns nil when everything verifies.
    public func verify() throws(LedgerError) -> LedgerProblem? {
        // The checkpoint first: records committed after it was read are in the scan as well.
        let checkpoint: LedgerCheckpoint
        do {
            guard let read = try LedgerCheckpoint.read(path: checkpointPath, key: key) else {
                return LedgerProblem(seq: nil, reason: "the checkpoint \(checkpointPath) is missing (deleted, or the ledger key was replaced)")
            }
            checkpoint = read
        } catch {
            return LedgerProblem(seq: nil, reason: error.message)
        }
        let boundary: (seq: Int64, hash: String)
        switch try readLock.withLock({ _ throws(LedgerError) in try Self.archiveBoundary(reader, key: key) }) {
        case .failure(let problem): return problem
        case .success(let found): boundary = found
        }
        var verifier = ChainVerifier(key: key, firstKeyedSeq: checkpoint.firstKeyedSeq, anchorSeq: checkpoint.seq, after: boundary)
        var problem: LedgerProblem?
        try scan(where: "1", parameters: []) { record in
            problem = verifier.check(record, chain: record.chain)
            return problem == nil
        }
        if let problem = problem ?? verifier.finish(anchorHash: checkpoint.hash) { return problem }
        if let problem = try verifyTotals() { return problem }
        if let broken = anchorFailure {
            return LedgerProblem(seq: nil, reason: "the anchor was broken while the ledger was in use: \(broken)")
        }
        return nil
    }

    // MARK: Archives

    /// `HMAC-SHA256(K, "SGAR1" ‖ i through_seq ‖ t through_hash)`: an archive boundary that
    /// cannot be moved without the key.
    static func boundaryMAC(seq: Int64, hash: String, key: SymmetricKey) -> String {
        var encoder = CanonicalEncoder(magic: "SGAR1")
        encoder.integer(seq)
        encoder.text(hash)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: encoder.bytes, using: key))
    }

    /// Where the stored records of a ledger or archive file begin: the last archive boundary (its
    /// MAC checked) or the genesis.
    static func archiveBoundary(_ connection: Connection, key: SymmetricKey) throws(LedgerError) -> Result<(seq: Int64, hash: String), LedgerProblem> {
        let rows: [[SQLValue]]
        do {
            rows = try connection.rows("SELECT through_seq, through_hash, mac FROM usage_archives ORDER BY through_seq DESC LIMIT 1")
        } catch {
            throw LedgerError(.file, "cannot read the archive boundary: \(error.message)")
        }
        guard let row = rows.first else { return .success((0, Ledger.genesisHash)) }
        guard case .integer(let seq) = row[0], case .text(let hash) = row[1], case .text(let mac) = row[2],
              constantTimeEqual(boundaryMAC(seq: seq, hash: hash, key: key), mac) else {
            return .failure(LedgerProblem(seq: nil, reason: "the archive boundary does not verify under the ledger key"))
        }
        return .success((seq, hash))
    }

    /// Moves every record before the first one that started at or after `before` (µs) into a new
    /// SQLite file at `path`, which verifies on its own (`Ledger.verifyArchive`), and records the
    /// boundary (last archived `seq` and hash, MACed) in this ledger, so its chain stays checkable
    /// across the cut. Returns how many records moved.
    public func archive(before: Int64, to path: String) throws(LedgerError) -> Int64 {
        guard !FileManager.default.fileExists(atPath: path) else { throw LedgerError(.conflict, "\(path) exists already") }
        if let problem = try verify() { throw LedgerError(.integrity, "the ledger does not verify (\(problem)); nothing archived") }
        let boundary: (seq: Int64, hash: String)
        switch try readLock.withLock({ _ throws(LedgerError) in try Self.archiveBoundary(reader, key: key) }) {
        case .failure(let problem): throw LedgerError(.integrity, problem.description)
        case .success(let found): boundary = found
        }
        var records: [UsageRecord] = []
        var through = boundary
        try scan(where: "seq <= coalesce((SELECT min(seq) - 1 FROM usage WHERE started_at >= ?), (SELECT max(seq) FROM usage))",
                 parameters: [.integer(before)]) { record in
            records.append(record)
            through = (record.seq, record.recordHash)
            return true
        }
        guard !records.isEmpty else { return 0 }
        do {
            let archive = try Connection(path: path, mode: .readWriteCreate)
            try archive.execute(Self.schema)
            try archive.execute("BEGIN")
            guard let insert = try archive.prepare(Self.insertSQL) else { throw LedgerError(.store, "cannot prepare insert") }
            for record in records {
                insert.reset()
                try insert.bind(Self.columnValues(record))
                _ = try insert.step()
            }
            // The archive's own start (the previous boundary) and its end, both MACed.
            for (seq, hash) in [boundary, through] where seq > 0 {
                try archive.execute("INSERT INTO usage_archives VALUES (\(seq), '\(hash)', '', '\(Self.boundaryMAC(seq: seq, hash: hash, key: key))')")
            }
            try archive.execute("COMMIT")
            chmod(path, 0o600)
            try writer.execute("BEGIN IMMEDIATE")
            guard let row = try writer.prepare("INSERT INTO usage_archives VALUES (?, ?, ?, ?)") else { throw LedgerError(.store, "cannot prepare insert") }
            try row.bind([.integer(through.seq), .text(through.hash), .text(path), .text(Self.boundaryMAC(seq: through.seq, hash: through.hash, key: key))])
            _ = try row.step()
            try Self.addTotals(RunningTotals.deltas(records), to: "usage_totals_archived", writer)
            try writer.execute("DELETE FROM usage WHERE seq <= \(through.seq)")
            try writer.execute("COMMIT")
        } catch let error as LedgerError {
            try? writer.execute("ROLLBACK")
            throw error
        } catch {
            try? writer.execute("ROLLBACK")
            throw LedgerError(.file, "cannot archive to \(path): \(error)")
        }
        return Int64(records.count)
    }

    /// Verifies an archive file written by `archive` with this ledger's key: its records form a
    /// chain from its start boundary (or the genesis) to its end boundary.
    public func verifyArchive(at path: String) throws(LedgerError) -> LedgerProblem? {
        let archive: Connection
        let boundaries: [[SQLValue]]
        do {
            archive = try Connection(path: path, mode: .readOnly)
            boundaries = try archive.rows("SELECT through_seq, through_hash, mac FROM usage_archives ORDER BY through_seq")
        } catch {
            throw LedgerError(.file, "cannot read the archive \(path): \(error.message)")
        }
        var marks: [(seq: Int64, hash: String)] = []
        for row in boundaries {
            guard case .integer(let seq) = row[0], case .text(let hash) = row[1], case .text(let mac) = row[2],
                  constantTimeEqual(Self.boundaryMAC(seq: seq, hash: hash, key: key), mac) else {
                return LedgerProblem(seq: nil, reason: "an archive boundary does not verify under the ledger key")
            }
            marks.append((seq, hash))
        }
        guard let end = marks.last else { return LedgerProblem(seq: nil, reason: "the archive has no end boundary") }
        let start = marks.count > 1 ? marks[marks.count - 2] : (seq: Int64(0), hash: Ledger.genesisHash)
        var verifier = ChainVerifier(key: key, firstKeyedSeq: firstKeyedSeq, anchorSeq: end.seq, after: start)
        var problem: LedgerProblem?
        do {
            guard let statement = try archive.prepare("SELECT * FROM usage ORDER BY seq") else { return nil }
            while try statement.step() {
                let record = Self.record(from: statement)
                problem = verifier.check(record, chain: record.chain)
                if problem != nil { break }
            }
        } catch {
            throw LedgerError(.file, "cannot read the archive \(path): \(error.message)")
        }
        return problem ?? verifier.finish(anchorHash: end.hash)
    }

    // MARK: Reading

    /// Decides `request` against the running totals and this process's holds.
    public func reserve(_ request: QuotaRequest) throws(LedgerError) -> QuotaDecision {
        try holds.reserve(request) { () throws(LedgerError) in
            let read = try readTotals(consumer: request.consumer, dataset: request.dataset, day: request.day, month: request.month)
            return (read.totals.committedUse(epsilonPeriod: request.limits.epsilonPeriod), read.visibleBatch)
        }
    }

    public func release(_ hold: QuotaHold) { holds.release(hold) }

    public func totals(consumer: String, dataset: String, at time: Int64) throws(LedgerError) -> UsageTotals {
        try readTotals(consumer: consumer, dataset: dataset, day: Timestamp.startOfDay(containing: time),
                       month: Timestamp.startOfMonth(containing: time)).totals
    }

    public func receipt(queryID: String) throws(LedgerError) -> Receipt? {
        var found: UsageRecord?
        try scan(where: "query_id = ?", parameters: [.text(queryID)]) { record in found = record; return false }
        guard let record = found else { return nil }
        return try readLock.withLock { _ throws(LedgerError) -> Receipt? in
            do throws(SQLiteError) {
                let rows = try reader.rows("SELECT seq, prev_hash, record_hash FROM usage WHERE seq >= ? ORDER BY seq", [.integer(record.seq)])
                let links = rows.compactMap { row -> Receipt.Link? in
                    guard case .integer(let seq) = row[0], case .text(let prev) = row[1], case .text(let hash) = row[2] else { return nil }
                    return Receipt.Link(seq: seq, prevHash: prev, recordHash: hash)
                }
                return Receipt(record: record, links: links)
            } catch {
                throw LedgerError(.store, "cannot read the chain after seq \(record.seq): \(error.message)")
            }
        }
    }

    /// Calls `visit` for each record matching `filter`, in `seq` order, until it returns false.
    public func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError) {
        var clauses: [String] = []
        var parameters: [SQLValue] = []
        if let from = filter.from { clauses.append("started_at >= ?"); parameters.append(.integer(from)) }
        if let to = filter.to { clauses.append("started_at < ?"); parameters.append(.integer(to)) }
        if let consumer = filter.consumer { clauses.append("consumer = ?"); parameters.append(.text(consumer)) }
        if let dataset = filter.dataset { clauses.append("dataset = ?"); parameters.append(.text(dataset)) }
        try scan(where: clauses.isEmpty ? "1" : clauses.joined(separator: " AND "), parameters: parameters, visit)
    }

    /// Calls `visit` with each record (its `chain` the stored version).
    private func scan(where condition: String, parameters: [SQLValue], _ visit: (UsageRecord) -> Bool) throws(LedgerError) {
        try readLock.withLock { _ throws(LedgerError) in
            do throws(SQLiteError) {
                guard let statement = try reader.prepare("SELECT * FROM usage WHERE \(condition) ORDER BY seq") else { return }
                try statement.bind(parameters)
                while try statement.step() {
                    var record = Self.record(from: statement)
                    record.nodeID = nodeID
                    if !visit(record) { break }
                }
            } catch {
                throw LedgerError(.store, "cannot read usage: \(error.message)")
            }
        }
    }

    static func record(from s: Statement) -> UsageRecord {
        func text(_ i: Int) -> String {
            if case .text(let value) = s.value(at: i) { return value }
            return ""
        }
        var record = UsageRecord(
            queryID: text(1), startedAt: s.integer(at: 2), finishedAt: s.integer(at: 3), consumer: text(4),
            dataset: text(5), datasetVersion: text(6), policyVersion: text(7),
            status: UsageStatus(rawValue: text(8)) ?? .failed, errorCode: text(9), rows: s.integer(at: 10),
            cells: s.integer(at: 11), bytes: s.integer(at: 12), maskedCells: s.integer(at: 13),
            suppressedGroups: s.integer(at: 14), truncated: s.integer(at: 15) != 0, vmSteps: s.integer(at: 16),
            elapsedMicroseconds: s.integer(at: 17), costMicros: s.integer(at: 18), currency: text(19),
            sqlSHA256: text(20), sql: text(23), rewrittenSQL: text(24))
        record.seq = s.integer(at: 0)
        record.prevHash = text(21)
        record.recordHash = text(22)
        record.chain = s.integer(at: 25)
        // An archive written before version 3 lacks the later columns (they are empty there).
        if s.columnCount > 30 {
            record.purpose = text(26)
            record.epsilonMicros = s.integer(at: 27)
            record.clientAddress = text(28)
            record.holder = text(29)
            record.holderSharePPM = s.integer(at: 30)
        }
        if s.columnCount > 33 { record.readVersion4(kind: text(31), members: text(32), extensions: text(33)) }
        return record
    }
}
