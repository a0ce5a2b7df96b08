// Issue 7's figures.
//
// `--suite aggregate`: the demo aggregate queries and a GROUP BY channel over the orders of
// `--rows` customers (about 4 orders each: --rows 250000 gives about 1,000,000 orders), through
// Gateway.run, medians of `--runs` interleaved runs. Only public API is used, so the same file
// measures an older checkout for a side-by-side comparison.
//
// `--suite functions`: each function whose cost could blow up, at the largest input the sandbox
// permits, on a rows table with timeout_ms 2000; prints the time and the outcome.

import Foundation
import SandgateCore
import SandgatePolicy

let aggregatePolicy = """
    source: ../retail-ROWS.sqlite
    limits: { max_rows: 100000, timeout_ms: TIMEOUT, max_vm_steps: 1000000000000, max_result_bytes: 8388608 }
    tables:
      customers:
        access: rows
        row_filter: "status = 'active'"
        columns:
          customer_id: { role: join_key }
          city: {}
          birth_date: { mask: year }
      orders:
        access: aggregate
        privacy_unit: customer_id
        min_group_size: 10
        small_groups: SMALL
        columns:
          customer_id: { role: join_key }
          amount: { role: measure, aggregates: [count, sum, avg, min, max] }
          channel: { role: dimension }
          created_at: { role: dimension }
    """

let aggregateQueries: [(label: String, dataset: String, sql: String)] = [
    ("GROUP BY channel", "retail", "SELECT channel, count(*) AS n, sum(amount) AS total FROM orders GROUP BY channel"),
    ("GROUP BY month", "retail", "SELECT substr(created_at, 1, 7) AS month, count(*) AS n, avg(amount) AS mean FROM orders GROUP BY substr(created_at, 1, 7)"),
    ("join customers, GROUP BY city", "retail", "SELECT c.city, count(*) AS orders, avg(o.amount) AS mean FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY c.city"),
    ("GROUP BY created_at (all small)", "retail", "SELECT created_at, count(*) FROM orders GROUP BY created_at"),
    ("remainder: GROUP BY city", "retail_remainder", "SELECT c.city, count(*) AS orders, avg(o.amount) AS mean FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.city ORDER BY orders DESC"),
]

func aggregateGateway(_ options: Options, timeoutMilliseconds: Int = 600_000) throws -> Gateway {
    let fm = FileManager.default
    try ensureFixture(options)
    let policies = "\(options.directory)/aggregate-policies-\(options.rows)-\(timeoutMilliseconds)"
    try fm.createDirectory(atPath: policies, withIntermediateDirectories: true)
    let text = aggregatePolicy.replacing("ROWS", with: String(options.rows)).replacing("TIMEOUT", with: String(timeoutMilliseconds))
    try text.replacing("SMALL", with: "drop").write(toFile: "\(policies)/retail.yaml", atomically: true, encoding: .utf8)
    try text.replacing("SMALL", with: "remainder").write(toFile: "\(policies)/retail_remainder.yaml", atomically: true, encoding: .utf8)
    try """
        consumers:
          bench:
            key_sha256: "0000000000000000000000000000000000000000000000000000000000000000"
            grants:
              retail: {}
              retail_remainder: {}
        """.write(toFile: "\(policies)/consumers.yaml", atomically: true, encoding: .utf8)
    let gateway = try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: "\(options.directory)/aggregate-state-\(options.rows)-\(timeoutMilliseconds)"))
    guard gateway.runtime("retail") != nil, gateway.runtime("retail_remainder") != nil else {
        throw BenchError("dataset unavailable: \(gateway.diagnostics.map(\.description).joined(separator: "; "))")
    }
    return gateway
}

func runAggregateSuite(_ options: Options) throws {
    let gateway = try aggregateGateway(options)
    print("aggregate suite: \(options.rows) customers, runs: \(options.runs), \(ProcessInfo.processInfo.activeProcessorCount) cores")
    func run(_ query: (label: String, dataset: String, sql: String)) throws {
        let response = gateway.run(QueryRequest(consumer: "bench", dataset: query.dataset, sql: query.sql))
        guard response.isOK else { throw BenchError("\(query.label): \(String(describing: response.error))") }
    }
    for query in aggregateQueries { try run(query) }  // warm-up
    var samples = [String: [Double]]()
    for _ in 0..<options.runs {
        for query in aggregateQueries { samples[query.label, default: []].append(try seconds { try run(query) }) }
    }
    for query in aggregateQueries {
        let s = summary(samples[query.label] ?? [])
        print(String(format: "%-34@ median %.3f s  (min %.3f, max %.3f)", query.label as NSString, s.median, s.min, s.max))
    }
}

func runFunctionSuite(_ options: Options) throws {
    let gateway = try aggregateGateway(Options(["", "--rows", "1000", "--dir", options.directory]), timeoutMilliseconds: 2000)
    let cases: [(String, String)] = [
        ("instr, 1.6 MB in 0.8 MB", "SELECT instr(hex(zeroblob(800000)), hex(zeroblob(400000)) || '1')"),
        ("instr, 8 MB in 4 MB", "SELECT instr(hex(zeroblob(4000000)), hex(zeroblob(2000000)) || '1')"),
        ("replace, 8 MB, 0.4 MB pattern", "SELECT length(replace(hex(zeroblob(4000000)), hex(zeroblob(200000)) || '1', 'x'))"),
        ("replace, 8 MB, growing", "SELECT length(replace(hex(zeroblob(1000000)), '0', 'xxxx'))"),
        ("trim, 8 MB by a 0.8 MB set", "SELECT length(trim(hex(zeroblob(4000000)), replace(hex(zeroblob(200000)), '0', '1') || '0'))"),
        ("rtrim, 8 MB by an 8 MB set", "SELECT length(rtrim(hex(zeroblob(4190000)), replace(hex(zeroblob(4190000)), '0', '1') || '0'))"),
        ("ltrim, 8 MB by an 8 MB set", "SELECT length(ltrim(hex(zeroblob(4190000)), replace(hex(zeroblob(4190000)), '0', '1') || '0'))"),
        ("replace, 8 MB, every byte", "SELECT length(replace(hex(zeroblob(4190000)), '0', 'x'))"),
        ("like '%1%', 8 MB", "SELECT hex(zeroblob(4190000)) LIKE '%1%'"),
        ("like, 8 MB, 1000-byte pattern", "SELECT hex(zeroblob(4000000)) LIKE ('%' || hex(zeroblob(498)) || '1%')"),
        ("like, 8 MB, many wildcards", "SELECT hex(zeroblob(4000000)) LIKE ('%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%1')"),
        ("glob, 8 MB, 1000-byte pattern", "SELECT hex(zeroblob(4000000)) GLOB ('*' || hex(zeroblob(498)) || '1*')"),
        ("substr, 8 MB", "SELECT length(substr(hex(zeroblob(4000000)), 2, 7000000))"),
        ("upper, 8 MB", "SELECT length(upper(hex(zeroblob(4000000))))"),
        ("hex of 4 MB", "SELECT length(hex(zeroblob(4000000)))"),
        ("quote of 4 MB", "SELECT length(quote(zeroblob(4000000)))"),
        ("zeroblob(1e9)", "SELECT length(zeroblob(1000000000))"),
        ("printf width 1000", "SELECT length(printf('%1000d', 1))"),
        ("json_valid, 8 MB", "SELECT json_valid(json_array(hex(zeroblob(4000000))))"),
        ("json_extract, 8 MB", "SELECT length(json_extract(json_array(hex(zeroblob(4000000))), '$[0]'))"),
        ("json_group_array of 1000 rows", "SELECT length(json_group_array(city)) FROM (SELECT city FROM customers LIMIT 1000)"),
        ("group_concat of 1000 rows", "SELECT length(group_concat(city)) FROM (SELECT city FROM customers LIMIT 1000)"),
        ("unicode/char/round", "SELECT unicode(hex(zeroblob(4000000))), char(65, 66), round(1.5, 1000)"),
        ("mask year on 8 MB", "SELECT count(*) FROM customers WHERE birth_date LIKE '%' || hex(zeroblob(490)) || '%'"),
    ]
    print("functions suite: timeout_ms 2000 per query (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
    for (label, sql) in cases {
        var outcome = ""
        var times: [Double] = []
        for _ in 0..<max(1, min(options.runs, 5)) {
            times.append(seconds {
                let response = gateway.run(QueryRequest(consumer: "bench", dataset: "retail", sql: sql))
                outcome = response.error.map { $0.code.rawValue } ?? "ok"
            })
        }
        print(String(format: "%-34@ median %.3f s  max %.3f s  %@", label as NSString, summary(times).median, times.max() ?? 0, outcome as NSString))
    }
}

// Issue 10's figure: `--suite privacy`. The same orders table published twice — thresholds only
// (`retail`) and with `privacy:` (`retail_dp`: ε 0.5, δ 1e-7, 4 groups × 5 rows per unit,
// bounds [0, 5000]) — and `GROUP BY channel` over it, interleaved. Each run's SQL differs by a
// filter that matches every row (`channel <> 'run-N'`), so the private query is never answered
// from the remembered answers and draws its noise anew (and the threshold query is the same text).

let privacyPolicy = aggregatePolicy
    .replacing("amount: { role: measure, aggregates: [count, sum, avg, min, max] }", with: "amount: { role: measure, aggregates: [count, sum, avg], bounds: [0, 5000] }")
    .replacing("    small_groups: SMALL\n", with: """
            small_groups: drop
            privacy:
              epsilon_per_query: 0.5
              delta: 1.0e-7
              budget: { epsilon: 1000, period: total }
              max_groups_per_unit: 4
              max_rows_per_unit: 5

        """)

func runPrivacySuite(_ options: Options) throws {
    let fm = FileManager.default
    try ensureFixture(options)
    let policies = "\(options.directory)/privacy-policies-\(options.rows)"
    try fm.createDirectory(atPath: policies, withIntermediateDirectories: true)
    let threshold = aggregatePolicy.replacing("ROWS", with: String(options.rows)).replacing("TIMEOUT", with: "600000").replacing("SMALL", with: "drop")
    try threshold.write(toFile: "\(policies)/retail.yaml", atomically: true, encoding: .utf8)
    try privacyPolicy.replacing("ROWS", with: String(options.rows)).replacing("TIMEOUT", with: "600000")
        .write(toFile: "\(policies)/retail_dp.yaml", atomically: true, encoding: .utf8)
    try """
        consumers:
          bench:
            key_sha256: "0000000000000000000000000000000000000000000000000000000000000000"
            grants:
              retail: {}
              retail_dp: {}
        """.write(toFile: "\(policies)/consumers.yaml", atomically: true, encoding: .utf8)
    let state = "\(options.directory)/privacy-state-\(options.rows)-\(UUID().uuidString)"
    defer { try? fm.removeItem(atPath: state) }
    let gateway = try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: state))
    guard gateway.runtime("retail") != nil, gateway.runtime("retail_dp") != nil else {
        throw BenchError("dataset unavailable: \(gateway.diagnostics.map(\.description).joined(separator: "; "))")
    }
    print("privacy suite: \(options.rows) customers, runs: \(options.runs), \(ProcessInfo.processInfo.activeProcessorCount) cores")
    var run = 0
    func query(_ dataset: String) throws {
        run += 1
        let sql = "SELECT channel, count(*) AS n, sum(amount) AS total FROM orders WHERE channel <> 'run-\(run)' GROUP BY channel"
        let response = gateway.run(QueryRequest(consumer: "bench", dataset: dataset, sql: sql))
        guard response.isOK else { throw BenchError("\(dataset): \(String(describing: response.error))") }
        if dataset == "retail_dp", response.usage.epsilonMicros != 500_000 { throw BenchError("the private query was not noised anew") }
    }
    try query("retail")  // warm-up
    try query("retail_dp")
    var samples = [String: [Double]]()
    for _ in 0..<options.runs {
        for dataset in ["retail", "retail_dp"] { samples[dataset, default: []].append(try seconds { try query(dataset) }) }
    }
    let plain = summary(samples["retail"] ?? []), noisy = summary(samples["retail_dp"] ?? [])
    print(String(format: "GROUP BY channel, thresholds only   median %.3f s  (min %.3f, max %.3f)", plain.median, plain.min, plain.max))
    print(String(format: "GROUP BY channel, privacy:          median %.3f s  (min %.3f, max %.3f)", noisy.median, noisy.min, noisy.max))
    print(String(format: "private / thresholds only: %.2f×", noisy.median / plain.median))
}
