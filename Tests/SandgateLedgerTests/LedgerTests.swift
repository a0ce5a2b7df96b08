import Foundation
import SandgateLedger
import SandgateSQLite
import Testing
import SandgateSupport

func temporaryLedgerPath() -> String {
    NSTemporaryDirectory() + "sandgate-ledger-\(UUID().uuidString).sqlite"
}

func sampleRecord(_ index: Int, consumer: String = "analyst-a", startedAt: Int64 = 1_795_000_000_000_000) -> UsageRecord {
    UsageRecord(
        queryID: "q\(index)", startedAt: startedAt + Int64(index), finishedAt: startedAt + Int64(index) + 5,
        consumer: consumer, dataset: "retail", datasetVersion: "d", policyVersion: "p", status: .ok, errorCode: "",
        rows: Int64(index), cells: Int64(index * 2), bytes: 10, maskedCells: 1, suppressedGroups: 0,
        truncated: false, vmSteps: 100, elapsedMicroseconds: 5, costMicros: 1020, currency: "CNY",
        sqlSHA256: String(repeating: "a", count: 64), sql: "SELECT \"x\", 'y,z'\n", rewrittenSQL: "SELECT 1")
}

@Suite struct LedgerTests {
    @Test("appends are sequential and the hash chain verifies")
    func chain() throws {
        let path = temporaryLedgerPath()
        let ledger = try Ledger(path: path)
        var previous = Ledger.genesisHash
        for index in 1...5 {
            let stored = try ledger.append(sampleRecord(index))
            #expect(stored.seq == Int64(index))
            #expect(stored.prevHash == previous)
            #expect(stored.recordHash == ledger.hash(of: stored))
            previous = stored.recordHash
        }
        #expect(try ledger.verify() == nil)
    }

    @Test("red team: a trigger planted in the ledger file cannot swallow records; the file is private")
    func plantedTrigger() throws {
        let path = temporaryLedgerPath()
        _ = try Ledger(path: path)
        try Connection(path: path, mode: .readWrite).execute("CREATE TRIGGER swallow BEFORE INSERT ON usage BEGIN SELECT RAISE(IGNORE); END;")
        let ledger = try Ledger(path: path)
        let stored = try ledger.append(sampleRecord(1))
        var seen: [Int64] = []
        try ledger.records { seen.append($0.seq); return true }
        #expect(seen == [stored.seq])
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o077 == 0)
    }

    @Test("tampering with a record is detected at its seq")
    func tampering() throws {
        let path = temporaryLedgerPath()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        let db = try Connection(path: path, mode: .readWrite)
        try db.execute("UPDATE usage SET cost_micros = 0 WHERE seq = 3")
        #expect(try ledger.verify()?.seq == 3)
        try db.execute("UPDATE usage SET cost_micros = 1020 WHERE seq = 3; DELETE FROM usage WHERE seq = 4")
        #expect(try ledger.verify()?.seq == 5)
    }

    @Test("concurrent appends are group-committed, each exactly once")
    func concurrentAppends() async throws {
        let ledger = try Ledger(path: temporaryLedgerPath())
        try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<200 {
                group.addTask { try ledger.append(sampleRecord(index)).seq }
            }
            var seqs: [Int64] = []
            for try await seq in group { seqs.append(seq) }
            #expect(Set(seqs).count == 200)
            #expect(seqs.max() == 200)
        }
        var ids = Set<String>()
        try ledger.records { ids.insert($0.queryID); return true }
        #expect(ids.count == 200)
        #expect(try ledger.verify() == nil)
    }

    @Test("two ledger handles on one file keep one chain")
    func twoHandles() throws {
        let path = temporaryLedgerPath()
        let first = try Ledger(path: path)
        let second = try Ledger(path: path)
        _ = try first.append(sampleRecord(1))
        _ = try second.append(sampleRecord(2))
        _ = try first.append(sampleRecord(3))
        #expect(try first.verify() == nil)
    }

    @Test("the running totals count a consumer's successful queries and rows, not another's")
    func totalsOfOneConsumer() throws {
        let ledger = try Ledger(path: temporaryLedgerPath())
        _ = try ledger.append(sampleRecord(3))
        _ = try ledger.append(sampleRecord(4))
        _ = try ledger.append(sampleRecord(5, consumer: "other"))
        let used = try ledger.totals(consumer: "analyst-a", dataset: "retail", at: 1_795_000_000_000_000).day
        #expect(used.okQueries == 2 && used.okRows == 7)
    }

    @Test("CSV export follows RFC 4180 with the columns of DESIGN.md §7")
    func csvExport() throws {
        let record = sampleRecord(1)
        #expect(UsageExport.csvHeader == UsageRecord.exportColumns.joined(separator: ",") + "\r\n")
        let line = UsageExport.csvLine(record)
        #expect(line.hasSuffix("\r\n"))
        #expect(line.split(separator: ",", omittingEmptySubsequences: false).count == UsageRecord.exportColumns.count)
        #expect(UsageExport.csvLine({ var r = record; r.consumer = "a,\"b\""; return r }()).contains("\"a,\"\"b\"\"\""))
    }

    @Test("JSONL export is one valid JSON object per line with sql and rewritten_sql")
    func jsonlExport() throws {
        let line = UsageExport.jsonLine(sampleRecord(1))
        #expect(line.hasSuffix("}\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["sql"] as? String == "SELECT \"x\", 'y,z'\n")
        #expect(object["rows"] as? Int == 1)
        #expect(object["truncated"] as? Bool == false)
        #expect(Set(object.keys) == Set(UsageRecord.exportColumns + ["sql", "rewritten_sql"]))
    }
}

@Suite struct RefusedRecordTests {
    @Test("a refused request keeps only 2 KiB of its SQL and of its rewritten SQL")
    func refusedSQLCut() throws {
        let ledger = try Ledger(path: temporaryLedgerPath())
        var record = sampleRecord(1)
        record.status = .refused
        record.errorCode = "no_such_table"
        record.sql = "SELECT 1 FROM nosuch /*" + String(repeating: "x", count: 140_000) + "*/"
        let stored = try ledger.append(record)
        #expect(stored.sql.utf8.count == UsageRecord.refusedSQLLimit)
        #expect(stored.rewrittenSQL.utf8.count <= UsageRecord.refusedSQLLimit)
        #expect(try ledger.verify() == nil)
    }
}
