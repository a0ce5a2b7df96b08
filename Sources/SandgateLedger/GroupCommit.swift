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
        /// checkpoint: an fsync of its own). Written on a cadence, never per commit: at most
        /// `anchorInterval` after the last anchor while records are committed, and at once when
        /// the writer goes idle, a caller syncs or the store stops. Run after a batch's
        /// completions, so it adds no latency to released results.
        var anchor: @Sendable (UsageRecord) -> Void = { _ in }
        var queue: [Entry] = []
        var inCommit = 0
        var finishing = false
        var writerRunning = false
        var stopping = false
        /// The last committed record when no anchor covers it yet.
        var unanchored: UsageRecord?
        /// Callers in `sync()`: the writer anchors at once instead of on its cadence.
        var syncing = 0

        /// Nothing queued, committing, completing or waiting for its anchor.
        var isDrained: Bool { queue.isEmpty && inCommit == 0 && !finishing && unanchored == nil }
    }

    /// What the writer does next.
    private enum Step {
        case commit([Entry], Commit?, @Sendable (UsageRecord) -> Void)
        case anchor(UsageRecord, @Sendable (UsageRecord) -> Void)
        case exit
    }

    private let name: String
    private let state = ThreadHandoff(State())
    /// When the writer last anchored, in uptime nanoseconds (writer thread only).
    private var lastAnchor: UInt64 = 0
    /// The longest a committed record waits for its anchor while the writer is busy: the window
    /// in which a crash can leave records that no checkpoint covers (docs/CONTRACT.md §7).
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

    /// Waits until every record queued so far is committed, its batch finished and anchored.
    public func sync() {
        state.update { $0.syncing += 1 }
        state.wait(until: \State.isDrained) { $0.syncing -= 1 }
    }

    /// Commits what is queued and stops the writer; later records are refused.
    public func stop() {
        state.update { $0.stopping = true }
        state.wait(until: { !$0.writerRunning }) { _ in }
    }

    private func writeLoop() {
        while true {
            // Idle, the writer anchors what is unanchored once its cadence allows, then exits
            // after a second (and is restarted by the next record), so a ledger nobody uses holds
            // no thread.
            let step = state.wait(until: { !$0.queue.isEmpty || $0.stopping || ($0.unanchored != nil && $0.syncing > 0) },
                                  deadline: nextWake()) { state -> Step in
                if !state.queue.isEmpty {
                    let batch = state.queue
                    state.queue.removeAll(keepingCapacity: true)
                    state.inCommit = batch.count
                    return .commit(batch, state.commit, state.anchor)
                }
                if let record = state.unanchored {
                    state.finishing = true
                    state.unanchored = nil
                    return .anchor(record, state.anchor)
                }
                state.writerRunning = false
                return .exit
            }
            switch step {
            case .exit:
                return
            case .anchor(let record, let anchor):
                write(anchor, record)
                state.update { $0.finishing = false }
            case .commit(let batch, let commit, let anchor):
                let results = commit?(batch) ?? batch.map { _ in .failure(LedgerError(.unavailable, "the ledger is not configured")) }
                state.update { state in
                    state.inCommit = 0
                    state.finishing = true
                }
                for (entry, result) in zip(batch, results) { entry.completion(result) }
                let last = results.reversed().lazy.compactMap { try? $0.get() }.first
                let anchored = last != nil && DispatchTime.now().uptimeNanoseconds &- lastAnchor >= Self.anchorInterval
                if anchored, let last { write(anchor, last) }
                state.update { state in
                    state.finishing = false
                    if anchored { state.unanchored = nil } else if let last { state.unanchored = last }
                }
            }
        }
    }

    private func write(_ anchor: @Sendable (UsageRecord) -> Void, _ record: UsageRecord) {
        lastAnchor = DispatchTime.now().uptimeNanoseconds
        anchor(record)
    }

    /// When an idle writer wakes: when its cadence allows the pending anchor, or in a second to
    /// exit.
    private func nextWake() -> Date {
        let pending = state.read { $0.unanchored != nil }
        guard pending else { return Date().addingTimeInterval(1) }
        let elapsed = DispatchTime.now().uptimeNanoseconds &- lastAnchor
        let remaining = elapsed >= Self.anchorInterval ? 0 : Self.anchorInterval - elapsed
        return Date().addingTimeInterval(Double(remaining) / 1e9)
    }
}

/// Carries the owner into the writer thread; it is only kept alive there, never used.
private struct Unchecked: @unchecked Sendable {
    let value: AnyObject?
    init(_ value: AnyObject?) { self.value = value }
}
