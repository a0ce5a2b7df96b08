import SandgateCore
import Synchronization

/// Running backends by process id, for CancelRequest (which arrives on a new connection).
final class PGBackends: Sendable {
    private let table = Mutex<[Int32: (secret: Int32, cancellation: Cancellation)]>([:])

    func register(cancellation: Cancellation) -> (processID: Int32, secret: Int32) {
        table.withLock { table in
            var processID: Int32
            repeat { processID = Int32.random(in: 1...Int32.max) } while table[processID] != nil
            let secret = Int32.random(in: Int32.min...Int32.max)
            table[processID] = (secret, cancellation)
            return (processID, secret)
        }
    }

    func unregister(_ processID: Int32) { _ = table.withLock { $0.removeValue(forKey: processID) } }

    /// Cancels the backend's running query when the secret matches (silently otherwise, as PostgreSQL does).
    func cancel(processID: Int32, secret: Int32) {
        let entry = table.withLock { $0[processID] }
        if let entry, entry.secret == secret { entry.cancellation.cancel() }
    }
}

/// Holds a session's catalog for use on worker threads: the session runs one request at a time,
/// so the catalog is never used by two threads at once.
final class CatalogBox: @unchecked Sendable {
    var catalog: PGCatalog?
}
