import Foundation
@testable import SandgateCore
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// `policy check` against the data: each problem at the line and column that names it.
@Suite struct DataValidationTests {
    func problems(_ policy: String) throws -> [PolicyDiagnostic] {
        let workspace = try TestWorkspace(policy: policy)
        let loaded = PolicyLoader.load(directory: workspace.policies)
        #expect(loaded.diagnostics.isEmpty, "structurally valid: \(loaded.diagnostics)")
        let dataset = try #require(loaded.datasets["retail"])
        return DataValidator.validate(dataset, databasePath: dataset.sourcePath)
    }

    @Test("a table the source does not have")
    func missingTable() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  clients:\n    columns: { name: {} }\n")
        #expect(found.map(\.description).contains { $0.hasSuffix("retail.yaml:3:3: table 'clients' does not exist in the source") })
    }

    @Test("a column the table does not have")
    func missingColumn() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  customers:\n    columns:\n      name: {}\n      shoe_size: {}\n")
        #expect(found.count == 1)
        #expect(found.first?.location.line == 6 && found.first?.location.column == 7)
        #expect(found.first?.message.contains("shoe_size") == true)
    }

    @Test("a row filter SQLite cannot prepare, with SQLite's message")
    func badRowFilter() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  customers:\n    row_filter: \"statuz = 'active'\"\n    columns: { name: {} }\n")
        let problem = try #require(found.first)
        #expect(problem.location.line == 4 && problem.location.column == 18)
        #expect(problem.message == "row_filter does not prepare: no such column: statuz (did you mean status?)")
    }

    @Test("a row filter with a syntax error is reported at its own character, with what was expected")
    func rowFilterSyntax() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  customers:\n    row_filter: \"status IN ('a',)\"\n    columns: { name: {} }\n")
        let problem = try #require(found.first)
        // Column 18 is the filter's first character; the ')' after the comma is its 16th.
        #expect(problem.location.line == 4 && problem.location.column == 33, "\(problem)")
        #expect(problem.message.contains("expected an expression") && !problem.message.contains("does not prepare"))
    }

    @Test("a misspelt column or table gets the nearest name the source has")
    func didYouMean() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  custmers:\n    columns: { name: {} }\n  customers:\n    columns: { salery: {} }\n")
        #expect(found.contains { $0.message == "table 'custmers' does not exist in the source (did you mean customers?)" })
        #expect(found.contains { $0.message == "column 'salery' does not exist in table 'customers' (did you mean salary?)" })
    }

    @Test("a privacy unit that is not a column")
    func badPrivacyUnit() throws {
        let found = try problems("source: ../retail.sqlite\ntables:\n  orders:\n    access: aggregate\n    privacy_unit: client\n    min_group_size: 5\n    columns: { amount: { role: measure } }\n")
        #expect(found.contains { $0.message.contains("privacy_unit 'client'") && $0.location.line == 3 })
    }

    @Test("a view in the source cannot be published")
    func viewsCannotBePublished() throws {
        let workspace = try TestWorkspace(policy: "source: ../retail.sqlite\ntables:\n  v:\n    columns: { name: {} }\n")
        let db = try Connection(path: workspace.source, mode: .readWrite)
        try db.execute("CREATE VIEW v AS SELECT name FROM customers")
        let dataset = try #require(PolicyLoader.load(directory: workspace.policies).datasets["retail"])
        let found = DataValidator.validate(dataset, databasePath: dataset.sourcePath)
        #expect(found.first?.message.contains("is a view") == true)
    }

    @Test("a dataset with a data problem is unavailable; the others still serve")
    func failClosed() throws {
        let workspace = try TestWorkspace()
        try workspace.write("broken.yaml", "source: ../retail.sqlite\ntables:\n  customers:\n    columns: { nope: {} }\n")
        let gateway = try workspace.gateway()
        #expect(gateway.datasetNames == ["retail"])
        #expect(gateway.diagnostics.contains { $0.location.file.hasSuffix("broken.yaml") })
        #expect(gateway.query("SELECT 1", dataset: "broken").error?.code == .unknownDataset)
    }
}

/// Invariant 7: queries never touch the source; snapshots are checked, hashed and reused.
@Suite struct SnapshotTests {
    @Test("the source is never modified and the snapshot is reused while it is unchanged")
    func snapshotLifecycle() throws {
        let workspace = try TestWorkspace()
        let before = try Data(contentsOf: URL(fileURLWithPath: workspace.source))
        let first = try workspace.gateway()
        _ = first.query("SELECT * FROM customers")
        let snapshot = try #require(first.runtime("retail")?.snapshot)
        #expect(snapshot.path.hasPrefix(workspace.state + "/snapshots/"))
        #expect(Snapshotter.fileSHA256(snapshot.path) == snapshot.sha256)
        #expect(try Data(contentsOf: URL(fileURLWithPath: workspace.source)) == before)
        let attributes = try FileManager.default.attributesOfItem(atPath: snapshot.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o444)

        let second = try workspace.gateway()
        #expect(second.runtime("retail")?.snapshot == snapshot)

        // A change to the source gives a new dataset version.
        let db = try Connection(path: workspace.source, mode: .readWrite)
        try db.execute("UPDATE customers SET city = 'Lhasa' WHERE customer_id = 1")
        let third = try workspace.gateway()
        let changed = try #require(third.runtime("retail")?.snapshot)
        #expect(changed.sha256 != snapshot.sha256)
    }

    @Test("a WAL-mode source snapshots into a rollback-journal copy that opens immutable")
    func walSource() throws {
        let workspace = try TestWorkspace()
        let db = try Connection(path: workspace.source, mode: .readWrite)
        try db.execute("PRAGMA journal_mode=WAL; UPDATE customers SET city = 'Lhasa' WHERE customer_id = 2;")
        let gateway = try workspace.gateway()
        let lhasa = gateway.query("SELECT count(*) FROM customers WHERE city = 'Lhasa'")
        #expect(lhasa.isOK)
        let snapshot = try #require(gateway.runtime("retail")?.snapshot)
        let copy = try Connection(path: snapshot.path, mode: .readOnlyImmutable)
        #expect(try copy.scalar("PRAGMA journal_mode") == .text("delete"))
    }

    @Test("a corrupt source makes the dataset unavailable")
    func corruptSource() throws {
        let workspace = try TestWorkspace()
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: workspace.source))
        let gateway = try workspace.gateway()
        #expect(gateway.datasetNames.isEmpty)
        #expect(!gateway.diagnostics.isEmpty)
    }

    @Test("dataset keys are 32 bytes, mode 0600, stable across restarts")
    func keys() throws {
        let workspace = try TestWorkspace()
        let first = try DatasetSecret.load(dataset: "retail", stateDirectory: workspace.state)
        let second = try DatasetSecret.load(dataset: "retail", stateDirectory: workspace.state)
        #expect(first.count == 32 && first == second)
        let attributes = try FileManager.default.attributesOfItem(atPath: workspace.state + "/keys/retail.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let other = try DatasetSecret.load(dataset: "other", stateDirectory: workspace.state)
        #expect(other != first)
    }
}

/// NULL stays NULL, numbers are masked as text, and describe hides what it must.
@Suite struct MaskSemanticsTests {
    @Test("NULL stays NULL through every mask; integers are masked as text")
    func nullsAndNumbers() throws {
        let policy = TestWorkspace.retailPolicy.replacing("status:      {}", with: "status:      {}\n      salary:      { mask: first4 }")
        let workspace = try TestWorkspace(policy: policy)
        let db = try Connection(path: workspace.source, mode: .readWrite)
        try db.execute("""
            CREATE TABLE c2 AS SELECT * FROM customers;
            DROP TABLE customers;
            CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT, phone TEXT, id_card TEXT, email TEXT,
                city TEXT, birth_date TEXT, status TEXT, salary INTEGER);
            INSERT INTO customers SELECT * FROM c2;
            DROP TABLE c2;
            UPDATE customers SET name = NULL, phone = NULL, id_card = NULL, email = NULL, birth_date = NULL, salary = 123456
                WHERE customer_id = (SELECT min(customer_id) FROM customers WHERE status = 'active');
            """)
        let gateway = try workspace.gateway()
        let response = gateway.query("SELECT name, phone, id_card, email, birth_date, salary FROM customers WHERE salary = '1234**'")
        let rows = try #require(response.result?.rows)
        #expect(rows == [[.null, .null, .null, .null, .null, .text("1234**")]])
    }

    @Test("describe lists only what the consumer may see")
    func describe() throws {
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let description = try gateway.describe(dataset: "retail", consumer: "analyst-a").get()
        #expect(description.limits.maxRows == 200)
        let customers = try #require(description.tables.first { $0.name == "customers" })
        #expect(!customers.columns.contains { $0.name == "salary" })
        #expect(customers.columns.first { $0.name == "phone" }?.mask == "phone_cn")
        #expect(customers.columns.first { $0.name == "customer_id" }?.mask == "token")
        #expect(customers.rowFilter)
        #expect(gateway.describe(dataset: "retail", consumer: "analyst-b").failureCode == .notGranted)
        #expect(gateway.describe(dataset: "nope", consumer: nil).failureCode == .unknownDataset)
    }
}

extension Result where Failure == GatewayError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
