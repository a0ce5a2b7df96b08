import Synchronization

/// Daily quotas reserved by requests in flight, so that concurrent requests of one consumer
/// cannot together pass its quota: the ledger counts what is committed, this book what is
/// running. A reservation is released after the request's record is committed (for a moment both
/// count it, which errs on the side of refusing).
final class QuotaBook: Sendable {
    struct Key: Hashable, Sendable {
        let consumer: String
        let dataset: String
        let day: Int64
    }

    /// What one request holds until its record is written.
    struct Reservation: Sendable {
        let key: Key
        let rows: Int64
    }

    private let reserved = Mutex<[Key: (queries: Int64, rows: Int64)]>([:])

    /// Reserves one query and up to `rowLimit` rows against today's quota, given what the ledger
    /// has committed. Returns the reservation and the row limit left to the query, or the error.
    func reserve(
        _ key: Key, used: (queries: Int64, rows: Int64), dailyQueries: Int?, dailyRows: Int?, rowLimit: Int
    ) -> Result<(Reservation, rowLimit: Int), GatewayError> {
        reserved.withLock { book in
            let held = book[key] ?? (0, 0)
            if let daily = dailyQueries, used.queries + held.queries >= Int64(daily) {
                return .failure(GatewayError(.quotaExceeded, "daily query quota of \(daily) reached", hint: "the quota resets at 00:00 UTC"))
            }
            var limit = Int64(rowLimit)
            if let daily = dailyRows {
                let left = Int64(daily) - used.rows - held.rows
                guard left > 0 else {
                    return .failure(GatewayError(.quotaExceeded, "daily row quota of \(daily) reached", hint: "the quota resets at 00:00 UTC"))
                }
                limit = min(limit, left)
            }
            book[key] = (held.queries + 1, held.rows + (dailyRows == nil ? 0 : limit))
            return .success((Reservation(key: key, rows: dailyRows == nil ? 0 : limit), Int(limit)))
        }
    }

    func release(_ reservation: Reservation) {
        reserved.withLock { book in
            guard let held = book[reservation.key] else { return }
            let next = (queries: held.queries - 1, rows: held.rows - reservation.rows)
            book[reservation.key] = next.queries <= 0 ? nil : next
        }
    }
}
