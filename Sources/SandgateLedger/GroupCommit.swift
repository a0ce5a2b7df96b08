import Foundation

/// Group commit for a ledger store: one writer thread commits whatever records are queued in one
/// batch (one transaction, one fsync), so records that arrive during a commit share the next one.
/// A caller learns its record is durable through its completion; callers need not block a
/// thread while they wait, so many queries share each commit.
///
/// `@unchecked Sendable`: the queue and the flags are used only under `condition`; `commit`,
/// `anchor` and `lastAnchor` are used only on the writer thread (or in `stop`, once the writer has exited).
public final class GroupCommit: @unchecked Sendable {
    /// One queued record, the quota hold its commit charges, and who waits for it.
    public struct Entry: Sendable {
        public let record: UsageRecord
        public let hold: QuotaHold?
        let completion: LedgerCompletion
    }

    /// Writes a batch in one transaction; one result per entry, in order.
    public typealias Commit = @Sendable ([Entry]) -> [Result<UsageRecord, LedgerError>]

    private let name: String
    /// The store that owns this writer: held strongly by the writer thread while it runs (its
    /// closures capture the store unowned), so a store dropped with records in flight still
    /// commits and anchors them.
    private weak var owner: AnyObject?
    /// Set once by the store that owns this writer (`configure`), read under `condition`.
    private var commit: Commit?
    /// Writes the store's anchor outside its storage for the last committed record (a checkpoint:
    /// an fsync of its own). Run after a batch's completions, so it adds no latency to released
    /// results; while records wait, the next batch's anchor covers this one, but never more than
    /// `anchorInterval` later.
    private var anchor: @Sendable (UsageRecord) -> Void = { _ in }
    /// When the writer last anchored (writer thread only).
    private var lastAnchor: UInt64 = 0
    static let anchorInterval: UInt64 = 100_000_000
    private let condition = NSCondition()
    private var queue: [Entry] = []
    private var inCommit = 0
    private var finishing = false
    private var writerRunning = false
    private var stopping = false

    public init(name: String) { self.name = name }

    /// Sets how batches are written; the store calls it at the end of its initialiser, once it
    /// can hand out closures over itself.
    public func configure(owner: AnyObject, commit: @escaping Commit, anchor: @escaping @Sendable (UsageRecord) -> Void = { _ in }) {
        condition.lock()
        defer { condition.unlock() }
        self.owner = owner
        self.commit = commit
        self.anchor = anchor
    }

    /// Records waiting for a commit or being committed.
    public var pendingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count + inCommit
    }

    /// Queues a record; false when the writer has stopped (the caller fails the record).
    public func enqueue(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        queue.append(Entry(record: record, hold: hold, completion: completion))
        if !writerRunning {
            writerRunning = true
            let owner = Unchecked(owner)
            let thread = Thread { [self] in withExtendedLifetime(owner) { writeLoop() } }
            thread.name = name
            thread.start()
        }
        condition.broadcast()
        return true
    }

    /// Waits until every record queued so far is committed and its batch finished.
    public func sync() {
        condition.lock()
        while !queue.isEmpty || inCommit > 0 || finishing { condition.wait() }
        condition.unlock()
    }

    /// Commits what is queued and stops the writer; later records are refused.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while writerRunning { condition.wait() }
        condition.unlock()
    }

    private func writeLoop() {
        while true {
            condition.lock()
            // An idle writer exits after a second (and is restarted by the next record), so a
            // ledger nobody uses holds no thread.
            let idleUntil = Date().addingTimeInterval(1)
            while queue.isEmpty, !stopping, condition.wait(until: idleUntil) {}
            if queue.isEmpty {
                writerRunning = false
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            inCommit = batch.count
            let (commit, anchor) = (self.commit, self.anchor)
            condition.unlock()
            let results = commit?(batch) ?? batch.map { _ in .failure(LedgerError(.unavailable, "the ledger is not configured")) }
            condition.lock()
            inCommit = 0
            finishing = true
            condition.unlock()
            for (entry, result) in zip(batch, results) { entry.completion(result) }
            if case .success(let last)? = results.last {
                let now = DispatchTime.now().uptimeNanoseconds
                if pendingCount == 0 || now - lastAnchor >= Self.anchorInterval {
                    lastAnchor = now
                    anchor(last)
                }
            }
            condition.lock()
            finishing = false
            condition.broadcast()
            condition.unlock()
        }
    }
}

/// Carries the owner into the writer thread; it is only kept alive there, never used.
private struct Unchecked: @unchecked Sendable {
    let value: AnyObject?
    init(_ value: AnyObject?) { self.value = value }
}
