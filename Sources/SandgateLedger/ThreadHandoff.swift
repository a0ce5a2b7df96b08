import Foundation

/// The one blocking handoff between threads (docs/ARCHITECTURE.md, "Threads and state"): a value
/// behind a condition variable that one thread changes and another sleeps on until a predicate
/// holds. It serves the two places where a thread must wait for another thread's work: the
/// ledger writer waiting for records and callers waiting for the writer (`GroupCommit`), and
/// synchronous code waiting for a commit (`LedgerStore.append`). Shared state that is only
/// guarded, never waited for, is a `Mutex`; everything else is NIO or Swift concurrency.
///
/// Every change wakes every waiter, and each waiter checks its own predicate under the lock, so
/// a wake-up is never lost and no waiter acts on a value another thread is still changing.
///
/// `@unchecked Sendable`: `value` is read and written only while `condition` is locked.
public final class ThreadHandoff<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    /// Changes the value under the lock, then wakes every waiter.
    @discardableResult
    public func update<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        return try body(&value)
    }

    /// Reads the value under the lock without waiting.
    public func read<Result>(_ body: (Value) throws -> Result) rethrows -> Result {
        condition.lock()
        defer { condition.unlock() }
        return try body(value)
    }

    /// Blocks the calling thread until `ready` holds (or `deadline` passed), then runs `body`
    /// under the same lock and wakes every waiter. Never call it on an event loop or in a task.
    @discardableResult
    public func wait<Result>(
        until ready: (Value) -> Bool, deadline: Date? = nil, then body: (inout Value) throws -> Result
    ) rethrows -> Result {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        if let deadline {
            while !ready(value), condition.wait(until: deadline) {}
        } else {
            while !ready(value) { condition.wait() }
        }
        return try body(&value)
    }
}
