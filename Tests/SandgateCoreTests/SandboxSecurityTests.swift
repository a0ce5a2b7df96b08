import Foundation
@testable import SandgateCore
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// DESIGN.md §2: the sandbox refuses, with the right code and nothing leaked.
@Suite struct SandboxRefusalTests {
    static let refusals: [(String, ErrorCode)] = [
        ("SELECT * FROM main.customers", .noSuchTable),
        ("SELECT salary FROM main.customers", .noSuchTable),
        ("SELECT salary FROM customers", .noSuchColumn),
        ("SELECT * FROM sqlite_master", .noSuchTable),
        ("SELECT * FROM sqlite_schema", .noSuchTable),
        ("SELECT * FROM sqlite_temp_master", .noSuchTable),
        ("SELECT * FROM temp.customers", .noSuchTable),
        ("PRAGMA table_info(customers)", .notASelect),
        ("SELECT * FROM pragma_table_info('customers')", .functionNotAllowed),
        ("ATTACH 'x' AS y", .notASelect),
        ("DETACH main", .notASelect),
        ("SELECT load_extension('x')", .functionNotAllowed),
        ("SELECT readfile('/etc/passwd')", .functionNotAllowed),
        ("SELECT writefile('/tmp/x', 'y')", .functionNotAllowed),
        ("SELECT sqlite_version()", .functionNotAllowed),
        ("SELECT 1; SELECT 2", .notASelect),
        ("SELECT 1; DROP TABLE customers", .notASelect),
        ("INSERT INTO customers(city) VALUES ('x')", .notASelect),
        ("UPDATE customers SET city = 'x'", .notASelect),
        ("DELETE FROM customers", .notASelect),
        ("CREATE TEMP VIEW v AS SELECT 1", .notASelect),
        ("CREATE TABLE t(x)", .notASelect),
        ("DROP VIEW customers", .notASelect),
        ("BEGIN", .notASelect),
        ("VACUUM", .notASelect),
        ("EXPLAIN SELECT * FROM customers", .notASelect),
        ("SELECT * FROM orders", .aggregateRequired),
        ("SELECT channel FROM orders", .aggregateRequired),
        ("SELECT amount FROM orders GROUP BY channel", .columnNotAllowed),
        ("SELECT * FROM no_such_thing", .noSuchTable),
        ("SELEC 1", .syntaxError),
        ("SELECT 'unterminated", .syntaxError),
        ("SELECT 1 FROM", .syntaxError),
        ("", .syntaxError),
    ]

    @Test("the gateway refuses each attack with its code", arguments: refusals)
    func gatewayRefuses(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let response = gateway.query(sql)
        #expect(response.error?.code == code, "\(sql) → \(String(describing: response.error))")
        #expect(response.result == nil)
    }

    /// The same statements straight to the sandbox connection, without the lexical gate:
    /// the authorizer and SQLite's own checks must refuse them on their own (defence in depth).
    @Test("the sandbox layer refuses them without the gateway's pre-check", arguments: refusals.filter { $0.1 != .syntaxError && !$0.0.contains("temp.") })
    func sandboxRefuses(sql: String, code: ErrorCode) throws {
        let workspace = try TestWorkspace()
        let sandbox = try SandboxHarness(workspace)
        let outcome = sandbox.run(sql)
        guard case .failure(let failure) = outcome else {
            Issue.record("\(sql) ran in the sandbox")
            return
        }
        #expect(failure.error.code != .internal)
        // Without the pre-check a few codes differ; all refuse.
        let accepted: Set<ErrorCode> = [code, .noSuchTable, .notASelect, .syntaxError, .aggregateRequired, .functionNotAllowed]
        #expect(accepted.contains(failure.error.code), "\(sql) → \(failure.error)")
    }

    @Test("a view stored in the source database cannot be queried")
    func sourceViewsAreRefused() throws {
        let workspace = try TestWorkspace()
        do {
            let db = try Connection(path: workspace.source, mode: .readWrite)
            try db.execute("CREATE VIEW v_customers AS SELECT * FROM customers; CREATE TABLE secret(x); INSERT INTO secret VALUES ('s3cr3t');")
        }
        let gateway = try workspace.gateway()
        for sql in ["SELECT * FROM v_customers", "SELECT phone FROM v_customers", "SELECT * FROM secret", "SELECT x FROM secret", "SELECT nope FROM secret"] {
            let response = gateway.query(sql)
            #expect(response.error?.code == .noSuchTable, "\(sql)")
            #expect(response.error?.message.contains("s3cr3t") != true)
        }
        // An unlisted table and a table that does not exist give the same answer.
        #expect(gateway.query("SELECT x FROM secret").error?.message == "no such table: secret")
        #expect(gateway.query("SELECT x FROM absent").error?.message == "no such table: absent")
        let sandbox = try SandboxHarness(workspace)
        for sql in ["SELECT * FROM v_customers", "SELECT * FROM secret"] {
            guard case .failure(let failure) = sandbox.run(sql) else {
                Issue.record("\(sql) ran in the sandbox")
                continue
            }
            #expect(failure.error.code == .noSuchTable)
        }
    }

    @Test("a consumer CTE named like a table cannot reach the base table")
    func cteShadowingCannotReachBaseTable() throws {
        let workspace = try TestWorkspace()
        let sandbox = try SandboxHarness(workspace)
        for sql in [
            "WITH customers AS (SELECT salary FROM main.customers) SELECT * FROM customers",
            "WITH customers AS (SELECT * FROM customers) SELECT * FROM customers",
        ] {
            if case .success(let execution) = sandbox.run(sql) {
                // The second form may run: it reads sandgate's view, so values are masked.
                #expect(!execution.result.columns.contains("salary"))
                for row in execution.result.rows {
                    for case .text(let value) in row { #expect(!TestData.shared.rawPhones.contains(value)) }
                }
            }
        }
    }
}

/// DESIGN.md §2.3: facts measured on this machine's SQLite, each refused by the gateway.
@Suite struct MeasuredSQLiteFactsTests {
    @Test("ATTACH does not create a file")
    func attachCreatesNoFile() throws {
        let workspace = try TestWorkspace()
        let target = workspace.root + "/attached.db"
        let gateway = try workspace.gateway()
        #expect(gateway.query("ATTACH DATABASE '\(target)' AS y").error?.code == .notASelect)
        let sandbox = try SandboxHarness(workspace)
        guard case .failure(let failure) = sandbox.run("ATTACH DATABASE '\(target)' AS y") else {
            Issue.record("ATTACH ran")
            return
        }
        #expect(failure.error.code == .notASelect)
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test("fts3_tokenizer cannot leak a pointer")
    func fts3TokenizerIsRefused() throws {
        let workspace = try TestWorkspace()
        #expect(try workspace.gateway().query("SELECT hex(fts3_tokenizer('simple'))").error?.code == .functionNotAllowed)
        guard case .failure(let failure) = try SandboxHarness(workspace).run("SELECT hex(fts3_tokenizer('simple'))") else {
            Issue.record("fts3_tokenizer ran")
            return
        }
        #expect(failure.error.code == .functionNotAllowed)
    }

    @Test("printf and format with a huge width are refused before they run", arguments: [
        "SELECT printf('%.*c', 2147483647, 'x')", "SELECT format('%.*c', 2147483647, 'x')",
        "SELECT length(printf('%2147483647d', 1))",
    ])
    func printfWidthIsRefused(sql: String) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        #expect(response.error?.code == .functionNotAllowed)
        #expect(response.usage.vmSteps == 0)
    }

    @Test("PRAGMA writable_schema is refused")
    func writableSchemaIsRefused() throws {
        let workspace = try TestWorkspace()
        #expect(try workspace.gateway().query("PRAGMA writable_schema=ON").error?.code == .notASelect)
        guard case .failure(let failure) = try SandboxHarness(workspace).run("PRAGMA writable_schema=ON") else {
            Issue.record("PRAGMA ran")
            return
        }
        #expect(failure.error.code == .notASelect)
    }

    @Test("huge blobs fail cleanly", arguments: ["SELECT zeroblob(1000000000)", "SELECT randomblob(2000000000)", "SELECT length(zeroblob(1e9))"])
    func hugeBlobsFailCleanly(sql: String) throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        #expect(gateway.query(sql).error?.code == .resultTooLarge)
        #expect(gateway.query("SELECT count(*) FROM customers").isOK)
    }
}

/// Invariant 4: masked columns cannot be recovered through any expression, join or subquery.
@Suite struct MaskingAtTheSourceTests {
    static let probes = [
        "SELECT phone FROM customers WHERE phone LIKE '13%'",
        "SELECT substr(phone, 4, 4) FROM customers",
        "SELECT hex(phone) FROM customers",
        "SELECT length(phone), phone FROM customers",
        "SELECT upper(phone), lower(email), trim(id_card) FROM customers",
        "SELECT a.phone, b.id_card FROM customers a JOIN customers b ON a.customer_id = b.customer_id",
        "WITH x AS (SELECT phone AS p, id_card AS i FROM customers) SELECT p, i FROM x",
        "SELECT * FROM (SELECT phone, email FROM customers)",
        "SELECT (SELECT phone FROM customers ORDER BY phone LIMIT 1)",
        "SELECT max(phone), min(id_card), group_concat(email), group_concat(name) FROM (SELECT * FROM customers LIMIT 90)",
        "SELECT phone FROM customers UNION SELECT id_card FROM customers",
        "SELECT json_object('p', phone, 'e', email) FROM customers",
        "SELECT replace(phone, '*', '') FROM customers",
        "SELECT cast(phone AS INTEGER), cast(id_card AS REAL) FROM customers",
        "SELECT quote(phone), quote(email) FROM customers",
        "SELECT * FROM customers",
    ]

    @Test("no raw value of a masked column appears in any output", arguments: probes)
    func maskedValuesStayMasked(sql: String) throws {
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query(sql)
        let result = try #require(response.result, "\(sql): \(String(describing: response.error))")
        let raw = TestData.shared
        for row in result.rows {
            for value in row {
                let text: String
                switch value {
                case .text(let string): text = string
                case .integer(let number): text = String(number)
                case .real(let number): text = String(number)
                default: continue
                }
                for secret in raw.rawPhones where text.contains(secret) { Issue.record("\(sql) leaked a phone") }
                for secret in raw.rawIDCards where text.contains(secret) { Issue.record("\(sql) leaked an id card") }
                for secret in raw.rawEmails where text.contains(secret) { Issue.record("\(sql) leaked an email") }
            }
        }
    }

    @Test("WHERE, substr and hex only ever see the masked value")
    func predicatesSeeMaskedValues() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let phone = try #require(TestData.shared.rawPhones.first)
        #expect(gateway.query("SELECT count(*) FROM customers WHERE phone = ?", parameters: .positional([.text(phone)])).result?.rows == [[.integer(0)]])
        let middle = String(phone.dropFirst(3).prefix(4))
        #expect(gateway.query("SELECT count(*) FROM customers WHERE substr(phone, 4, 4) = ?", parameters: .positional([.text(middle)])).result?.rows == [[.integer(0)]])
        let stars = gateway.query("SELECT DISTINCT substr(phone, 4, 4) FROM customers").result?.rows
        #expect(stars == [[.text("****")]])
        let hex = gateway.query("SELECT DISTINCT substr(hex(phone), 7, 8) FROM customers").result?.rows
        #expect(hex == [[.text("2A2A2A2A")]])
        // Join keys are tokens: the raw id matches nothing, and tokens are stable within the dataset.
        #expect(gateway.query("SELECT count(*) FROM customers WHERE customer_id = 1").result?.rows == [[.integer(0)]])
        let tokens = gateway.query("SELECT customer_id FROM customers LIMIT 5").result?.rows ?? []
        for case .text(let token) in tokens.flatMap({ $0 }) {
            #expect(token.count == 32 && token.allSatisfy(\.isHexDigit))
        }
        let again = gateway.query("SELECT customer_id FROM customers LIMIT 5").result?.rows
        #expect(again == tokens)
    }

    @Test("the row filter applies everywhere, including count(*)")
    func rowFilterApplies() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let visible = gateway.query("SELECT count(*) FROM customers").result?.rows
        #expect(visible == [[.integer(Int64(TestData.shared.activeCount))]])
        #expect(gateway.query("SELECT count(*) FROM customers WHERE status <> 'active'").result?.rows == [[.integer(0)]])
    }

    @Test("a Chinese name masks to its first character and two stars")
    func chineseNames() throws {
        let workspace = try TestWorkspace()
        let rows = try workspace.gateway().query("SELECT name FROM customers").result?.rows ?? []
        #expect(!rows.isEmpty)
        for case .text(let name) in rows.flatMap({ $0 }) {
            #expect(name.count == 3 && name.hasSuffix("**"))
            #expect(name.unicodeScalars.first.map { $0.value >= 0x4E00 } == true)
        }
    }
}

/// Reads raw values from the shared fixture, to prove they never come out.
struct TestData {
    let rawPhones: [String]
    let rawIDCards: [String]
    let rawEmails: [String]
    let activeCount: Int

    static let shared: TestData = {
        let db = try! Connection(path: TestWorkspace.sharedFixture, mode: .readOnly)
        func strings(_ sql: String) -> [String] {
            (try! db.rows(sql)).compactMap { if case .text(let text) = $0.first { return text } else { return nil } }
        }
        let active = try! db.scalar("SELECT count(*) FROM customers WHERE status = 'active'")
        guard case .integer(let count) = active else { fatalError("fixture") }
        return TestData(
            rawPhones: strings("SELECT phone FROM customers"),
            rawIDCards: strings("SELECT id_card FROM customers"),
            rawEmails: strings("SELECT email FROM customers"),
            activeCount: Int(count))
    }()
}

/// A sandbox connection on a workspace's snapshot, bypassing the gateway's lexical gate.
struct SandboxHarness {
    let sandbox: SandboxConnection
    let limits: DatasetLimits

    init(_ workspace: TestWorkspace) throws {
        let gateway = try workspace.gateway()
        let runtime = try #require(gateway.runtime("retail"))
        sandbox = try SandboxConnection(policy: runtime.policy, snapshot: runtime.snapshot, key: runtime.key)
        limits = runtime.policy.limits
    }

    func run(_ sql: String) -> Result<Execution, ExecutionFailure> {
        sandbox.execute(sql: sql, parameters: .none, limits: limits, rowLimit: limits.maxRows)
    }
}
