import Foundation
import ServiceLifecycle

/// Blocking work of a `Service` on a thread of its own, never on Swift concurrency's cooperative
/// pool: a reload, an fsync or a PostgreSQL round trip there would hold one of its few threads,
/// and a periodic task there would wait for a free one (tests that block their threads starved
/// it). The thread sleeps between ticks in `ThreadHandoff`, which graceful shutdown or
/// cancellation wakes at once.
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
        let stopped = ThreadHandoff(false)
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        await withTaskCancellationOrGracefulShutdownHandler {
            await run(name: name) {
                while !stopped.wait(until: { $0 }, deadline: Date().addingTimeInterval(seconds), then: { $0 }) { tick() }
                last()
            }
        } onCancelOrGracefulShutdown: {
            stopped.update { $0 = true }
        }
    }
}
