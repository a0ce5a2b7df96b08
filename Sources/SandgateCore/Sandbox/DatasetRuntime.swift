import Foundation
import SandgatePolicy
import SandgateSQL
import Synchronization

/// One published dataset ready to serve: its policy version, snapshot, secret and a pool of
/// prepared sandbox connections. Immutable; a reload builds a new runtime, so queries in flight
/// finish on the version they started with.
public final class DatasetRuntime: Sendable {
    public let policy: DatasetPolicy
    public let snapshot: Snapshot
    /// Sizes, unique keys and sum ranges of the snapshot, for aggregate plans.
    public let facts: SnapshotFacts
    let key: [UInt8]
    /// The sandboxes of a dataset whose tokens are shared by every consumer.
    let pool: SandboxPool
    /// Released answers of private queries (issue 10): a new snapshot or policy is a new runtime,
    /// so an answer is never reused across them.
    let privateAnswers = PrivateAnswers()
    /// With `tokens: per_consumer`: one pool per consumer, whose sandboxes mask with that
    /// consumer's derived key. Created on a consumer's first query; consumers are the operator's
    /// declared names (a query reaches here only after its consumer was found), so this is bounded.
    private let consumerPools = Mutex<[String: SandboxPool]>([:])
    private let poolSize: Int
    /// Checked and rendered queries by SQL text (refusals too): the same text against the same
    /// policy always checks the same way. Bounded; cleared when full.
    private let plans = Mutex<[String: Result<PreparedQuery, GatewayError>]>([:])
    static let planCacheSize = 1024

    init(policy: DatasetPolicy, snapshot: Snapshot, facts: SnapshotFacts, key: [UInt8], poolSize: Int) {
        self.policy = policy
        self.snapshot = snapshot
        self.facts = facts
        self.key = key
        self.poolSize = poolSize
        pool = SandboxPool(capacity: poolSize) { () throws(GatewayError) in
            try SandboxConnection(policy: policy, snapshot: snapshot, key: key)
        }
    }
}

extension DatasetRuntime {
    /// The pool whose sandboxes mask for `consumer`: the shared pool, or with `tokens:
    /// per_consumer` the consumer's own (its key derived from the dataset's secret, so its tokens
    /// are stable across queries, reloads and restarts, and differ from every other consumer's).
    func pool(for consumer: String) -> SandboxPool {
        guard policy.tokens == .perConsumer else { return pool }
        return consumerPools.withLock { pools in
            if let existing = pools[consumer] { return existing }
            let key = DatasetSecret.consumerKey(datasetKey: self.key, consumer: consumer)
            let (policy, snapshot) = (self.policy, self.snapshot)
            let made = SandboxPool(capacity: max(1, poolSize / 2)) { () throws(GatewayError) in
                try SandboxConnection(policy: policy, snapshot: snapshot, key: key)
            }
            pools[consumer] = made
            return made
        }
    }
}

/// A checked query, rendered, with what the sandbox needs to run and meter it.
struct PreparedQuery: Sendable {
    let rendered: String
    let plan: ExecutionPlan
}

extension DatasetRuntime {
    /// Parses, checks and renders `sql` for this runtime's policy, once per distinct text.
    func prepare(_ sql: String) -> Result<PreparedQuery, GatewayError> {
        if let cached = plans.withLock({ $0[sql] }) { return cached }
        let prepared = Gateway.check(sql, policy: policy, facts: facts).map { checked in
            var plan = checked.plan
            plan.maskedOutputs = checked.maskedOutputs
            return PreparedQuery(rendered: Renderer.render(checked.select), plan: plan)
        }
        if sql.utf8.count <= 16_384 {
            plans.withLock { cache in
                if cache.count >= Self.planCacheSize { cache.removeAll() }
                cache[sql] = prepared
            }
        }
        return prepared
    }
}

/// Idle sandbox connections of one dataset runtime. A connection is handed to exactly one worker
/// at a time and returned afterwards; at most `capacity` idle connections are kept.
///
/// `@unchecked Sendable`: `idle` is only touched under `lock`, and a connection taken out is owned
/// by the taker alone until it is given back. (A `Mutex<Void>` beside the array, not around it: a
/// SQLite connection is not `Sendable`, and a `Mutex` may only hand out values it can send.)
final class SandboxPool: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private var idle: [SandboxConnection] = []
    private let capacity: Int
    private let make: @Sendable () throws(GatewayError) -> SandboxConnection

    init(capacity: Int, make: @escaping @Sendable () throws(GatewayError) -> SandboxConnection) {
        self.capacity = max(1, capacity)
        self.make = make
    }

    /// Runs `body` with a connection of the pool (a new one when none is idle).
    func withConnection<T>(_ body: (SandboxConnection) -> T) throws(GatewayError) -> T {
        let existing = lock.withLock { _ in idle.popLast() }
        let connection: SandboxConnection
        if let existing {
            connection = existing
        } else {
            connection = try make()
        }
        let result = body(connection)
        lock.withLock { _ in if idle.count < capacity { idle.append(connection) } }
        return result
    }

    /// Creates connections up to the capacity so that first queries do not pay for set-up.
    func warmUp() throws(GatewayError) {
        var made: [SandboxConnection] = []
        for _ in 0..<capacity { made.append(try make()) }
        lock.withLock { _ in idle.append(contentsOf: made) }
    }
}
