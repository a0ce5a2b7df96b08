import Foundation
import SandgateSQLite
import Testing

@Suite struct ConnectionTests {
    @Test("prepare, bind and step round-trip every value type")
    func roundTrip() throws {
        let db = try Connection()
        let statement = try #require(try db.prepare("SELECT ?, ?, ?, ?, ?"))
        let values: [SQLValue] = [.null, .integer(-42), .real(2.5), .text("王小明 ''"), .blob([0, 1, 255])]
        try statement.bind(values)
        #expect(try statement.step())
        #expect((0..<5).map { statement.value(at: $0) } == values)
        #expect(try !statement.step())
    }

    @Test("a kept statement is prepared once, rebinds cleanly and holds no snapshot between uses")
    func keptStatements() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kept-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let writer = try Connection(path: path, mode: .readWriteCreate)
        try writer.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
        let reader = try Connection(path: path, mode: .readWrite)
        let sql = "SELECT x FROM t WHERE x >= ? ORDER BY x"
        #expect(try reader.cachedRows(sql, [.integer(2)]) == [[.integer(2)], [.integer(3)]])
        // Stopped after one row of three: the statement is rewound anyway, so no read
        // transaction stays open and a checkpoint can truncate the log.
        let first = try reader.cached(sql) { (statement) throws(SQLiteError) -> Int64 in
            try statement.bind(.integer(1), at: 1)
            _ = try statement.step()
            return statement.integer(at: 0)
        }
        #expect(first == 1)
        try writer.execute("INSERT INTO t VALUES (4)")
        #expect(try writer.rows("PRAGMA wal_checkpoint(TRUNCATE)").first?.first == .integer(0))
        // No binding carried over from the last use: an unbound parameter is NULL, which matches nothing.
        #expect(try reader.cachedRows(sql) == [])
        #expect(try reader.cachedRows(sql, [.integer(4)]) == [[.integer(4)]])
        #expect(throws: SQLiteError.self) { try reader.cachedRows("SELECT nope FROM t") }
    }

    @Test("an empty string binds as text, not NULL")
    func emptyText() throws {
        #expect(try Connection().scalar("SELECT typeof(?)", [.text("")]) == .text("text"))
    }

    @Test("errors carry SQLite's code and message")
    func errors() throws {
        let db = try Connection()
        #expect(throws: SQLiteError.self) { try db.prepare("SELEC 1") }
        do {
            _ = try db.prepare("SELECT * FROM nowhere")
        } catch {
            #expect(error.message == "no such table: nowhere")
        }
    }

    @Test("prepareSingle reports a second statement without running it")
    func single() throws {
        let db = try Connection()
        try db.execute("CREATE TABLE t(x)")
        #expect(try db.prepareSingle("SELECT 1; -- comment\n ;").hasMore == false)
        let (_, more) = try db.prepareSingle("SELECT 1; INSERT INTO t VALUES (1)")
        #expect(more)
        #expect(try db.scalar("SELECT count(*) FROM t") == .integer(0))
    }

    @Test("the authorizer sees reads and functions and can deny them")
    func authorizer() throws {
        let db = try Connection()
        try db.execute("CREATE TABLE t(a, b)")
        nonisolated(unsafe) var seen: [AuthorizerAction] = []
        db.setAuthorizer { request in
            seen.append(request.action)
            return request.action == .read && request.second == "b" ? .deny : .allow
        }
        #expect(try db.prepare("SELECT a, upper(a) FROM t") != nil)
        #expect(seen.contains(.read) && seen.contains(.function))
        #expect(throws: SQLiteError.self) { try db.prepare("SELECT b FROM t") }
    }

    @Test("the progress handler interrupts a runaway statement")
    func progress() throws {
        let db = try Connection()
        nonisolated(unsafe) var calls = 0
        db.setProgressHandler(every: 1000) {
            calls += 1
            return calls > 10
        }
        let statement = try #require(try db.prepare("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"))
        do {
            _ = try statement.step()
            Issue.record("not interrupted")
        } catch {
            #expect(error.isInterrupt)
        }
    }

    @Test("Swift functions receive text and return text or NULL")
    func functions() throws {
        let db = try Connection()
        try db.createFunction(name: "shout", argumentCount: 1, deterministic: true) { arguments, result in
            guard arguments.type(at: 0) != .null else { return result.setNull() }
            let upper = arguments.withText(at: 0) { String(decoding: $0, as: UTF8.self).uppercased() + "!" }
            Array(upper.utf8).withUnsafeBufferPointer { result.setText($0) }
        }
        #expect(try db.scalar("SELECT shout('hi')") == .text("HI!"))
        #expect(try db.scalar("SELECT shout(12)") == .text("12!"))
        #expect(try db.scalar("SELECT shout(NULL)") == .null)
    }

    @Test("limits and settings apply")
    func limits() throws {
        let db = try Connection()
        db.setLimit(.length, 1000)
        #expect(db.limit(.length) == 1000)
        #expect(throws: SQLiteError.self) { try db.scalar("SELECT zeroblob(5000)") }
        #expect(db.set(.defensive, true))
        db.setLimit(.attached, 0)
        #expect(throws: SQLiteError.self) { try db.execute("ATTACH ':memory:' AS x") }
    }

    @Test("backup copies a database, and an immutable open cannot write")
    func backupAndImmutable() throws {
        let source = try Connection()
        try source.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
        let path = NSTemporaryDirectory() + "sandgate-backup-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let copy = try Connection(path: path, mode: .readWriteCreate)
            try copy.restore(from: source)
        }
        let immutable = try Connection(path: path, mode: .readOnlyImmutable)
        #expect(try immutable.scalar("SELECT sum(x) FROM t") == .integer(3))
        #expect(throws: SQLiteError.self) { try immutable.execute("INSERT INTO t VALUES (3)") }
    }

    @Test("an odd path survives the immutable URI")
    func oddPath() throws {
        let path = NSTemporaryDirectory() + "sandgate odd?#%&=path-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do { try Connection(path: path, mode: .readWriteCreate).execute("CREATE TABLE t(x)") }
        #expect(try Connection(path: path, mode: .readOnlyImmutable).scalar("SELECT count(*) FROM t") == .integer(0))
    }
}
