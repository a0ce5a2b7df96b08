import PostgresNIO
import SandgateLedger

/// The PostgreSQL store's running totals (`RunningTotals`): one row per node × consumer × dataset
/// × period × start × purpose, written only by that node's writer in its batch statement, read by
/// every node's admission in one index scan, recomputed by `verify` in one statement.
extension PostgresLedgerStore {
    static let totalsColumnDefinitions = """
        node_id text NOT NULL, consumer text NOT NULL, dataset text NOT NULL, period text NOT NULL, start bigint NOT NULL,
        purpose text NOT NULL, records bigint NOT NULL, ok_queries bigint NOT NULL, ok_rows bigint NOT NULL,
        cost_micros bigint NOT NULL, epsilon_micros bigint NOT NULL, refused bigint NOT NULL, suppressed_groups bigint NOT NULL,
        PRIMARY KEY (consumer, dataset, period, start, node_id, purpose)
        """

    static func upsertSQL(table: String) -> String {
        "ON CONFLICT (consumer, dataset, period, start, node_id, purpose) DO UPDATE SET \(RunningTotals.saturatingUpdate(table: table, least: "least"))"
    }

    /// The records matching `condition` summed per row of the totals, in the columns of
    /// `usage_totals` (texts as stored). Day and month as `Timestamp` computes them in Swift.
    static func recomputeSQL(where condition: String) -> String {
        """
        WITH r AS (
            SELECT node_id, consumer, dataset, purpose, status, rows, cost_micros, epsilon_micros, suppressed_groups,
                   started_at - (((started_at % 86400000000) + 86400000000) % 86400000000) AS day
            FROM usage WHERE \(condition)),
        b AS (
            SELECT 'day'::text AS period, day AS start, * FROM r
            UNION ALL SELECT 'month', extract(epoch FROM date_trunc('month', to_timestamp(day / 1000000) AT TIME ZONE 'UTC'))::bigint * 1000000, * FROM r
            UNION ALL SELECT 'total', 0, * FROM r)
        SELECT node_id, consumer, dataset, period, start, purpose, count(*) AS records,
               count(*) FILTER (WHERE status = 'ok') AS ok_queries,
               coalesce(sum(rows) FILTER (WHERE status = 'ok'), 0)::bigint AS ok_rows, sum(cost_micros)::bigint AS cost_micros,
               sum(epsilon_micros)::bigint AS epsilon_micros, count(*) FILTER (WHERE status = 'refused') AS refused,
               sum(suppressed_groups)::bigint AS suppressed_groups
        FROM b GROUP BY node_id, consumer, dataset, period, start, purpose
        """
    }

    /// The batch's sums as the array parameters `$40`…`$51` of `commitSQL`.
    static func appendTotals(_ deltas: [(key: TotalsKey, counts: UsageCounts)], to binds: inout PostgresBindings) {
        binds.append(deltas.map { StoredText.encode($0.key.consumer) })
        binds.append(deltas.map { StoredText.encode($0.key.dataset) })
        binds.append(deltas.map { $0.key.period.rawValue })
        binds.append(deltas.map(\.key.start))
        binds.append(deltas.map { StoredText.encode($0.key.purpose) })
        for column in RunningTotals.countColumns.indices {
            binds.append(deltas.map { $0.counts.values[column] })
        }
    }

    /// Builds the totals from the records when the database has none yet (nodes of a sandgate
    /// before running totals wrote it), inside `createSchema`'s transaction and advisory lock: one
    /// node builds, the others wait and find them built.
    static func buildTotalsOnce(_ session: PostgresSession, progress: LedgerProgress?) throws(LedgerError) {
        guard try session.run("SELECT 1 FROM ledger_meta WHERE name = 'running_totals'", timeout: nil).isEmpty else { return }
        let count: Int64 = try session.run("SELECT count(*) FROM usage", timeout: nil).first.map { row throws(LedgerError) in try decode(row, Int64.self) } ?? 0
        progress?(0, count)
        try session.run("DELETE FROM usage_totals", timeout: nil)
        try session.run("DELETE FROM usage_totals_archived", timeout: nil)
        try session.run("INSERT INTO usage_totals \(recomputeSQL(where: "true"))", timeout: nil)
        try session.run("INSERT INTO ledger_meta VALUES ('running_totals', '1')", timeout: nil)
        progress?(count, count)
    }

    /// The first row of `usage_totals` that differs from the records plus what was archived, or is
    /// missing from either side: one statement, so one snapshot while nodes append.
    func verifyTotals() throws(LedgerError) -> LedgerProblem? {
        let keys = "node_id, consumer, dataset, period, start, purpose"
        let sums = RunningTotals.countColumns.map { "sum(\($0))::bigint AS \($0)" }.joined(separator: ", ")
        do {
            return try connector.withSession { session throws(LedgerError) in
                let rows = try session.run("""
                    WITH recomputed AS (\(Self.recomputeSQL(where: "true"))),
                    expected AS MATERIALIZED (
                        SELECT \(keys), \(sums) FROM (SELECT * FROM recomputed UNION ALL SELECT * FROM usage_totals_archived) everything
                        GROUP BY \(keys))
                    SELECT \(keys) FROM (
                        (SELECT * FROM expected EXCEPT SELECT * FROM usage_totals)
                        UNION ALL (SELECT * FROM usage_totals EXCEPT SELECT * FROM expected)) differences
                    LIMIT 1
                    """, timeout: nil)
                guard let row = rows.first else { return nil }
                let (node, consumer, dataset, period, start, purpose) = try Self.decode(
                    row, (String.self, String.self, String.self, String.self, Int64.self, String.self))
                func shown(_ stored: String) -> String { StoredText.decode(stored) ?? stored }
                return RunningTotals.mismatch(consumer: shown(consumer), dataset: shown(dataset), period: period, start: start,
                                              purpose: shown(purpose), node: node)
            }
        } catch {
            throw LedgerError(.store, "cannot recompute the running totals: \(error.message)")
        }
    }
}
