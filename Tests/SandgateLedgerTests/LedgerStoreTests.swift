import Crypto
import Foundation
import SandgateLedger
import SandgateLedgerPostgres
import SandgateSQLite
import SandgateTestSupport
import Synchronization
import Testing
import SandgateSupport

/// The two implementations of `LedgerStore`; every test of `LedgerStoreTests` runs against both.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A store under test, how to open another handle (another node) on the same storage, and raw
/// SQL access to its rows for tampering.
struct StoreUnderTest {
    let kind: StoreKind
    let store: any LedgerStore
    /// Opens another store on the same storage; for PostgreSQL, as node `node`.
    let open: (_ node: String) throws -> any LedgerStore
    /// Runs SQL on the storage itself, as someone with write access to it would.
    let execute: (String) throws -> Void
    /// The stored columns in table order (the SQLite table has no `node_id`).
    let columns: [String]
    /// The ledger key's file (PostgreSQL stores; the SQLite ledger keeps its key beside the file).
    var keyPath = ""
    /// The SQLite ledger's file, or the PostgreSQL database.
    var path = ""
    var url: PostgresLedgerURL?

    /// Opens a fresh store of `kind`; the PostgreSQL case is skipped where PostgreSQL is not
    /// installed (`PostgresTestServer.sharedOrSkip`).
    static func make(_ kind: StoreKind) throws -> StoreUnderTest {
        // A private directory: a PostgreSQL node keeps its checkpoint beside the key.
        let key = (try temporaryLedgerDirectory() as NSString).deletingLastPathComponent + "/usage.key"
        switch kind {
        case .sqlite:
            let path = try temporaryLedgerDirectory()
            return StoreUnderTest(
                kind: kind, store: try Ledger(path: path), open: { _ in try Ledger(path: path) },
                execute: { try Connection(path: path, mode: .readWrite).execute($0) },
                columns: ["seq"] + storedColumns, path: path)
        case .postgres:
            let server = try PostgresTestServer.sharedOrSkip()
            let url = try server.makeDatabase()
            return StoreUnderTest(
                kind: kind, store: try PostgresLedgerStore(url: url, nodeID: "node-a", keyPath: key),
                open: { try PostgresLedgerStore(url: url, nodeID: $0, keyPath: key) },
                execute: { try server.execute($0, on: url) },
                columns: ["node_id", "seq"] + storedColumns, keyPath: key, url: url)
        }
    }

    static let storedColumns = [
        "query_id", "started_at", "finished_at", "consumer", "dataset", "dataset_version", "policy_version", "status",
        "error_code", "rows", "cells", "bytes", "masked_cells", "suppressed_groups", "truncated", "vm_steps", "elapsed_us",
        "cost_micros", "currency", "sql_sha256", "prev_hash", "record_hash", "sql", "rewritten_sql", "chain", "purpose",
        "epsilon_micros", "client_address", "holder", "holder_share_ppm",
    ]

    /// SQL that copies record `seq` as a new record at `newSeq` with another query id and cost
    /// (an inserted record, its hashes copied since the key is unknown).
    func insertCopy(of seq: Int, at newSeq: Int) -> String {
        let select = columns.map { column in
            switch column {
            case "seq": "\(newSeq)"
            case "query_id": "'forged'"
            case "cost_micros": "0"
            default: column
            }
        }
        return "INSERT INTO usage (\(columns.joined(separator: ", "))) SELECT \(select.joined(separator: ", ")) FROM usage WHERE seq = \(seq)"
    }
}

@Suite struct LedgerStoreTests {
    func appendFive(_ store: any LedgerStore) throws -> [UsageRecord] {
        try (1...5).map { try store.append(sampleRecord($0)) }
    }

    @Test("appends form one chain that verifies and reads back as stored", arguments: StoreKind.allCases)
    func chain(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let stored = try appendFive(subject.store)
        #expect(stored.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(stored.first?.prevHash == HashChain.genesisHash)
        #expect(zip(stored.dropFirst(), stored).allSatisfy { $0.prevHash == $1.recordHash })
        #expect(stored.allSatisfy { $0.nodeID == subject.store.nodeID })
        var read: [UsageRecord] = []
        try subject.store.records { read.append($0); return true }
        #expect(read == stored)
        #expect(try subject.store.verify() == nil)
        var filtered: [Int64] = []
        try subject.store.records(from: stored[1].startedAt, to: stored[3].startedAt) { filtered.append($0.seq); return true }
        #expect(filtered == [2, 3])
    }

    @Test("an edited field is found at its seq", arguments: StoreKind.allCases)
    func editedField(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        try subject.execute("UPDATE usage SET cost_micros = 0 WHERE seq = 4")
        #expect(try subject.store.verify()?.seq == 4)
    }

    @Test("a deleted row is found at the next seq", arguments: StoreKind.allCases)
    func deletedRow(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        try subject.execute("DELETE FROM usage WHERE seq = 3")
        #expect(try subject.store.verify()?.seq == 4)
    }

    @Test("a deleted last row is found as truncation", arguments: StoreKind.allCases)
    func deletedTail(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        subject.store.sync()
        try subject.execute("DELETE FROM usage WHERE seq = 5")
        let problem = try #require(try subject.store.verify())
        #expect(problem.seq == 5)
        #expect(problem.reason.contains("truncated"))
    }

    @Test("an inserted row is found at its seq", arguments: StoreKind.allCases)
    func insertedRow(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        // Make room at seq 3, then copy record 2 there under another query id.
        try subject.execute("UPDATE usage SET seq = seq + 1000 WHERE seq >= 3")
        try subject.execute("UPDATE usage SET seq = seq - 999 WHERE seq >= 1000")
        try subject.execute(subject.insertCopy(of: 2, at: 3))
        #expect(try subject.store.verify()?.seq == 3)
    }

    @Test("an appended forged row past the tail is found", arguments: StoreKind.allCases)
    func forgedTail(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        try subject.execute(subject.insertCopy(of: 5, at: 6))
        #expect(try subject.store.verify()?.seq == 6)
    }

    @Test("reordered rows are found at the first moved seq", arguments: StoreKind.allCases)
    func reorderedRows(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        try subject.execute("UPDATE usage SET seq = 100 WHERE seq = 2")
        try subject.execute("UPDATE usage SET seq = 2 WHERE seq = 3")
        try subject.execute("UPDATE usage SET seq = 3 WHERE seq = 100")
        #expect(try subject.store.verify()?.seq == 2)
    }

    @Test("a receipt joins a record to the chain's tail and survives a JSON round trip", arguments: StoreKind.allCases)
    func receipt(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let stored = try appendFive(subject.store)
        let receipt = try #require(try subject.store.receipt(queryID: "q2"))
        #expect(receipt.record == stored[1])
        #expect(receipt.links.map(\.seq) == [2, 3, 4, 5])
        #expect(receipt.links.last?.recordHash == stored[4].recordHash)
        #expect(receipt.check() == nil)
        let parsed = try #require(Receipt.parse(Data(receipt.json.utf8)))
        #expect(parsed == receipt)
        var broken = receipt.links
        broken.remove(at: 1)
        #expect(Receipt(record: receipt.record, links: broken).check()?.seq == 4)
        #expect(try subject.store.receipt(queryID: "nope") == nil)
    }

    @Test("a receipt's record hash recomputes under the key, and an edited record does not")
    func receiptWithKey() throws {
        let key = SymmetricKey(data: Array(0..<32) as [UInt8])
        var chain = HashChain(key: key, nodeID: "n")
        let records = (1...3).map { chain.link(sampleRecord($0)) }
        let receipt = Receipt(record: records[0], links: records.map { Receipt.Link(seq: $0.seq, prevHash: $0.prevHash, recordHash: $0.recordHash) })
        #expect(receipt.check(key: key) == nil)
        var edited = records[0]
        edited.costMicros = 0
        #expect(Receipt(record: edited, links: receipt.links).check(key: key) != nil)
    }

    @Test("a receipt whose record was edited while its canonical bytes were kept fails without the key (chain 2 and 3)",
          arguments: [LedgerChain.firstKeyedVersion, LedgerChain.currentVersion])
    func editedReceiptWithoutKey(chainVersion: Int64) throws {
        var chain = HashChain(key: SymmetricKey(data: Array(0..<32) as [UInt8]), nodeID: "n")
        var record = chain.link(sampleRecord(1))
        record.chain = chainVersion
        let receipt = Receipt(record: record, links: [Receipt.Link(seq: record.seq, prevHash: record.prevHash, recordHash: record.recordHash)])
        let json = receipt.json
        #expect(try #require(Receipt.parse(Data(json.utf8))).check() == nil)
        #expect(json.contains("\"cost_micros\":1020,"))
        let edited = try #require(Receipt.parse(Data(json.replacingOccurrences(of: "\"cost_micros\":1020,", with: "\"cost_micros\":1,").utf8)))
        #expect(edited.record.costMicros == 1)
        #expect(edited.check()?.reason == "the canonical bytes are not the record's")
    }

    @Test("a second handle continues the same chain", arguments: StoreKind.allCases)
    func reopen(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        _ = try appendFive(subject.store)
        subject.store.close()
        let again = try subject.open(subject.store.nodeID)
        #expect(try again.append(sampleRecord(6)).seq == 6)
        #expect(try again.verify() == nil)
    }

    /// Two open handles writing as one node (a CLI beside a server, or a node id given twice):
    /// their appends interleave, every record lands once, and the chain stays one chain.
    @Test("two handles appending as the same node keep one chain", arguments: StoreKind.allCases)
    func twoWritersOneNode(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let other = try subject.open(subject.store.nodeID)
        var seqs: [Int64] = []
        for index in 1...6 {
            seqs.append(try (index.isMultiple(of: 2) ? other : subject.store).append(sampleRecord(index)).seq)
        }
        #expect(seqs == [1, 2, 3, 4, 5, 6])
        #expect(try subject.store.verify() == nil)
    }

    /// PostgreSQL's text cannot hold U+0000, a consumer's SQL can: such a record (and one that
    /// starts with the storage marker U+0001) is stored, read back exactly and verifies, and the
    /// records committed in the same batch are not lost with it.
    @Test("text with U+0000 or a leading U+0001 round-trips in a batch of ordinary records", arguments: StoreKind.allCases)
    func controlCharactersRoundTrip(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        var odd = sampleRecord(2, consumer: "na\u{0}me")
        odd.sql = "SELECT 1\u{0}; -- \u{0}"
        odd.rewrittenSQL = "\u{1}AAAA"
        let records = [sampleRecord(1), odd, sampleRecord(3)]
        let done = DispatchGroup()
        let results = Mutex<[Int: UsageRecord]>([:])
        for (index, record) in records.enumerated() {
            done.enter()
            subject.store.append(record) { result in
                if case .success(let stored) = result { results.withLock { $0[index] = stored } }
                done.leave()
            }
        }
        done.wait()
        #expect(results.withLock { $0.count } == 3)
        var read: [UsageRecord] = []
        try subject.store.records { read.append($0); return true }
        #expect(read.count == 3)
        let back = try #require(read.first { $0.queryID == "q2" })
        #expect(back.sql == odd.sql && back.rewrittenSQL == odd.rewrittenSQL && back.consumer == odd.consumer)
        var filtered = 0
        try subject.store.records(consumer: "na\u{0}me") { _ in filtered += 1; return true }
        #expect(filtered == 1)
        #expect(try subject.store.verify() == nil)
    }

    /// 64 threads race for a quota of 10 queries through one store; each granted hold is charged
    /// by an `ok` record. Exactly 10 run, and the ledger holds exactly 10.
    @Test("quota holds are exact under concurrent requests", arguments: StoreKind.allCases)
    func exactQuota(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        try raceForQuota(stores: [subject.store], threads: 64, limit: 10)
    }

    /// Red team: 8 concurrent queries all started below `monthly_cost_micros` and spent 8.7 × it.
    /// Each hold now carries its query's most possible cost: whatever the concurrency, the month's
    /// charges pass the limit by less than one query's cost (as when queries come one by one).
    @Test("monthly_cost_micros holds the worst cost of queries in flight", arguments: StoreKind.allCases)
    func monthlyCostRace(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let day = Timestamp.startOfDay(containing: 1_795_000_000_000_000)
        let limit: Int64 = 5_000
        let request = QuotaRequest(consumer: "spender", dataset: "retail", day: day, month: Timestamp.startOfMonth(containing: day),
                                   rowLimit: 10, limits: QuotaLimits(monthlyCostMicros: limit), costMicros: 1_500)
        let failures = Mutex<[String]>([])
        let store = subject.store
        concurrently(32) { index in
            do {
                if case .granted(let hold, _) = try store.reserve(request) {
                    #expect(hold.costMicros == 1_500)
                    _ = try store.append(sampleRecord(index, consumer: "spender"), hold: hold)   // costs 1,020
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        var spent: Int64 = 0
        var count = 0
        try subject.store.records(consumer: "spender") { spent += $0.costMicros; count += 1; return true }
        #expect(count >= 1 && spent < limit + 1_020, "\(count) queries spent \(spent)")
        // Once the month's charges reach the limit, the next query is refused.
        if spent >= limit {
            #expect(try subject.store.reserve(request) == .exceeded(quota: "monthly_cost_micros", limit: limit))
        }
    }

    @Test("a hold released without a record frees its query", arguments: StoreKind.allCases)
    func releasedHold(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let request = QuotaRequest(consumer: "analyst-a", dataset: "retail", day: 0, month: 0, rowLimit: 100,
                                   limits: QuotaLimits(dailyQueries: 1, dailyRows: 50))
        guard case .granted(let hold, let rows) = try subject.store.reserve(request) else {
            Issue.record("the first request must be granted (\(kind))")
            return
        }
        #expect(rows == 50 && hold.rows == 50)
        #expect(try subject.store.reserve(request) == .exceeded(quota: "daily_queries", limit: 1))
        subject.store.release(hold)
        guard case .granted = try subject.store.reserve(request) else {
            Issue.record("a released hold must free its query (\(kind))")
            return
        }
    }

    /// Issue 10: ε is held with the quotas, whatever the day; a hold released without a record
    /// refunds it; a record's `epsilon_micros` spends it; records before the period do not count.
    @Test("ε budget: held across days, refunded by release, spent by the record, counted from the period's start", arguments: StoreKind.allCases)
    func epsilonBudget(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let now: Int64 = 1_795_000_000_000_000
        let day = Timestamp.startOfDay(containing: now), month = Timestamp.startOfMonth(containing: now)
        func request(day: Int64) -> QuotaRequest {
            QuotaRequest(consumer: "analyst-a", dataset: "retail", day: day, month: month, rowLimit: 10,
                         limits: QuotaLimits(epsilonMicros: 1_000_000, epsilonPeriod: .month), epsilonMicros: 600_000)
        }
        // Spent before the month began: not counted.
        var old = sampleRecord(1, startedAt: month - 86_400_000_000)
        old.epsilonMicros = 900_000
        _ = try subject.store.append(old)
        guard case .granted(let hold, _) = try subject.store.reserve(request(day: day)) else {
            Issue.record("the first request must be granted (\(kind))")
            return
        }
        #expect(hold.epsilonMicros == 600_000)
        // Held on another day of the same month: 0.6 + 0.6 > 1.
        #expect(try subject.store.reserve(request(day: day + 86_400_000_000)) == .budgetExhausted(remainingMicros: 400_000, budgetMicros: 1_000_000))
        subject.store.release(hold)
        guard case .granted(let second, _) = try subject.store.reserve(request(day: day)) else {
            Issue.record("a released hold must refund its ε (\(kind))")
            return
        }
        var spent = sampleRecord(2, startedAt: now)
        spent.epsilonMicros = 600_000
        _ = try subject.store.append(spent, hold: second)
        #expect(try subject.store.reserve(request(day: day)) == .budgetExhausted(remainingMicros: 400_000, budgetMicros: 1_000_000))
        #expect(try subject.store.verify() == nil)
    }

    @Test("monthly cost counts every record of the month", arguments: StoreKind.allCases)
    func monthlyCost(kind: StoreKind) throws {
        let subject = try StoreUnderTest.make(kind)
        let month = Timestamp.startOfMonth(containing: 1_795_000_000_000_000)
        let request = QuotaRequest(consumer: "analyst-a", dataset: "retail", day: Timestamp.startOfDay(containing: 1_795_000_000_000_000),
                                   month: month, rowLimit: 100, limits: QuotaLimits(monthlyCostMicros: 3_000))
        for index in 1...2 { _ = try subject.store.append(sampleRecord(index)) }   // 2 × 1020
        #expect(try { if case .granted = try subject.store.reserve(request) { true } else { false } }())
        _ = try subject.store.append(sampleRecord(3))                               // 3060 ≥ 3000
        #expect(try subject.store.reserve(request) == .exceeded(quota: "monthly_cost_micros", limit: 3_000))
    }
}

/// `threads` threads spread over `stores` (nodes) race for `limit` queries; asserts exactly
/// `limit` were granted and recorded, and that every chain verifies.
func raceForQuota(stores: [any LedgerStore], threads: Int, limit: Int64) throws {
    let granted = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
    let day = Timestamp.startOfDay(containing: 1_795_000_000_000_000)
    let request = QuotaRequest(consumer: "racer", dataset: "retail", day: day, month: Timestamp.startOfMonth(containing: day),
                               rowLimit: 10, limits: QuotaLimits(dailyQueries: limit))
    concurrently(threads) { index in
        let store = stores[index % stores.count]
        do {
            if case .granted(let hold, _) = try store.reserve(request) {
                granted.add(1, ordering: .relaxed)
                _ = try store.append(sampleRecord(index, consumer: "racer"), hold: hold)
            }
        } catch {
            failures.withLock { $0.append("\(error)") }
        }
    }
    #expect(failures.withLock { $0 } == [])
    #expect(granted.load(ordering: .relaxed) == Int(limit))
    let stored = try stores[0].totals(consumer: "racer", dataset: "retail", at: day)
    #expect(stored.day.okQueries == limit && stored.total.records == limit)
    for store in stores { #expect(try store.verify() == nil) }
}

@Suite struct PostgresLedgerTests {
    @Test("three nodes on one PostgreSQL ledger: exact quotas, one chain per node, all verify", .needsPostgres)
    func threeNodes() throws {
        let subject = try StoreUnderTest.make(.postgres)
        let nodes = [subject.store, try subject.open("node-b"), try subject.open("node-c")]
        try raceForQuota(stores: nodes, threads: 96, limit: 10)
        var perNode: [String: [Int64]] = [:]
        try nodes[0].records { perNode[$0.nodeID, default: []].append($0.seq); return true }
        #expect(perNode.values.reduce(0) { $0 + $1.count } == 10)
        for seqs in perNode.values { #expect(seqs == Array(1...Int64(seqs.count))) }
    }

    /// `usage archive` on a shared ledger: every node's old records move to one file that verifies
    /// on its own; each chain verifies across its cut and continues; a node whose records all
    /// moved reopens cleanly; tampering on either side is found.
    @Test("archives of a shared ledger: per-node boundaries, chains verify across the cut, tampering is found", .needsPostgres)
    func archive() throws {
        let subject = try StoreUnderTest.make(.postgres)
        let store = try #require(subject.store as? PostgresLedgerStore)
        let other = try #require(try subject.open("node-b") as? PostgresLedgerStore)
        let day: Int64 = 86_400_000_000
        let base: Int64 = 1_795_000_000_000_000
        for index in 1...4 { _ = try store.append(sampleRecord(index, startedAt: base + Int64(index / 3) * day)) }   // days 0,0,1,1
        for index in 5...6 { _ = try other.append(sampleRecord(index, startedAt: base)) }                              // day 0
        let cut = Timestamp.startOfDay(containing: base + day)
        let out = NSTemporaryDirectory() + "sandgate-archive-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect(try store.archive(before: cut, to: out) == 4)
        let key = try #require(try LedgerKey.read(path: subject.keyPath))
        #expect(NodeArchive.isNodeArchive(path: out))
        #expect(try NodeArchive.verify(path: out, key: key) == nil)
        #expect(try store.verify() == nil)
        var kept: [String] = []
        try store.records { kept.append("\($0.nodeID)/\($0.seq)"); return true }
        #expect(kept == ["node-a/3", "node-a/4"])
        // Both chains continue; node-b, all of whose records moved, reopens without an anchor problem.
        #expect(try store.append(sampleRecord(7)).seq == 5)
        let reopened = try subject.open("node-b")
        #expect(reopened.anchorFailure == nil)
        #expect(try reopened.append(sampleRecord(8)).seq == 3)
        #expect(try store.verify() == nil)
        // A second archive starts where the first ended, per node.
        let second = NSTemporaryDirectory() + "sandgate-archive-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: second) }
        #expect(try store.archive(before: Int64.max, to: second) == 4)
        #expect(try NodeArchive.verify(path: second, key: key) == nil)
        #expect(try store.verify() == nil)
        // Tampering: an archived record edited; a boundary moved; a boundary given to another node.
        try Connection(path: out, mode: .readWrite).execute("UPDATE usage SET cost_micros = 0 WHERE node_id = 'node-a' AND seq = 2")
        #expect(try NodeArchive.verify(path: out, key: key)?.seq == 2)
        try subject.execute("UPDATE usage_archives SET through_seq = 10 WHERE node_id = 'node-b' AND through_seq = 3")
        #expect(try store.verify() != nil)
        try subject.execute("UPDATE usage_archives SET through_seq = 3 WHERE node_id = 'node-b' AND through_seq = 10")
        #expect(try store.verify() == nil)
        try subject.execute("UPDATE usage_archives SET node_id = 'node-c' WHERE node_id = 'node-b'")
        #expect(try store.verify() != nil)
    }

    /// Red team: the anchor rows live in the database an attacker may write. A node's checkpoint
    /// kept outside it (beside the key) catches a deleted node and a rolled-back tail.
    @Test("a node deleted from the database, or its tail rolled back with an older anchor, fails verify against the checkpoint outside it", .needsPostgres)
    func checkpointOutsideTheDatabase() throws {
        let subject = try StoreUnderTest.make(.postgres)
        let other = try subject.open("node-b")
        for index in 1...3 { _ = try subject.store.append(sampleRecord(index)) }
        _ = try other.append(sampleRecord(4))
        // The attacker keeps a copy of node-b's valid anchor row at seq 1 …
        try subject.execute("CREATE TABLE saved AS SELECT * FROM usage_nodes WHERE node_id = 'node-b'")
        _ = try other.append(sampleRecord(5))
        subject.store.close()
        other.close()
        let checkpoint = (subject.keyPath as NSString).deletingLastPathComponent + "/usage-node-node-b.checkpoint"
        #expect(FileManager.default.fileExists(atPath: checkpoint))
        let verifier = try subject.open("node-a")
        #expect(try verifier.verify() == nil)
        // … and rolls node-b back: deletes seq 2 and puts the old anchor row (its MAC valid) back.
        try subject.execute("DELETE FROM usage WHERE node_id = 'node-b' AND seq = 2")
        try subject.execute("UPDATE usage_nodes SET seq = saved.seq, hash = saved.hash, mac = saved.mac FROM saved WHERE usage_nodes.node_id = 'node-b'")
        let rolledBack = try #require(try verifier.verify())
        #expect(rolledBack.reason.contains("rolled back"), "\(rolledBack)")
        // Delete node-b entirely (records and anchor): verified inside the database, not outside.
        try subject.execute("DELETE FROM usage WHERE node_id = 'node-b'")
        try subject.execute("DELETE FROM usage_nodes WHERE node_id = 'node-b'")
        let problem = try #require(try verifier.verify())
        #expect(problem.reason.contains("node-b") && problem.reason.contains("deleted"), "\(problem)")
    }

    @Test("URLs name a user, a host and a database", arguments: [
        ("postgres://sandgate@127.0.0.1:5432/ledger", true), ("postgresql://u:pw@db/x", true),
        ("postgres://127.0.0.1/ledger", false), ("postgres://u@h/", false), ("mysql://u@h/x", false),
    ])
    func urls(text: String, valid: Bool) {
        #expect((PostgresLedgerURL(text) != nil) == valid)
        #expect(PostgresLedgerURL("postgres://u:secret@h:1/d")?.description.contains("secret") == false)
    }

    /// PostgreSQL stops (like a crash) while the store is open: appends and quota decisions fail
    /// (the gateway answers `unavailable` and releases nothing); once it is back, the same store
    /// appends again without a restart and the chain still verifies.
    @Test("the store recovers by itself when PostgreSQL comes back", .needsPostgres)
    func recovery() throws {
        let server = try PostgresTestServer.makePrivate()
        defer { server.destroy() }
        let url = try server.makeDatabase()
        let store = try PostgresLedgerStore(url: url, nodeID: "n", keyPath: (try temporaryLedgerDirectory() as NSString).deletingLastPathComponent + "/usage.key")
        _ = try store.append(sampleRecord(1))
        server.stop()
        #expect(throws: LedgerError.self) { try store.append(sampleRecord(2)) }
        #expect(throws: LedgerError.self) {
            try store.reserve(QuotaRequest(consumer: "a", dataset: "retail", day: 0, month: 0, rowLimit: 1, limits: QuotaLimits(dailyQueries: 5)))
        }
        try server.start()
        #expect(try store.append(sampleRecord(3)).seq == 2)
        #expect(try store.verify() == nil)
    }

    /// A PostgreSQL that stops answering without closing its connections (a hung server, a
    /// partition) once kept a gateway's workers waiting for good, so it never exited after SIGINT:
    /// a statement waits at most the answer deadline, then its session is closed and it fails.
    @Test("a PostgreSQL that stops answering fails a quota decision at the answer deadline instead of blocking for good", .needsPostgres)
    func unansweredStatementFails() throws {
        let server = try PostgresTestServer.makePrivate()
        defer { server.destroy() }
        let store = try PostgresLedgerStore(url: try server.makeDatabase(), nodeID: "n",
                                            keyPath: (try temporaryLedgerDirectory() as NSString).deletingLastPathComponent + "/usage.key",
                                            answerTimeout: .seconds(2))
        let request = QuotaRequest(consumer: "a", dataset: "retail", day: 0, month: 0, rowLimit: 1, limits: QuotaLimits(dailyQueries: 5))
        // A decision before the pause leaves an open session for the one after it.
        _ = try store.reserve(request)
        server.pause()
        defer { server.resume() }
        let outcome = Outcome()
        Thread { outcome.set(Result { () throws(LedgerError) in try store.reserve(request) }.map { _ in () }) }.start()
        try waitUntil("the quota decision returning (no deadline: it blocks for good)") { outcome.value != nil }
        #expect(throws: LedgerError.self) { try outcome.value?.get() }
    }

    @Test("closing the store while PostgreSQL stops answering with a record queued returns, the record failed", .needsPostgres)
    func closeWhileUnanswered() throws {
        let server = try PostgresTestServer.makePrivate()
        defer { server.destroy() }
        let store = try PostgresLedgerStore(url: try server.makeDatabase(), nodeID: "n",
                                            keyPath: (try temporaryLedgerDirectory() as NSString).deletingLastPathComponent + "/usage.key",
                                            answerTimeout: .seconds(2))
        _ = try store.append(sampleRecord(1))
        server.pause()
        defer { server.resume() }
        let appended = Outcome()
        store.append(sampleRecord(2)) { result in appended.set(result.map { _ in () }) }
        let closed = Outcome()
        Thread {
            store.close()
            closed.set(.success(()))
        }.start()
        try waitUntil("close returning (no deadline: the writer waits for good)") { closed.value != nil }
        #expect(throws: LedgerError.self) { try appended.value?.get() }
    }
}

/// A result handed from a thread to the test.
final class Outcome: Sendable {
    private let result = Mutex<Result<Void, LedgerError>?>(nil)
    var value: Result<Void, LedgerError>? { result.withLock { $0 } }
    func set(_ value: Result<Void, LedgerError>) { result.withLock { $0 = value } }
}
