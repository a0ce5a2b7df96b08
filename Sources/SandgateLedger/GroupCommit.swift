import Foundation

/// Group commit for a ledger store: one writer thread commits whatever records are queued in one
/// batch (one transaction, one fsync), so records that arrive during a commit share the next one.
/// A caller learns its record is durable through its completion; callers need not block a
/// thread while they wait, so many queries share each commit.
///
/// The writer is a thread of its own, not a task or a pool worker: a commit blocks it for an fsync
/// (SQLite) or a round trip (PostgreSQL), and records queued meanwhile must find it busy, not
/// queued behind other work. It hands work over through `ThreadHandoff`, the one blocking
/// primitive besides `Mutex`.
///
/// `@unchecked Sendable`: everything but `lastAnchor` is in `state`, behind the handoff's lock;
/// `lastAnchor` is used only on the writer thread.
public final class GroupCommit: @unchecked Sendable {
    /// One queued record, the quota hold its commit charges, and who waits for it.
    public struct Entry: Sendable {
        public let record: UsageRecord
        public let hold: QuotaHold?
        let completion: LedgerCompletion
    }

    /// Writes a batch in one transaction; one result per entry, in order.
    public typealias Commit = @Sendable ([Entry]) -> [Result<UsageRecord, LedgerError>]

    /// What the writer and its callers share.
    private struct State {
        /// The store that owns this writer: held strongly by the writer thread while it runs (its
        /// closures capture the store unowned), so a store dropped with records in flight still
        /// commits and anchors them.
        weak var owner: AnyObject?
        /// Set once by the store that owns this writer (`configure`).
        var commit: Commit?
        /// Writes the store's anchor outside its storage for the last committed record (a
        /// checkpoint: an fsync of its own). Run after a batch's completions, so it adds no
        /// latency to released results; while records wait, the next batch's anchor covers this
        /// one, but never more than `anchorInterval` later.
        var anchor: @Sendable (UsageRecord) -> Void = { _ in }
        var queue: [Entry] = []
        var inCommit = 0
        var finishing = false
        var writerRunning = false
        var stopping = false

        /// Nothing queued, committing or completing.
        var isDrained: Bool { queue.isEmpty && inCommit == 0 && !finishing }
    }

    private let name: String
    private let state = ThreadHandoff(State())
    /// When the writer last anchored (writer thread only).
    private var lastAnchor: UInt64 = 0
    static let anchorInterval: UInt64 = 100_000_000

    public init(name: String) { self.name = name }

    /// Sets how batches are written; the store calls it at the end of its initialiser, once it
    /// can hand out closures over itself.
    public func configure(owner: AnyObject, commit: @escaping Commit, anchor: @escaping @Sendable (UsageRecord) -> Void = { _ in }) {
        state.update { state in
            state.owner = owner
            state.commit = commit
            state.anchor = anchor
        }
    }

    /// Records waiting for a commit or being committed.
    public var pendingCount: Int {
        state.read { $0.queue.count + $0.inCommit }
    }

    /// Queues a record; false when the writer has stopped (the caller fails the record).
    public func enqueue(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion) -> Bool {
        state.update { state in
            guard !state.stopping else { return false }
            state.queue.append(Entry(record: record, hold: hold, completion: completion))
            if !state.writerRunning {
                state.writerRunning = true
                let owner = Unchecked(state.owner)
                let thread = Thread { [self] in withExtendedLifetime(owner) { writeLoop() } }
                thread.name = name
                thread.start()
            }
            return true
        }
    }

    /// Waits until every record queued so far is committed and its batch finished.
    public func sync() {
        state.wait(until: \State.isDrained) { _ in }
    }

    /// Commits what is queued and stops the writer; later records are refused.
    public func stop() {
        state.update { $0.stopping = true }
        state.wait(until: { !$0.writerRunning }) { _ in }
    }

    private func writeLoop() {
        while true {
            // An idle writer exits after a second (and is restarted by the next record), so a
            // ledger nobody uses holds no thread.
            let next = state.wait(until: { !$0.queue.isEmpty || $0.stopping }, deadline: Date().addingTimeInterval(1)) { state in
                if state.queue.isEmpty {
                    state.writerRunning = false
                    return nil as (batch: [Entry], commit: Commit?, anchor: @Sendable (UsageRecord) -> Void)?
                }
                let batch = state.queue
                state.queue.removeAll(keepingCapacity: true)
                state.inCommit = batch.count
                return (batch, state.commit, state.anchor)
            }
            guard let (batch, commit, anchor) = next else { return }
            let results = commit?(batch) ?? batch.map { _ in .failure(LedgerError(.unavailable, "the ledger is not configured")) }
            state.update { state in
                state.inCommit = 0
                state.finishing = true
            }
            for (entry, result) in zip(batch, results) { entry.completion(result) }
            if case .success(let last)? = results.last {
                let now = DispatchTime.now().uptimeNanoseconds
                if pendingCount == 0 || now - lastAnchor >= Self.anchorInterval {
                    lastAnchor = now
                    anchor(last)
                }
            }
            state.update { $0.finishing = false }
        }
    }
}

/// Carries the owner into the writer thread; it is only kept alive there, never used.
private struct Unchecked: @unchecked Sendable {
    let value: AnyObject?
    init(_ value: AnyObject?) { self.value = value }
}
