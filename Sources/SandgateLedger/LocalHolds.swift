import Foundation
import Synchronization

/// Quota holds of the requests in flight in this process (the SQLite store's holds): the ledger
/// counts what is committed, this book what is running. Two processes sharing one SQLite file
/// do not see each other's holds; the PostgreSQL store keeps its holds in the database instead.
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

    private let held = Mutex<[Key: QuotaUse]>([:])
    /// Micro-ε held per consumer × dataset, whatever the day: a budget's period is not a day.
    private let heldEpsilon = Mutex<[BudgetKey: Int64]>([:])
    /// Serialises read-decide-hold per process, so a commit between a read of the ledger and the
    /// hold cannot let two requests take one last query.
    private let deciding = NSLock()

    /// Decides `request` given the ledger's committed use (read by `committed` under the lock).
    func reserve(_ request: QuotaRequest, committed: () throws(LedgerError) -> QuotaUse) throws(LedgerError) -> QuotaDecision {
        deciding.lock()
        defer { deciding.unlock() }
        let key = Key(consumer: request.consumer, dataset: request.dataset, day: request.day)
        var used = try committed()
        let holding = held.withLock { $0[key] ?? QuotaUse() }
        used.queries += holding.queries
        used.rows += holding.rows
        used.costMicros = used.costMicros.saturatingAdding(holding.costMicros)
        let budgetKey = BudgetKey(consumer: request.consumer, dataset: request.dataset)
        used.epsilonMicros += heldEpsilon.withLock { $0[budgetKey] ?? 0 }
        let decision = request.decide(used: used, holdID: UUID().uuidString)
        if case .granted(let hold, _) = decision {
            held.withLock { book in
                var entry = book[key] ?? QuotaUse()
                entry.queries += 1
                entry.rows += hold.rows
                entry.costMicros = entry.costMicros.saturatingAdding(hold.costMicros)
                book[key] = entry
            }
            if hold.epsilonMicros > 0 { heldEpsilon.withLock { $0[budgetKey, default: 0] += hold.epsilonMicros } }
        }
        return decision
    }

    /// Runs `commit` (which makes the holds' records durable) and drops `holds`, under the
    /// decision lock, so no decision sees a committed record and its hold, or neither.
    func settle<E: Error>(_ holds: [QuotaHold], around commit: () throws(E) -> Void) throws(E) {
        guard !holds.isEmpty else { return try commit() }
        deciding.lock()
        defer { deciding.unlock() }
        try commit()
        for hold in holds { drop(hold) }
    }

    /// Drops `hold` (its request will not be recorded, or its commit failed).
    func release(_ hold: QuotaHold) {
        deciding.lock()
        defer { deciding.unlock() }
        drop(hold)
    }

    private func drop(_ hold: QuotaHold) {
        let key = Key(consumer: hold.consumer, dataset: hold.dataset, day: hold.day)
        held.withLock { book in
            guard var entry = book[key] else { return }
            entry.queries -= 1
            entry.rows -= hold.rows
            entry.costMicros = max(0, entry.costMicros - hold.costMicros)
            book[key] = entry.queries <= 0 ? nil : entry
        }
        if hold.epsilonMicros > 0 {
            let budgetKey = BudgetKey(consumer: hold.consumer, dataset: hold.dataset)
            heldEpsilon.withLock { book in
                let left = (book[budgetKey] ?? 0) - hold.epsilonMicros
                book[budgetKey] = left <= 0 ? nil : left
            }
        }
    }
}
