import Foundation
import SandgateSQLite
import Synchronization

/// The SQLite ledger's running totals (`RunningTotals`): kept in `usage_totals` in the
/// transaction of each batch, read by admission in a few index lookups, recomputed by `verify`.
extension Ledger {
    /// The records matching `condition` summed per row of the totals, in the columns of
    /// `usage_totals`. The day and month of a record are computed here as `Timestamp` computes
    /// them in Swift for each commit; `verify` compares the two.
    static func recomputeSQL(where condition: String) -> String {
        """
        WITH r AS (
            SELECT consumer, dataset, purpose, status, rows, cost_micros, epsilon_micros, suppressed_groups,
                   started_at - (((started_at % 86400000000) + 86400000000) % 86400000000) AS day
            FROM usage WHERE \(condition)),
        b AS (
            SELECT 'day' AS period, day AS start, * FROM r
            UNION ALL SELECT 'month', CAST(strftime('%s', day / 1000000, 'unixepoch', 'start of month') AS INTEGER) * 1000000, * FROM r
            UNION ALL SELECT 'total', 0, * FROM r)
        SELECT consumer, dataset, period, start, purpose, count(*) AS records, sum(status = 'ok') AS ok_queries,
               sum(CASE WHEN status = 'ok' THEN rows ELSE 0 END) AS ok_rows, sum(cost_micros) AS cost_micros,
               sum(epsilon_micros) AS epsilon_micros, sum(status = 'refused') AS refused, sum(suppressed_groups) AS suppressed_groups
        FROM b GROUP BY consumer, dataset, period, start, purpose
        """
    }

    static func upsertSQL(table: String) -> String {
        "ON CONFLICT (consumer, dataset, period, start, purpose) DO UPDATE SET \(RunningTotals.saturatingUpdate(table: table, least: "min"))"
    }

    /// Adds `deltas` to `table` (inside the caller's transaction).
    static func addTotals(_ deltas: [(key: TotalsKey, counts: UsageCounts)], to table: String, _ connection: Connection) throws(SQLiteError) {
        let sql = "INSERT INTO \(table) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \(upsertSQL(table: table))"
        for (key, counts) in deltas {
            _ = try connection.cachedRows(sql, [.text(key.consumer), .text(key.dataset), .text(key.period.rawValue), .integer(key.start),
                                                .text(key.purpose)] + counts.values.map { .integer($0) })
        }
    }

    /// Records summed per bulk step of the first build (one progress report each).
    static let buildStep: Int64 = 200_000

    /// Builds `usage_totals` from the records when this ledger has none yet (a ledger of a sandgate
    /// before running totals), once, in one transaction: a second process opening the file waits
    /// and finds them built. Records archived before then are not in the totals (they are not in
    /// the file either), so the totals and the records agree.
    static func buildTotalsOnce(_ connection: Connection, progress: LedgerProgress?) throws(LedgerError) {
        do {
            try connection.execute("BEGIN IMMEDIATE")
            do {
                if try !connection.rows("SELECT 1 FROM ledger_meta WHERE name = 'running_totals'").isEmpty {
                    try connection.execute("COMMIT")
                    return
                }
                try connection.execute("DELETE FROM usage_totals; DELETE FROM usage_totals_archived")
                let bounds = try connection.rows("SELECT coalesce(min(seq), 1), coalesce(max(seq), 0), count(*) FROM usage").first ?? []
                guard bounds.count == 3, case .integer(let first) = bounds[0], case .integer(let last) = bounds[1],
                      case .integer(let count) = bounds[2] else { throw LedgerError(.store, "cannot count the records to total") }
                var from = first - 1
                while from < last {
                    let to = min(last, from + buildStep)
                    try connection.execute("""
                        INSERT INTO usage_totals SELECT * FROM (\(recomputeSQL(where: "seq > \(from) AND seq <= \(to)"))) WHERE true
                        \(upsertSQL(table: "usage_totals"))
                        """)
                    from = to
                    progress?(min(count, to - first + 1), count)
                }
                try connection.execute("INSERT INTO ledger_meta VALUES ('running_totals', '1')")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        } catch let error as LedgerError {
            throw error
        } catch {
            throw LedgerError(.store, "cannot build the running totals: \(error)")
        }
    }

    /// `readTotals`' statement, written once (admission runs it for every request with quotas).
    static let readTotalsSQL: String = {
        let sums = RunningTotals.countColumns.map { "coalesce(sum(\($0)), 0)" }.joined(separator: ", ")
        let zeros = RunningTotals.countColumns.dropFirst().map { _ in "0" }.joined(separator: ", ")
        return TotalsPeriod.allCases.enumerated().map { index, period in
            "SELECT \(index), \(sums) FROM usage_totals WHERE consumer = ?1 AND dataset = ?2 AND period = '\(period.rawValue)' AND start = ?\(index + 3)"
        }.joined(separator: " UNION ALL ")
            + " UNION ALL SELECT 3, coalesce((SELECT CAST(value AS INTEGER) FROM ledger_meta WHERE name = ?6), 0), \(zeros)"
    }()

    /// The totals of consumer × dataset for `day`, `month` and all time, summed over purposes,
    /// and the number of this ledger handle's last committed batch with holds (`LocalHolds`):
    /// three index lookups and a key lookup in one statement (one snapshot), however many records.
    func readTotals(consumer: String, dataset: String, day: Int64, month: Int64) throws(LedgerError) -> (totals: UsageTotals, visibleBatch: Int64) {
        try readLock.withLock { _ throws(LedgerError) -> (totals: UsageTotals, visibleBatch: Int64) in
            do throws(SQLiteError) {
                var totals = UsageTotals()
                var visibleBatch: Int64 = 0
                let parameters: [SQLValue] = [.text(consumer), .text(dataset), .integer(day), .integer(month), .integer(0), .text(batchMarker)]
                for row in try reader.cachedRows(Self.readTotalsSQL, parameters) {
                    let values = row.map { value -> Int64 in if case .integer(let number) = value { number } else { 0 } }
                    guard values.count == RunningTotals.countColumns.count + 1 else { continue }
                    if values[0] == 3 {
                        visibleBatch = values[1]
                    } else {
                        totals[TotalsPeriod.allCases[Int(values[0])]] = UsageCounts(values: Array(values.dropFirst()))
                    }
                }
                return (totals, visibleBatch)
            } catch {
                throw LedgerError(.store, "cannot read usage: \(error.message)")
            }
        }
    }

    /// The first row of `usage_totals` that differs from the records plus what was archived (or
    /// is missing from either side), in one statement: one snapshot while others append.
    func verifyTotals() throws(LedgerError) -> LedgerProblem? {
        let keys = "consumer, dataset, period, start, purpose"
        let sums = RunningTotals.countColumns.map { "sum(\($0)) AS \($0)" }.joined(separator: ", ")
        return try readLock.withLock { _ throws(LedgerError) -> LedgerProblem? in
            do throws(SQLiteError) {
                let rows = try reader.rows("""
                    WITH recomputed AS (\(Self.recomputeSQL(where: "1"))),
                    expected AS MATERIALIZED (
                        SELECT \(keys), \(sums) FROM (SELECT * FROM recomputed UNION ALL SELECT * FROM usage_totals_archived) GROUP BY \(keys))
                    SELECT \(keys) FROM (
                        SELECT * FROM expected EXCEPT SELECT * FROM usage_totals
                        UNION ALL SELECT * FROM (SELECT * FROM usage_totals EXCEPT SELECT * FROM expected))
                    LIMIT 1
                    """)
                guard let row = rows.first, row.count == 5 else { return nil }
                func text(_ value: SQLValue) -> String { if case .text(let text) = value { text } else { "\(value)" } }
                let start: Int64 = if case .integer(let number) = row[3] { number } else { 0 }
                return RunningTotals.mismatch(consumer: text(row[0]), dataset: text(row[1]), period: text(row[2]), start: start, purpose: text(row[4]))
            } catch {
                throw LedgerError(.store, "cannot recompute the running totals: \(error.message)")
            }
        }
    }
}
