import Crypto
import Foundation
import SandgateLedger
import SandgateSQLite
import Testing
import SandgateSupport

/// A ledger in its own directory (the key and the checkpoint live beside the file).
func temporaryLedgerDirectory() throws -> String {
    let directory = NSTemporaryDirectory() + "sandgate-ledger-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory + "/usage.sqlite"
}

/// Rewrites every record through `edit`, then recomputes the whole chain as an attacker without
/// the ledger key would: with a key of their own.
func recomputeWithoutKey(_ path: String, edit: (inout [UsageRecord]) -> Void) throws {
    let ledger = try Ledger(path: path)
    var records: [UsageRecord] = []
    try ledger.records { records.append($0); return true }
    edit(&records)
    let db = try Connection(path: path, mode: .readWrite)
    try db.execute("DELETE FROM usage")
    let forgedKey = SymmetricKey(size: .bits256)
    var previous = Ledger.genesisHash
    for (index, var record) in records.enumerated() {
        record.seq = Int64(index + 1)
        record.prevHash = previous
        record.recordHash = LedgerChain.keyedHash(of: record, key: forgedKey)
        previous = record.recordHash
        try db.execute("""
            INSERT INTO usage VALUES (\(record.seq), '\(record.queryID)', \(record.startedAt), \(record.finishedAt), '\(record.consumer)',
            '\(record.dataset)', '', '', '\(record.status.rawValue)', '', \(record.rows), 0, 0, 0, 0, 0, 0, 0, \(record.costMicros), '',
            '', '\(record.prevHash)', '\(record.recordHash)', '', '', \(LedgerChain.currentVersion), '', 0, '', '', 0, 'query', '', '')
            """)
    }
}

@Suite struct LedgerChainTests {
    /// docs/CONTRACT.md §7: this record under the key 00 01 … 1f has this hash. The expected value
    /// was computed independently (Python's hmac over the documented encoding).
    @Test("the canonical encodings (versions 2, 3 and 4) and keyed hashes match the documented test vectors")
    func testVector() {
        var record = sampleRecord(1)
        record.seq = 1
        record.prevHash = Ledger.genesisHash
        let key = SymmetricKey(data: Array(0..<32) as [UInt8])
        // Version 2: records written before the fields of version 3 keep their hash.
        record.chain = 2
        #expect(LedgerChain.canonicalBytes(record).count == 344)
        #expect(Array(LedgerChain.canonicalBytes(record).prefix(6)) == Array("SGLR2t".utf8))
        #expect(LedgerChain.keyedHash(of: record, key: key) == "4d2cba4b8fba11d030f832e04b79944dc8886d5351e0df2e0e2d4d476105a542")
        // Version 3 with every added field set.
        record.chain = 3
        record.purpose = "credit_risk"
        record.epsilonMicros = 500_000
        record.clientAddress = "127.0.0.1"
        record.holder = "retail-data-office"
        record.holderSharePPM = 800_000
        #expect(LedgerChain.canonicalBytes(record).count == 415)
        #expect(Array(LedgerChain.canonicalBytes(record).prefix(6)) == Array("SGLR3t".utf8))
        #expect(LedgerChain.keyedHash(of: record, key: key) == "7a5c1f80124fd8ae52bfe31e2debe7c5f05eb16f81f28e6796aebd6b3802bf40")
        // Version 4 with two members and three extensions (given unsorted: sorted by name's bytes).
        record.chain = 4
        record.members = [
            RecordMember(dataset: "retail", datasetVersion: "d", policyVersion: "p", holder: "retail-data-office", holderSharePPM: 800_000, epsilonMicros: 500_000),
            RecordMember(dataset: "insurer", datasetVersion: "d2", policyVersion: "p2", holder: "insurer-co", holderSharePPM: 600_000),
        ]
        record.extensions = ["view_version": .text("v1"), "upload_rows": .integer(12), "answer_of": .text("q0")]
        #expect(LedgerChain.canonicalBytes(record).count == 636)
        #expect(Array(LedgerChain.canonicalBytes(record).prefix(6)) == Array("SGLR4t".utf8))
        #expect(LedgerChain.keyedHash(of: record, key: key) == "6f16fb4122b8e26003fa6b9d6aeb76961cb78bb262355974e7e21cb0b32edd75")
        // An integer and a text of the same digits never hash alike.
        var typed = record
        typed.extensions["upload_rows"] = .text("12")
        #expect(LedgerChain.keyedHash(of: typed, key: key) != LedgerChain.keyedHash(of: record, key: key))
    }

    /// docs/CONTRACT.md §7: a two-record chain, the anchor's MAC and a version-1 hash, computed
    /// independently with Python's `hmac` and `hashlib` over the documented encodings. A change
    /// to the encoding, the chain's linking or the anchor breaks every existing ledger: it fails here.
    @Test("HashChain links records to the documented vectors; the anchor MAC and version-1 hash match theirs")
    func chainVectors() throws {
        let key = SymmetricKey(data: Array(0..<32) as [UInt8])
        var chain = HashChain(key: key, nodeID: "node-a")
        let first = chain.link(sampleRecord(1))
        let second = chain.link(sampleRecord(2))
        #expect(first.chain == 4 && first.kind == "query" && first.recordHash == "9c2edd3301497226dba5bd7cdf800a1c244e5a40f475d037a9434cc016bcb431")
        #expect(second.seq == 2 && second.prevHash == first.recordHash && second.nodeID == "node-a")
        #expect(second.recordHash == "5643b21e8b47aeeb4f8f56f65516efbd50c14d22697645fd751a90fe2bf4c6f7")
        #expect(chain.seq == 2 && chain.hash == second.recordHash)
        let anchor = LedgerCheckpoint(nodeID: "node-a", seq: 2, hash: second.recordHash, firstKeyedSeq: 1)
        #expect(anchor.mac(key: key) == "63c0b676364a6d0c94739bb8001e421729140ab1cc515322657daf8d8412416c")
        // The version-3 chain of the same records (a ledger written before version 4).
        var v3 = [first, second]
        for index in v3.indices { v3[index].chain = 3 }
        v3[1].prevHash = LedgerChain.keyedHash(of: v3[0], key: key)
        #expect(v3[1].prevHash == "4fc45c5b81481d9a52e79c3fff1bc4544c18471a3599da54d80c2c56a8a502a6")
        #expect(LedgerChain.keyedHash(of: v3[1], key: key) == "28a443ca1c91351dbe19e15d1bb31a8d3e6a2f8b0566977fe0e7cff7911fafe5")
        let v3Anchor = LedgerCheckpoint(nodeID: "node-a", seq: 2, hash: "28a443ca1c91351dbe19e15d1bb31a8d3e6a2f8b0566977fe0e7cff7911fafe5", firstKeyedSeq: 1)
        #expect(v3Anchor.mac(key: key) == "57237efaffcee374c5813d51ed44c87e804a7c605f8d01cb51500c1f6104fc84")
        // The version-2 chain of the same records (a ledger written before version 3).
        var v2 = sampleRecord(1)
        v2.seq = 1
        v2.prevHash = HashChain.genesisHash
        v2.chain = 2
        #expect(LedgerChain.keyedHash(of: v2, key: key) == "4d2cba4b8fba11d030f832e04b79944dc8886d5351e0df2e0e2d4d476105a542")
        var legacy = sampleRecord(1)
        legacy.seq = 1
        legacy.prevHash = HashChain.genesisHash
        #expect(LedgerChain.legacyHash(of: legacy) == "5131a48f25f9d5d5889b1e51699b700964b18a16af66b778ff8af9a51986c0cb")
    }

    @Test("ChainVerifier accepts the chain and names the first edited, missing, inserted or swapped record")
    func verifierCases() {
        let key = SymmetricKey(data: Array(0..<32) as [UInt8])
        var chain = HashChain(key: key, nodeID: "n")
        let records = (1...4).map { chain.link(sampleRecord($0)) }
        func firstProblem(_ list: [UsageRecord], anchor: (Int64, String)? = nil) -> Int64? {
            var verifier = ChainVerifier(key: key, anchorSeq: anchor?.0 ?? 0)
            for record in list {
                if let problem = verifier.check(record, chain: record.chain) { return problem.seq ?? -1 }
            }
            return verifier.finish(anchorHash: anchor?.1 ?? "").map { $0.seq ?? -1 }
        }
        #expect(firstProblem(records, anchor: (4, records[3].recordHash)) == nil)
        var edited = records
        edited[2].rows += 1
        #expect(firstProblem(edited) == 3)
        #expect(firstProblem([records[0], records[2], records[3]]) == 3)
        var inserted = records
        var forged = records[1]
        forged.queryID = "forged"
        forged.seq = 3
        inserted.insert(forged, at: 2)
        #expect(firstProblem(inserted) == 3)
        #expect(firstProblem([records[0], records[2], records[1], records[3]]) == 3)
        #expect(firstProblem(Array(records.prefix(3)), anchor: (4, records[3].recordHash)) == 4)
        // A version-3 record relabelled version 2 (to drop its purpose, ε or address) does not
        // verify; nor does a version-2 record after a version-3 one, even with a valid MAC.
        var relabelled = records
        relabelled[1].chain = 2
        #expect(firstProblem(relabelled) == 2)
        var downgraded = records
        downgraded[2].chain = 2
        downgraded[2].recordHash = LedgerChain.keyedHash(of: downgraded[2], key: key)
        downgraded[3].prevHash = downgraded[2].recordHash
        downgraded[3].recordHash = LedgerChain.keyedHash(of: downgraded[3], key: key)
        #expect(firstProblem(downgraded) == 3)
        // A version-2 prefix followed by version-3 records (an upgraded ledger) verifies.
        var upgraded = records
        upgraded[0].chain = 2
        upgraded[0].recordHash = LedgerChain.keyedHash(of: upgraded[0], key: key)
        for index in 1..<upgraded.count {
            upgraded[index].prevHash = upgraded[index - 1].recordHash
            upgraded[index].recordHash = LedgerChain.keyedHash(of: upgraded[index], key: key)
        }
        #expect(firstProblem(upgraded) == nil)
        // Each added field is covered by the hash.
        for edit in [{ (r: inout UsageRecord) in r.purpose = "other" }, { $0.epsilonMicros += 1 }, { $0.clientAddress = "10.0.0.1" },
                     { $0.holder = "someone" }, { $0.holderSharePPM = 1 }] {
            var changed = records
            edit(&changed[1])
            #expect(firstProblem(changed) == 2)
        }
    }

    @Test("the key is 32 bytes with mode 0600 and the checkpoint follows every commit")
    func keyAndCheckpoint() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: ledger.keyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect((attributes[.size] as? NSNumber)?.intValue == 32)
        for index in 1...3 { _ = try ledger.append(sampleRecord(index)) }
        ledger.sync()
        let text = try String(contentsOfFile: ledger.checkpointPath, encoding: .utf8)
        let parts = text.split(separator: " ")
        #expect(parts.first == "sandgate-ledger-checkpoint/1")
        #expect(parts[2] == "3")
        #expect(try ledger.verify() == nil)
        ledger.close()
        #expect(try Ledger(path: path).verify() == nil)
    }

    @Test("deleting the last record is detected as truncation")
    func lastRecordDeleted() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        ledger.sync()
        try Connection(path: path, mode: .readWrite).execute("DELETE FROM usage WHERE seq = 5")
        let problem = try #require(try Ledger(path: path).verify())
        #expect(problem.seq == 5)
        #expect(problem.reason.contains("truncated"))
    }

    @Test("deleting every record is detected")
    func allRecordsDeleted() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        ledger.sync()
        try Connection(path: path, mode: .readWrite).execute("DELETE FROM usage")
        let problem = try #require(try Ledger(path: path).verify())
        #expect(problem.reason.contains("truncated"))
    }

    @Test("zeroing costs and recomputing every hash without the key is detected")
    func wholesaleRecomputation() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        try recomputeWithoutKey(path) { records in
            for index in records.indices { records[index].costMicros = 0 }
        }
        #expect(try Ledger(path: path).verify()?.seq == 1)
    }

    @Test("deleting a record, renumbering and recomputing without the key is detected")
    func deletionRenumbered() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        try recomputeWithoutKey(path) { records in records.remove(at: 2) }
        #expect(try Ledger(path: path).verify() != nil)
    }

    @Test("deleting a record in the middle is detected at the next one")
    func deletionInTheMiddle() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        try Connection(path: path, mode: .readWrite).execute("DELETE FROM usage WHERE seq = 3")
        #expect(try ledger.verify()?.seq == 4)
    }

    @Test("reordering two records is detected")
    func reorder() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        let db = try Connection(path: path, mode: .readWrite)
        try db.execute("UPDATE usage SET seq = 100 WHERE seq = 2; UPDATE usage SET seq = 2 WHERE seq = 3; UPDATE usage SET seq = 3 WHERE seq = 100")
        #expect(try ledger.verify()?.seq == 2)
    }

    @Test("an edited field is detected at its seq")
    func edit() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        try Connection(path: path, mode: .readWrite).execute("UPDATE usage SET consumer = 'someone-else' WHERE seq = 4")
        #expect(try ledger.verify()?.seq == 4)
    }

    @Test("a deleted or forged checkpoint is detected")
    func checkpointTampering() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...3 { _ = try ledger.append(sampleRecord(index)) }
        ledger.sync()
        let original = try String(contentsOfFile: ledger.checkpointPath, encoding: .utf8)
        try original.replacingOccurrences(of: " 3 ", with: " 2 ").write(toFile: ledger.checkpointPath, atomically: true, encoding: .utf8)
        #expect(try ledger.verify()?.reason.contains("does not verify under the ledger key") == true)
        try FileManager.default.removeItem(atPath: ledger.checkpointPath)
        #expect(try ledger.verify()?.reason.contains("missing") == true)
        // A writer opened without its checkpoint never re-anchors the chain by itself.
        let reopened = try Ledger(path: path)
        #expect(reopened.anchorFailure != nil)
        _ = try reopened.append(sampleRecord(4))
        #expect(try reopened.verify() != nil)
    }

    @Test("truncation while the ledger is open stops the anchoring and stays reported")
    func truncationWhileOpen() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...5 { _ = try ledger.append(sampleRecord(index)) }
        ledger.sync()
        try Connection(path: path, mode: .readWrite).execute("DELETE FROM usage WHERE seq >= 4")
        _ = try ledger.append(sampleRecord(6))
        ledger.sync()
        #expect(ledger.anchorFailure?.contains("anchored at seq 5") == true)
        #expect(try ledger.verify() != nil)
    }

    /// Ledgers written before the keyed chain keep verifying: the first open anchors their tail,
    /// and the first keyed record's MAC covers the last legacy hash.
    @Test("a version-1 ledger keeps verifying, and editing its old records is still detected")
    func legacyLedger() throws {
        let path = try temporaryLedgerDirectory()
        let db = try Connection(path: path, mode: .readWriteCreate)
        try db.execute("""
            CREATE TABLE usage (seq INTEGER PRIMARY KEY, query_id TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,
            consumer TEXT NOT NULL, dataset TEXT NOT NULL, dataset_version TEXT NOT NULL, policy_version TEXT NOT NULL, status TEXT NOT NULL,
            error_code TEXT NOT NULL, rows INTEGER NOT NULL, cells INTEGER NOT NULL, bytes INTEGER NOT NULL, masked_cells INTEGER NOT NULL,
            suppressed_groups INTEGER NOT NULL, truncated INTEGER NOT NULL, vm_steps INTEGER NOT NULL, elapsed_us INTEGER NOT NULL,
            cost_micros INTEGER NOT NULL, currency TEXT NOT NULL, sql_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, record_hash TEXT NOT NULL,
            sql TEXT NOT NULL, rewritten_sql TEXT NOT NULL)
            """)
        var previous = Ledger.genesisHash
        for index in 1...3 {
            var record = sampleRecord(index)
            record.seq = Int64(index)
            record.prevHash = previous
            record.recordHash = LedgerChain.legacyHash(of: record)
            previous = record.recordHash
            try db.execute("""
                INSERT INTO usage VALUES (\(index), '\(record.queryID)', \(record.startedAt), \(record.finishedAt), 'analyst-a', 'retail', 'd', 'p',
                'ok', '', \(record.rows), \(record.cells), 10, 1, 0, 0, 100, 5, 1020, 'CNY', '\(record.sqlSHA256)', '\(record.prevHash)',
                '\(record.recordHash)', 'SELECT "x", ''y,z''\n', 'SELECT 1')
                """)
        }
        let ledger = try Ledger(path: path)
        #expect(try ledger.verify() == nil)
        _ = try ledger.append(sampleRecord(4))
        #expect(try ledger.verify() == nil)
        try db.execute("UPDATE usage SET cost_micros = 0 WHERE seq = 2")
        #expect(try ledger.verify()?.seq == 2)
    }

    @Test("a ledger created before chain version 3 gains its columns on open and keeps verifying")
    func versionThreeColumnsAdded() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        for index in 1...2 { _ = try ledger.append(sampleRecord(index)) }
        ledger.close()
        let db = try Connection(path: path, mode: .readWrite)
        // A table as version 2 wrote it: without the columns versions 3 and 4 added.
        for column in ["purpose", "epsilon_micros", "client_address", "holder", "holder_share_ppm", "kind", "members", "extensions"] {
            try db.execute("ALTER TABLE usage DROP COLUMN \(column)")
        }
        let reopened = try Ledger(path: path)
        var record = sampleRecord(3)
        record.purpose = "credit_risk"
        record.epsilonMicros = 250_000
        let stored = try reopened.append(record)
        #expect(try reopened.verify() == nil)
        var back: [UsageRecord] = []
        try reopened.records { back.append($0); return true }
        #expect(back.count == 3 && back[2].purpose == "credit_risk" && back[2].epsilonMicros == 250_000 && back[2] == stored)
    }

    @Test("every stored text field is cut by bytes on a UTF-8 boundary")
    func boundedRecords() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        var record = sampleRecord(1)
        record.consumer = "e" + String(repeating: "\u{301}", count: 300_000)   // one Character, 600 KB
        record.sql = String(repeating: "王", count: 100_000)                  // 300 KB
        record.rewrittenSQL = String(repeating: "x", count: 70_000)
        record.queryID = String(repeating: "€", count: 1_000)
        let stored = try ledger.append(record)
        var read: UsageRecord?
        try ledger.records { read = $0; return false }
        let back = try #require(read)
        #expect(back == stored)
        #expect(back.consumer.utf8.count <= UsageRecord.nameLimit && Array(back.consumer.unicodeScalars.prefix(2)) == ["e", "\u{301}"])
        #expect(back.sql.utf8.count <= UsageRecord.sqlLimit && back.sql.utf8.count > UsageRecord.sqlLimit - 3)
        #expect(back.sql.unicodeScalars.allSatisfy { $0 == "王" })
        #expect(back.rewrittenSQL.utf8.count == UsageRecord.sqlLimit)
        #expect(back.queryID.utf8.count <= UsageRecord.fieldLimit)
        #expect(try ledger.verify() == nil)
    }

    @Test("UTF-8 prefixes never split a scalar", arguments: [
        ("abc", 2, "ab"), ("王王", 4, "王"), ("王王", 3, "王"), ("王", 2, ""), ("e\u{301}\u{301}", 3, "e\u{301}"), ("😀x", 4, "😀"),
    ])
    func utf8Prefix(text: String, bytes: Int, expected: String) {
        #expect(UTF8Text.prefix(text, maxBytes: bytes) == expected)
    }

    @Test("CSV exports neutralise formula prefixes; plain numbers stay numbers", arguments: [
        ("=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"), ("\r=1", "\"'\r=1\""), ("-5", "-5"), ("-1.5", "-1.5"), ("analyst-a", "analyst-a"), ("a,b", "\"a,b\""),
    ])
    func formulaNeutralisation(field: String, expected: String) {
        #expect(CSV.field(field, spreadsheetSafe: true) == expected)
        var record = sampleRecord(1)
        record.consumer = field
        #expect(UsageExport.csvLine(record).contains("," + expected + ","))
    }
}

@Suite struct ArchiveTests {
    /// `usage archive`: old records move to a file that verifies on its own; the ledger keeps
    /// verifying across the cut and continues its chain; tampering on either side is found.
    @Test("an archive verifies on its own, the ledger verifies across the cut, and tampering is found")
    func archive() throws {
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        let day: Int64 = 86_400_000_000
        for index in 1...6 { _ = try ledger.append(sampleRecord(index, startedAt: 1_795_000_000_000_000 + Int64(index / 4) * day)) }
        let cut = Timestamp.startOfDay(containing: 1_795_000_000_000_000 + day)
        let out = (path as NSString).deletingLastPathComponent + "/archive-1.sqlite"
        #expect(try ledger.archive(before: cut, to: out) == 3)
        #expect(try ledger.verifyArchive(at: out) == nil)
        #expect(try ledger.verify() == nil)
        var kept: [Int64] = []
        try ledger.records { kept.append($0.seq); return true }
        #expect(kept == [4, 5, 6])
        #expect(try ledger.append(sampleRecord(7)).seq == 7)
        ledger.sync()
        #expect(try Ledger(path: path).verify() == nil)
        // A second archive starts where the first ended.
        let second = (path as NSString).deletingLastPathComponent + "/archive-2.sqlite"
        #expect(try ledger.archive(before: Int64.max, to: second) == 4)
        #expect(try ledger.verifyArchive(at: second) == nil)
        #expect(try ledger.verify() == nil)
        #expect(try ledger.append(sampleRecord(8)).seq == 8)
        // Tampering: an edited archived record; a moved boundary in the ledger.
        try Connection(path: out, mode: .readWrite).execute("UPDATE usage SET cost_micros = 0 WHERE seq = 2")
        #expect(try ledger.verifyArchive(at: out)?.seq == 2)
        try Connection(path: path, mode: .readWrite).execute("UPDATE usage_archives SET through_seq = 6 WHERE through_seq = 7")
        #expect(try ledger.verify() != nil)
    }
}
