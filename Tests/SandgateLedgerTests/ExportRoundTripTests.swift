import Foundation
import SandgateLedger
import Testing

/// issue 9: CSV and JSON-lines exports read back through Python's `csv` and `json` modules with
/// hostile text (quotes, commas, newlines, NUL, Chinese and emoji, 100 KB of SQL).
@Suite struct ExportRoundTripTests {
    static let hostile = [
        "SELECT \"a\", 'b,c'\r\n-- x", "line1\nline2\r\nline3\r", "nul\u{0}byte", "北京, \"上海\"\n😀", "=cmd|' /C calc'!A0",
        String(repeating: "王,\"\n", count: 25_000),   // 100 KB
    ]

    @Test("CSV and JSON-lines exports round-trip through Python's csv and json modules")
    func pythonRoundTrip() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            print("SKIPPED: export round trip needs /usr/bin/python3")
            return
        }
        let path = try temporaryLedgerDirectory()
        let ledger = try Ledger(path: path)
        var stored: [UsageRecord] = []
        for (index, text) in Self.hostile.enumerated() {
            var record = sampleRecord(index + 1)
            record.sql = text
            record.rewrittenSQL = text
            record.consumer = String(text.prefix(40))
            stored.append(try ledger.append(record))
        }
        let directory = (path as NSString).deletingLastPathComponent
        var csv = UsageExport.csvHeader, jsonl = ""
        try ledger.records { record in
            csv += UsageExport.csvLine(record)
            jsonl += UsageExport.jsonLine(record)
            return true
        }
        try csv.write(toFile: directory + "/export.csv", atomically: true, encoding: .utf8)
        try jsonl.write(toFile: directory + "/export.jsonl", atomically: true, encoding: .utf8)
        // Python reads both and writes back what it parsed, as JSON (one array per format).
        let script = """
            import csv, json, sys
            d = sys.argv[1]
            with open(d + "/export.csv", newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            with open(d + "/export.jsonl", encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
            json.dump({"csv": [[r["seq"], r["consumer"], r["record_hash"]] for r in rows],
                       "jsonl": [[l["seq"], l["consumer"], l["sql"], l["rewritten_sql"], l["record_hash"]] for l in lines]},
                      open(d + "/parsed.json", "w", encoding="utf-8"))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, directory]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/parsed.json"))) as? [String: [[Any]]])
        let csvRows = try #require(parsed["csv"]), jsonRows = try #require(parsed["jsonl"])
        #expect(csvRows.count == stored.count && jsonRows.count == stored.count)
        for (record, (row, line)) in zip(stored, zip(csvRows, jsonRows)) {
            #expect(row[0] as? String == String(record.seq))
            // CSV is spreadsheet-safe: a formula-like field gets a leading quote, nothing else changes.
            let consumer = record.consumer.first == "=" ? "'" + record.consumer : record.consumer
            #expect(row[1] as? String == consumer)
            #expect(row[2] as? String == record.recordHash)
            #expect((line[0] as? NSNumber)?.int64Value == record.seq)
            #expect(line[1] as? String == record.consumer)
            #expect(line[2] as? String == record.sql)
            #expect(line[3] as? String == record.rewrittenSQL)
            #expect(line[4] as? String == record.recordHash)
        }
        #expect(stored.last?.sql.utf8.count == UsageRecord.sqlLimit || (stored.last?.sql.utf8.count ?? 0) > UsageRecord.sqlLimit - 4)
        #expect(try ledger.verify() == nil)
    }
}
