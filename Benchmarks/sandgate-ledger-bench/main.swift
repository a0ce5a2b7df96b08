import Foundation
import SandgateLedger
import SandgateLedgerPostgres
import SandgateSupport

/// Ledger benchmark (issue 9): durable records per second with 1, 8 and 64 concurrent writers for
/// a store, and `usage export` formatting speed over many records.
///
///     sandgate-ledger-bench sqlite [RECORDS_PER_RUN] [EXPORT_RECORDS]
///     sandgate-ledger-bench postgres://user@host:port/db [RECORDS_PER_RUN] [EXPORT_RECORDS]
///     sandgate-ledger-bench fill STATE_DIRECTORY RECORDS [postgres://… NODE_ID]
///
/// `fill` appends RECORDS records of consumer `bench` on `retail`, spread over the current UTC
/// month up to now, to the ledger that `sandgate serve --state STATE_DIRECTORY` (with `--ledger
/// URL --node-id NODE_ID`: that node, its key in the state directory) opens: the busy month of
/// issue 24's admission benchmark (`Benchmarks/quota-lookup.sh`).
let arguments = CommandLine.arguments
if arguments.count > 3, arguments[1] == "fill" {
    try fill(state: arguments[2], records: Int(arguments[3]) ?? 0, url: arguments.count > 4 ? PostgresLedgerURL(arguments[4]) : nil,
             node: arguments.count > 5 ? arguments[5] : "bench-1")
    exit(0)
}

func fill(state: String, records: Int, url: PostgresLedgerURL?, node: String) throws {
    try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
    let store: any LedgerStore = if let url {
        try PostgresLedgerStore(url: url, nodeID: node, keyPath: state + "/usage.key")
    } else {
        try Ledger(path: state + "/usage.sqlite")
    }
    let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
    let month = Timestamp.startOfMonth(containing: now)
    let window = DispatchSemaphore(value: 20_000)
    let failures = Atomic(0)
    let start = DispatchTime.now().uptimeNanoseconds
    for index in 0..<records {
        window.wait()
        var next = record(index)
        next.consumer = "bench"
        next.startedAt = month + (now - month) * Int64(index) / Int64(max(1, records))
        next.finishedAt = next.startedAt + 100
        store.append(next) { result in
            if case .failure = result { failures.add() }
            window.signal()
        }
        if index > 0, index % 1_000_000 == 0 { print("  \(index) records…") }
    }
    store.sync()
    store.close()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print(String(format: "filled %d records in %.1f s (%d failed)", records, seconds, failures.value))
}
let target = arguments.count > 1 ? arguments[1] : "sqlite"
let perRun = arguments.count > 2 ? Int(arguments[2]) ?? 20_000 : 20_000
let exportRecords = arguments.count > 3 ? Int(arguments[3]) ?? 0 : 0
let directory = NSTemporaryDirectory() + "sandgate-ledger-bench-\(UUID().uuidString)"
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: directory) }

func open(_ run: String) throws -> any LedgerStore {
    if let url = PostgresLedgerURL(target) {
        return try PostgresLedgerStore(url: url, nodeID: "bench-\(run)-\(UUID().uuidString.prefix(8))", keyPath: directory + "/usage.key")
    }
    return try Ledger(path: directory + "/\(run).sqlite")
}

func record(_ index: Int) -> UsageRecord {
    UsageRecord(
        queryID: UUID().uuidString, startedAt: 1_795_000_000_000_000 + Int64(index), finishedAt: 1_795_000_000_000_100 + Int64(index),
        consumer: "analyst-a", dataset: "retail", datasetVersion: String(repeating: "d", count: 64), policyVersion: String(repeating: "p", count: 64),
        status: .ok, errorCode: "", rows: 12, cells: 24, bytes: 184, maskedCells: 0, suppressedGroups: 0, truncated: false,
        vmSteps: 2022, elapsedMicroseconds: 900, costMicros: 1740, currency: "CNY", sqlSHA256: String(repeating: "a", count: 64),
        sql: "SELECT city, count(*) AS n FROM customers GROUP BY city", rewrittenSQL: "SELECT city, count(*) AS n FROM sg_v_customers GROUP BY city")
}

print("store: \(PostgresLedgerURL(target)?.description ?? "sqlite (\(directory))")")
for writers in [1, 8, 64] {
    let store = try open("w\(writers)")
    let total = writers == 1 ? min(perRun, 2_000) : perRun
    let each = total / writers
    let failures = Atomic(0)
    let start = DispatchTime.now().uptimeNanoseconds
    let group = DispatchGroup()
    for writer in 0..<writers {
        group.enter()
        Thread {
            for index in 0..<each where (try? store.append(record(writer * each + index))) == nil { failures.add() }
            group.leave()
        }.start()
    }
    group.wait()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print(String(format: "writers %2d: %6d durable records in %.2f s = %8.0f records/s (%d failed)", writers, each * writers, seconds,
                 Double(each * writers) / seconds, failures.value))
    store.close()
}

if exportRecords > 0 {
    let store = try open("export")
    let writers = 64, each = exportRecords / writers
    let group = DispatchGroup()
    let fill = DispatchTime.now().uptimeNanoseconds
    for writer in 0..<writers {
        group.enter()
        Thread {
            for index in 0..<each { _ = try? store.append(record(writer * each + index)) }
            group.leave()
        }.start()
    }
    group.wait()
    print(String(format: "filled %d records in %.1f s", each * writers, Double(DispatchTime.now().uptimeNanoseconds - fill) / 1e9))
    for format in ["csv", "jsonl"] {
        let start = DispatchTime.now().uptimeNanoseconds
        var count = 0, bytes = 0
        try store.scan(RecordFilter()) { record in
            let line = format == "csv" ? UsageExport.csvLine(record) : UsageExport.jsonLine(record)
            bytes += line.utf8.count
            count += 1
            return true
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print(String(format: "export %@: %d rows, %.1f MB in %.2f s = %.0f rows/s", format, count, Double(bytes) / 1e6, seconds, Double(count) / seconds))
    }
    store.close()
}

/// A counter shared by the writer threads.
final class Atomic: @unchecked Sendable {
    private let lock = NSLock()
    private var count: Int
    init(_ count: Int) { self.count = count }
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
