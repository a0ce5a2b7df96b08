import Foundation
import Synchronization

/// Quota holds of the requests in flight in this process (the SQLite store's holds): the ledger
/// counts what is committed, this book what is running. Two processes sharing one SQLite file
/// do not see each other's holds; the PostgreSQL store keeps its holds in the database instead.
///
/// A batch's holds end when its commit becomes visible, without holding the decision lock across
/// the commit's fsync (which stalled every admission behind each commit): before the COMMIT they
/// move to the committing batch, numbered; the same transaction writes that number to the ledger;
/// a decision counts them only while its snapshot of the ledger does not show that number yet.
final class LocalHolds: Sendable {
    private struct Key: Hashable {
        let consumer: String
        let dataset: String
        let day: Int64
    }

    private struct BudgetKey: Hashable {
        let consumer: String
        let dataset: String
    }

    private struct Book {
        var held: [Key: QuotaUse] = [:]
        /// Micro-ε held per consumer × dataset, whatever the day: a budget's period is not a day.
        var heldEpsilon: [BudgetKey: Int64] = [:]
        /// The batch being committed (one writer: at most one) and its holds.
        var committing: (batch: Int64, holds: [QuotaHold])?
    }

    private let book = Mutex(Book())
    /// Serialises read-decide-hold per process, so two requests cannot both take one last query.
    /// Held across `committed` (a read of the ledger, which takes only the ledger's read lock) and
    /// the book's lock, never the other way round; nothing under it takes it again.
    private let deciding = Mutex<Void>(())

    /// Decides `request` given the ledger's committed use and the number of this process's last
    /// batch that use includes (both read by `committed`, in one snapshot, under the lock).
    func reserve(_ request: QuotaRequest, committed: () throws(LedgerError) -> (use: QuotaUse, visibleBatch: Int64)) throws(LedgerError) -> QuotaDecision {
        try deciding.withLock { _ throws(LedgerError) -> QuotaDecision in
            let key = Key(consumer: request.consumer, dataset: request.dataset, day: request.day)
            let budgetKey = BudgetKey(consumer: request.consumer, dataset: request.dataset)
            let (committedUse, visibleBatch) = try committed()
            var used = committedUse
            book.withLock { book in
                var holding = book.held[key] ?? QuotaUse()
                var epsilon = book.heldEpsilon[budgetKey] ?? 0
                if let committing = book.committing, committing.batch > visibleBatch {
                    for hold in committing.holds where hold.consumer == request.consumer && hold.dataset == request.dataset {
                        if hold.day == request.day {
                            holding.queries += 1
                            holding.rows += hold.rows
                            holding.costMicros = holding.costMicros.saturatingAdding(hold.costMicros)
                        }
                        epsilon += hold.epsilonMicros
                    }
                }
                used.queries += holding.queries
                used.rows += holding.rows
                used.costMicros = used.costMicros.saturatingAdding(holding.costMicros)
                used.epsilonMicros += epsilon
            }
            let decision = request.decide(used: used, holdID: UUID().uuidString)
            if case .granted(let hold, _) = decision { book.withLock { Self.add(hold, to: &$0) } }
            return decision
        }
    }

    /// Runs `commit` — whose transaction records `batch` as this process's last committed batch —
    /// with `holds` moved to the committing batch, and ends them once it returned. If it fails,
    /// the holds go back to the book (the caller releases them).
    func settle<E: Error>(_ holds: [QuotaHold], batch: Int64, around commit: () throws(E) -> Void) throws(E) {
        guard !holds.isEmpty else { return try commit() }
        deciding.withLock { _ in
            book.withLock { book in
                for hold in holds { Self.drop(hold, from: &book) }
                book.committing = (batch, holds)
            }
        }
        do {
            try commit()
        } catch {
            book.withLock { book in
                book.committing = nil
                for hold in holds { Self.add(hold, to: &book) }
            }
            throw error
        }
        // Under the decision lock (the commit is over, so it waits for one decision at most): a
        // decision that read its snapshot before this COMMIT must still find the batch's holds
        // when it reads the book (red team of the lock change: 6 of 32 concurrent private
        // queries took a 5-query budget when the holds vanished between the two reads).
        deciding.withLock { _ in book.withLock { $0.committing = nil } }
    }

    /// Drops `hold` (its request will not be recorded, or its commit failed).
    func release(_ hold: QuotaHold) {
        book.withLock { Self.drop(hold, from: &$0) }
    }

    private static func add(_ hold: QuotaHold, to book: inout Book) {
        let key = Key(consumer: hold.consumer, dataset: hold.dataset, day: hold.day)
        var entry = book.held[key] ?? QuotaUse()
        entry.queries += 1
        entry.rows += hold.rows
        entry.costMicros = entry.costMicros.saturatingAdding(hold.costMicros)
        book.held[key] = entry
        if hold.epsilonMicros > 0 { book.heldEpsilon[BudgetKey(consumer: hold.consumer, dataset: hold.dataset), default: 0] += hold.epsilonMicros }
    }

    private static func drop(_ hold: QuotaHold, from book: inout Book) {
        let key = Key(consumer: hold.consumer, dataset: hold.dataset, day: hold.day)
        if var entry = book.held[key] {
            entry.queries -= 1
            entry.rows -= hold.rows
            entry.costMicros = max(0, entry.costMicros - hold.costMicros)
            book.held[key] = entry.queries <= 0 ? nil : entry
        }
        if hold.epsilonMicros > 0 {
            let budgetKey = BudgetKey(consumer: hold.consumer, dataset: hold.dataset)
            let left = (book.heldEpsilon[budgetKey] ?? 0) - hold.epsilonMicros
            book.heldEpsilon[budgetKey] = left <= 0 ? nil : left
        }
    }
}
