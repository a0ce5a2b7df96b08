@testable import SandgateLedger
import Testing

/// Issue 24: the SQLite store ends a batch's holds without holding the decision lock across its
/// commit; a decision made meanwhile counts each hold exactly once, by the batch its snapshot shows.
@Suite struct LocalHoldsTests {
    static let request = QuotaRequest(consumer: "kate", dataset: "retail", day: 0, month: 0, rowLimit: 5,
                                      limits: QuotaLimits(dailyQueries: 2))

    @Test("during a commit, a decision counts the committing hold until its snapshot shows the batch, then the record instead")
    func decisionDuringCommit() throws {
        let holds = LocalHolds()
        guard case .granted(let hold, _) = try holds.reserve(Self.request, committed: { (QuotaUse(), 0) }) else {
            Issue.record("the first query is granted")
            return
        }
        var during: [QuotaDecision] = []
        try holds.settle([hold], batch: 1) { () throws(LedgerError) in
            // Snapshot before the COMMIT is visible: no record, so the hold counts (1 of 2 used).
            let before = try holds.reserve(Self.request, committed: { (QuotaUse(), 0) })
            during.append(before)
            if case .granted(let second, _) = before { holds.release(second) }
            // Snapshot after it is visible: the record counts (1 of 2 used), the hold does not.
            let after = try holds.reserve(Self.request, committed: { (QuotaUse(queries: 1), 1) })
            during.append(after)
            if case .granted(let second, _) = after { holds.release(second) }
        }
        #expect(during.count == 2)
        #expect(during.allSatisfy { if case .granted = $0 { true } else { false } })
        // A decision that saw both the record and the hold would have refused; one that saw
        // neither would grant two more. After the commit: the record and one more query.
        guard case .granted(let third, _) = try holds.reserve(Self.request, committed: { (QuotaUse(queries: 1), 1) }) else {
            Issue.record("one query is left")
            return
        }
        #expect(try holds.reserve(Self.request, committed: { (QuotaUse(queries: 1), 1) }) == .exceeded(quota: "daily_queries", limit: 2))
        holds.release(third)
    }

    @Test("a commit that fails gives its holds back to the book, and their release frees them")
    func failedCommit() throws {
        struct Failure: Error {}
        let holds = LocalHolds()
        guard case .granted(let hold, _) = try holds.reserve(Self.request, committed: { (QuotaUse(), 0) }) else {
            Issue.record("granted")
            return
        }
        #expect(throws: Failure.self) { try holds.settle([hold], batch: 1) { () throws(Failure) in throw Failure() } }
        guard case .granted(let second, _) = try holds.reserve(Self.request, committed: { (QuotaUse(), 0) }) else {
            Issue.record("the hold is still counted, one query is left")
            return
        }
        #expect(try holds.reserve(Self.request, committed: { (QuotaUse(), 0) }) == .exceeded(quota: "daily_queries", limit: 2))
        holds.release(hold)
        holds.release(second)
        guard case .granted = try holds.reserve(Self.request, committed: { (QuotaUse(), 0) }) else {
            Issue.record("released holds free their queries")
            return
        }
    }
}
