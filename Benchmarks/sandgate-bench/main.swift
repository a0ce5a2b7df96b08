// The masking benchmark of issue 2: SELECT name, phone, id_card, email over N customers.
//   (G) Gateway.run on dataset `retail`, whose policy masks the four columns (regex + presets);
//   (a) Gateway.run on dataset `retail_plain`: the same snapshot, the same columns, no masks;
//   (b) Gateway.run on `retail_plain` with the masks written as SQLite substr/instr expressions;
//   (s) for scale, SQLite alone: the plain SELECT stepped on the snapshot, cells copied out.
// All three gateway figures go through the same executor and result collection, so G − a is the
// cost of masking. Release build, several runs, medians.
//
//   swift run -c release sandgate-bench [--rows 1000000] [--runs 7] [--dir .build/bench]
//
// `--suite aggregate` measures the release model of issue 7 (AggregateSuite.swift) and
// `--suite functions` the slowest allowed functions at the largest inputs the sandbox permits.

import Foundation
import SandgateCore
import SandgateFixtures
import SandgatePolicy
import SandgateSQLite

struct Options {
    var rows = 1_000_000
    var runs = 7
    var directory = ".build/bench"
    /// Run only one measurement (`gateway`, `plain`, `substr`, `sqlite`), e.g. under a profiler.
    var only: String?
    /// `masks` (default), `aggregate`, `functions` or `privacy`.
    var suite = "masks"

    init(_ arguments: [String]) throws {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            guard let value = iterator.next() else { throw BenchError("\(argument) needs a value") }
            switch argument {
            case "--rows": rows = try Self.positive(value, argument)
            case "--runs": runs = try Self.positive(value, argument)
            case "--dir": directory = value
            case "--only": only = value
            case "--suite": suite = value
            default: throw BenchError("unknown option \(argument)")
            }
        }
    }

    static func positive(_ text: String, _ name: String) throws -> Int {
        guard let value = Int(text), value > 0 else { throw BenchError("\(name) must be a positive integer") }
        return value
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The deterministic retail fixture of `options.rows` customers in `options.directory`, made once.
func ensureFixture(_ options: Options) throws {
    try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
    let fixture = "\(options.directory)/retail-\(options.rows).sqlite"
    if !FileManager.default.fileExists(atPath: fixture) {
        print("generating \(fixture) …")
        try RetailFixture.generate(customers: options.rows, path: fixture)
    }
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func summary(_ samples: [Double]) -> (median: Double, min: Double, max: Double) {
    let sorted = samples.sorted()
    return (sorted[sorted.count / 2], sorted.first ?? 0, sorted.last ?? 0)
}

/// Steps `sql` on the snapshot and copies every cell into one byte arena, the same collection
/// work the gateway does.
func collect(_ db: Connection, _ sql: String) throws -> (rows: Int, bytes: Int) {
    guard let statement = try db.prepare(sql) else { throw BenchError("empty statement") }
    var arena: [UInt8] = []
    var rows = 0
    let columns = statement.columnCount
    while try statement.step() {
        for column in 0..<columns {
            statement.withBytes(at: column) { arena.append(contentsOf: $0) }
        }
        rows += 1
    }
    return (rows, arena.count)
}

let policyText = """
    source: ../retail-ROWS.sqlite
    limits: { max_rows: 10000000, timeout_ms: 600000, max_vm_steps: 1000000000000, max_result_bytes: 1073741824 }
    tables:
      customers:
        columns:
          name:    { mask: { pattern: '^(.).*$', replace: '$1**' } }
          phone:   { mask: phone_cn }
          id_card: { mask: id_card_cn }
          email:   { mask: email }
    """

let plainPolicyText = """
    source: ../retail-ROWS.sqlite
    limits: { max_rows: 10000000, timeout_ms: 600000, max_vm_steps: 1000000000000, max_result_bytes: 1073741824 }
    tables:
      customers:
        columns: { name: {}, phone: {}, id_card: {}, email: {} }
    """

let consumersText = """
    consumers:
      bench:
        key_sha256: "0000000000000000000000000000000000000000000000000000000000000000"
        grants:
          retail: {}
          retail_plain: {}
    """

let selectRaw = "SELECT name, phone, id_card, email FROM customers"
let selectSubstr = """
    SELECT substr(name, 1, 1) || '**',
           substr(phone, 1, 3) || '****' || substr(phone, 8, 4),
           substr(id_card, 1, 6) || '********' || substr(id_card, 15, 4),
           '***' || substr(email, instr(email, '@'))
    FROM customers
    """

do {
    let options = try Options(CommandLine.arguments)
    switch options.suite {
    case "masks": break
    case "aggregate": try runAggregateSuite(options); exit(0)
    case "functions": try runFunctionSuite(options); exit(0)
    case "privacy": try runPrivacySuite(options); exit(0)
    default: throw BenchError("--suite takes masks, aggregate, functions or privacy")
    }
    let fm = FileManager.default
    try ensureFixture(options)
    let policies = "\(options.directory)/policies-\(options.rows)"
    try fm.createDirectory(atPath: policies, withIntermediateDirectories: true)
    try policyText.replacing("ROWS", with: String(options.rows)).write(toFile: "\(policies)/retail.yaml", atomically: true, encoding: .utf8)
    try plainPolicyText.replacing("ROWS", with: String(options.rows)).write(toFile: "\(policies)/retail_plain.yaml", atomically: true, encoding: .utf8)
    try consumersText.write(toFile: "\(policies)/consumers.yaml", atomically: true, encoding: .utf8)

    let gateway = try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: "\(options.directory)/state-\(options.rows)"))
    guard let runtime = gateway.runtime("retail") else {
        throw BenchError("dataset unavailable: \(gateway.diagnostics.map(\.description).joined(separator: "; "))")
    }
    let raw = try Connection(path: runtime.snapshot.path, mode: .readOnlyImmutable)
    try raw.execute("PRAGMA mmap_size = \(1 << 31)")  // as the sandbox does

    print("rows: \(options.rows), runs: \(options.runs), SQLite \(SQLiteLibrary.version), \(ProcessInfo.processInfo.activeProcessorCount) cores")
    func gatewayRun(_ dataset: String, _ sql: String) throws {
        let response = gateway.run(QueryRequest(consumer: "bench", dataset: dataset, sql: sql))
        guard let result = response.result, result.rowCount == options.rows else {
            throw BenchError("\(dataset) run failed: \(String(describing: response.error))")
        }
    }
    let measurements: [(key: String, label: String, body: () throws -> Void)] = [
        ("gateway", "(G) Gateway.run, 4 masks (PCRE2 + presets)", { try gatewayRun("retail", selectRaw) }),
        ("plain", "(a) Gateway.run, same SELECT, no masks", { try gatewayRun("retail_plain", selectRaw) }),
        ("substr", "(b) Gateway.run, substr/instr masks", { try gatewayRun("retail_plain", selectSubstr) }),
        ("sqlite", "(s) SQLite alone, plain SELECT", { _ = try collect(raw, selectRaw) }),
    ]
    let selected = measurements.filter { options.only == nil || options.only == $0.key }
    guard !selected.isEmpty else { throw BenchError("--only takes gateway, plain, substr or sqlite") }
    var samples = [String: [Double]]()
    for measurement in selected { try measurement.body() }  // warm-up
    // Interleaved so that caches and CPU frequency affect every measurement alike.
    for _ in 0..<options.runs {
        for measurement in selected { samples[measurement.key, default: []].append(try seconds(measurement.body)) }
    }
    for measurement in selected {
        let s = summary(samples[measurement.key] ?? [])
        print(String(format: "%-46@ median %.3f s  (min %.3f, max %.3f)", measurement.label as NSString, s.median, s.min, s.max))
    }
    if options.only == nil, let g = samples["gateway"], let a = samples["plain"], let b = samples["substr"] {
        let (gm, am, bm) = (summary(g).median, summary(a).median, summary(b).median)
        print(String(format: "G/a = %.2f×   G/b = %.2f×   (targets: G/a ≤ 2.5, G/b < 1)", gm / am, gm / bm))
    }
} catch {
    FileHandle.standardError.write(Data("sandgate-bench: \(error)\n".utf8))
    exit(1)
}
