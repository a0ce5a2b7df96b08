import Foundation
import ServiceLifecycle

/// Blocking work of a `Service` on a thread of its own, never on Swift concurrency's cooperative
/// pool: a reload, an fsync or a PostgreSQL round trip there would hold one of its few threads,
/// and periodic work there would wait for a free one (tests that block their threads starved
/// it). The thread sleeps between ticks in `ThreadHandoff`, which `stop` wakes at once.
public enum ServiceThread {
    /// Runs `body` on a new thread named `name`; returns once it has.
    public static func run(name: String, _ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                body()
                finished.resume()
            }
            thread.name = name
            thread.start()
        }
    }

    /// Runs `tick` every `interval` on a new thread until the calling task is shut down
    /// gracefully or cancelled (a tick in progress finishes first), then `last` on that thread;
    /// returns once it has.
    public static func repeating(
        name: String, every interval: Duration, _ tick: @escaping @Sendable () -> Void,
        then last: @escaping @Sendable () -> Void = {}
    ) async {
        let ticker = Ticker(name: name, every: interval, tick, then: last)
        await withTaskCancellationOrGracefulShutdownHandler {
            await ticker.finished()
        } onCancelOrGracefulShutdown: {
            ticker.stop()
        }
    }

    /// A thread that runs `tick` every interval from its start until `stop`, then `last`.
    /// Started and stopped without a task, so it never waits for the cooperative pool.
    public final class Ticker: Sendable {
        private struct State {
            var stopping = false
            var finished = false
            var waiters: [CheckedContinuation<Void, Never>] = []
        }

        private let state = ThreadHandoff(State())

        /// Starts the thread; the first tick comes after one interval.
        public init(name: String, every interval: Duration, _ tick: @escaping @Sendable () -> Void, then last: @escaping @Sendable () -> Void = {}) {
            let state = self.state
            let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
            let thread = Thread {
                while !state.wait(until: \.stopping, deadline: Date().addingTimeInterval(seconds), then: { $0.stopping }) { tick() }
                last()
                let waiters = state.update { state in
                    state.finished = true
                    defer { state.waiters = [] }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume() }
            }
            thread.name = name
            thread.start()
        }

        /// Asks the thread to end after its tick in progress (and `last`); returns at once.
        public func stop() { state.update { $0.stopping = true } }

        /// Returns once the thread has ended.
        public func finished() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.update { state in
                    if !state.finished { state.waiters.append(continuation) }
                    return state.finished
                }
                if done { continuation.resume() }
            }
        }
    }
}
