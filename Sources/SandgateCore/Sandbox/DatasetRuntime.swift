import Foundation
import SandgatePolicy

/// One published dataset ready to serve: its policy version, snapshot, secret and a pool of
/// prepared sandbox connections. Immutable; a reload builds a new runtime, so queries in flight
/// finish on the version they started with.
public final class DatasetRuntime: Sendable {
    public let policy: DatasetPolicy
    public let snapshot: Snapshot
    let key: [UInt8]
    let pool: SandboxPool

    init(policy: DatasetPolicy, snapshot: Snapshot, key: [UInt8], poolSize: Int) {
        self.policy = policy
        self.snapshot = snapshot
        self.key = key
        pool = SandboxPool(capacity: poolSize) { () throws(GatewayError) in
            try SandboxConnection(policy: policy, snapshot: snapshot, key: key)
        }
    }
}

/// Idle sandbox connections of one dataset runtime. A connection is handed to exactly one worker
/// at a time and returned afterwards; at most `capacity` idle connections are kept.
///
/// `@unchecked Sendable`: `idle` is only touched under `lock`, and a connection taken out is owned
/// by the taker alone until it is given back.
final class SandboxPool: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [SandboxConnection] = []
    private let capacity: Int
    private let make: @Sendable () throws(GatewayError) -> SandboxConnection

    init(capacity: Int, make: @escaping @Sendable () throws(GatewayError) -> SandboxConnection) {
        self.capacity = max(1, capacity)
        self.make = make
    }

    /// Runs `body` with a connection of the pool (a new one when none is idle).
    func withConnection<T>(_ body: (SandboxConnection) -> T) throws(GatewayError) -> T {
        lock.lock()
        let existing = idle.popLast()
        lock.unlock()
        let connection: SandboxConnection
        if let existing {
            connection = existing
        } else {
            connection = try make()
        }
        let result = body(connection)
        lock.lock()
        if idle.count < capacity { idle.append(connection) }
        lock.unlock()
        return result
    }

    /// Creates connections up to the capacity so that first queries do not pay for set-up.
    func warmUp() throws(GatewayError) {
        var made: [SandboxConnection] = []
        for _ in 0..<capacity { made.append(try make()) }
        lock.lock()
        idle.append(contentsOf: made)
        lock.unlock()
    }
}
