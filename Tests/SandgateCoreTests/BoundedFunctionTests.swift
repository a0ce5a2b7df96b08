import Foundation
@testable import SandgateCore
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// Issue 7 item 7: the sandbox's own instr, replace, trim, like and glob give SQLite's answers, and
/// no single call outlives the query's time budget.
@Suite struct BoundedFunctionTests {
    /// Expressions whose value the sandbox must compute exactly as SQLite's built-ins do.
    static let expressions = [
        "instr('hello world', 'o')", "instr('hello', '')", "instr('', 'a')", "instr(NULL, 'a')", "instr('a', NULL)",
        "instr('北京上海北京', '上海')", "instr('ééé', 'é')", "instr(x'0102030203', x'0203')", "instr(x'e4b8ad', 'ä¸')",
        "instr(12345, 34)", "instr(1.5, '.')", "instr('abcabc', 'cab')", "instr(CAST(x'80e4b8ad' AS TEXT), CAST(x'ad' AS TEXT))",
        "replace('aaa', 'a', 'bb')", "replace('abc', '', 'x')", "replace('abc', 'b', '')", "replace(NULL, 'a', 'b')",
        "replace('abc', NULL, 'b')", "replace('abc', 'b', NULL)", "replace(123, 2, 9)", "replace('北京北京', '北', '南')",
        "typeof(replace(5, '', 'x'))", "replace('aaaa', 'aa', 'a')", "replace(x'616263', 'b', 'x')",
        "trim('xxhixx', 'x')", "ltrim('xxhixx', 'x')", "rtrim('xxhixx', 'x')", "trim('abcba', 'ab')", "trim('北京北', '北')",
        "trim('hi', '')", "trim(NULL, 'x')", "trim('x', NULL)", "trim(123321, 13)", "trim('ééaéé', 'é')",
        "'abc' LIKE 'a%'", "'ABC' LIKE 'a_c'", "'abc' LIKE 'A%C'", "'北京' LIKE '北%'", "'北京' LIKE '__'", "'a%c' LIKE 'a\\%c' ESCAPE '\\'",
        "'abc' LIKE 'a\\%c' ESCAPE '\\'", "'a_c' LIKE 'a/_c' ESCAPE '/'", "'abc' LIKE 'abc/' ESCAPE '/'", "'abc' LIKE '%%%'", "'' LIKE '%'",
        "'' LIKE '_'", "NULL LIKE 'a'", "'a' LIKE NULL", "'a' LIKE 'a' ESCAPE NULL", "'aXb' LIKE 'a%b%'", "'mississippi' LIKE '%iss%ppi'",
        "'%' LIKE '%%' ESCAPE '%'", "'ab' LIKE 'a%' ESCAPE '%'", "'ÄBC' LIKE 'äbc'", "'x_y' LIKE 'x_y' ESCAPE '_'", "'xay' LIKE 'x_y' ESCAPE '_'",
        "'abc' GLOB 'a*'", "'abc' GLOB 'A*'", "'abc' GLOB '?b?'", "'abc' GLOB '[a-c]bc'", "'abc' GLOB '[^a]bc'", "'abc' GLOB '[]a]bc'",
        "']bc' GLOB '[]a]bc'", "'-bc' GLOB '[a-]bc'", "'abc' GLOB '[abc'", "'abc' GLOB '*[c'", "'a*c' GLOB 'a[*]c'", "'北京' GLOB '北?'",
        "'zbc' GLOB '[a-c]bc'", "'bbc' GLOB '[c-a]bc'", "'abc' GLOB '*'", "'' GLOB '*'", "'' GLOB '?'", "'aaa' GLOB '*a*a*a*'",
        "123 LIKE '1%'", "1.5 GLOB '1.*'", "x'616263' LIKE 'ab%'", "'ab' || char(0) || 'c' LIKE 'ab'", "like('a%', 'abc')", "glob('a*', 'abc')",
        "like('a', 'A')", "NULL LIKE x'00'", "x'00' GLOB NULL", "like('a/%', 'a%', '/')",
    ]

    @Test("the sandbox's instr, replace, trim, like and glob agree with SQLite's built-ins", arguments: expressions)
    func agreesWithSQLite(expression: String) throws {
        let builtIn = try Connection().rows("SELECT \(expression)")
        let workspace = try TestWorkspace()
        let gateway = try workspace.gateway()
        let runtime = try #require(gateway.runtime("retail"))
        let limits = runtime.policy.limits
        let ours = try runtime.pool.withConnection { sandbox in
            sandbox.execute(sql: "SELECT \(expression)", parameters: .none, limits: limits, rowLimit: 10)
        }
        switch ours {
        case .success(let execution): #expect(execution.result.rows == builtIn, "\(expression)")
        case .failure(let failure): Issue.record("\(expression): \(failure.error) \(failure.detail)")
        }
    }

    @Test("an ESCAPE of more than one character is an error, as in SQLite")
    func escapeMustBeOneCharacter() throws {
        #expect(throws: SQLiteError.self) { try Connection().rows("SELECT 'a' LIKE 'a' ESCAPE 'xy'") }
        let workspace = try TestWorkspace()
        let response = try workspace.gateway().query("SELECT count(*) FROM customers WHERE city LIKE 'a' ESCAPE 'xy'")
        #expect(response.error?.code == .badRequest)
    }

    static let policy = TestWorkspace.retailPolicy.replacing("timeout_ms: 2000", with: "timeout_ms: 400")

    /// The budget's clock in these tests: it moves 1 ms each time it is read, so a call's time is
    /// how often it looks at the clock, and the outcome is the same on every machine however
    /// loaded. A call that never looked while it worked would not reach the deadline at all.
    final class SteppingClock {
        private(set) var readings: [UInt64] = []
        func read() -> UInt64 {
            readings.append(UInt64(readings.count) * 1_000_000)
            return readings[readings.count - 1]
        }
    }

    @Test("a single call that works past the time budget stops at its first look at the clock after the deadline", arguments: [
        ("SELECT instr(hex(zeroblob(800000)), hex(zeroblob(400000)) || '1')", "ok"),
        ("SELECT instr(hex(zeroblob(4000000)), hex(zeroblob(2000000)) || '1')", "ok"),
        ("SELECT length(replace(hex(zeroblob(4000000)), hex(zeroblob(200000)) || '1', 'x'))", "ok"),
        ("SELECT hex(zeroblob(4000000)) LIKE ('%' || hex(zeroblob(498)) || '1%')", "timeout"),
        ("SELECT hex(zeroblob(4000000)) GLOB ('*' || hex(zeroblob(498)) || '1*')", "timeout"),
        ("SELECT count(*) FROM customers WHERE hex(zeroblob(4000000)) || city LIKE ('%' || hex(zeroblob(498)) || '%')", "timeout"),
        ("SELECT length(printf('%1000d', 1))", "ok"),
        ("SELECT length(rtrim(hex(zeroblob(4190000)), replace(hex(zeroblob(4190000)), '0', '1') || '0'))", "ok"),
        ("SELECT length(ltrim(hex(zeroblob(4190000)), replace(hex(zeroblob(4190000)), '0', '1') || '0'))", "ok"),
        ("SELECT length(replace(hex(zeroblob(4190000)), '0', 'x'))", "ok"),
        ("SELECT length(zeroblob(1000000000))", "result_too_large"),
    ])
    func withinBudget(sql: String, expected: String) throws {
        let workspace = try TestWorkspace(policy: Self.policy)
        let runtime = try #require(try workspace.gateway().runtime("retail"))
        let clock = SteppingClock()
        let outcome = try runtime.pool.withConnection { sandbox in
            let real = sandbox.budget.now
            sandbox.budget.now = clock.read
            defer { sandbox.budget.now = real }
            return sandbox.execute(sql: sql, parameters: .none, limits: runtime.policy.limits, rowLimit: 10)
        }
        let code = switch outcome {
        case .success: "ok"
        case .failure(let failure): failure.error.code.rawValue
        }
        #expect(code == expected, "\(sql)")
        // The first reading armed the deadline at 400 ms.
        let late = clock.readings.filter { $0 > 400 * 1_000_000 }.count
        #expect(late == (expected == "timeout" ? 1 : 0), "\(sql): \(clock.readings.count) readings, \(late) after the deadline")
    }
}
