import NIOCore

/// How one connection is paced on its event loop, the same for both front ends: at most
/// `burstLimit` requests answered per read of the socket (a client pipelining thousands of cheap
/// requests must not hold the loop that serves everyone else — found by our red team: 300,000
/// pipelined pings kept other clients waiting 2–11 s), and a client that stops reading its
/// responses is paused, then disconnected after the unwritable timeout, so its responses never
/// pile up in memory. Used only on the connection's event loop.
final class ConnectionPacing {
    static let burstLimit = 16
    /// Longer than many connections' bursts take together (NIO runs every due timer before it
    /// polls again): a client pipelining cheap requests gets about 1,600 of them answered a second
    /// once it is past one burst per read; one request at a time is never paused.
    static let burstPause = TimeAmount.milliseconds(10)

    private var burst = 0
    private var resumeScheduled = false
    private var unwritableSince: NIODeadline?

    /// One read of the socket is done: the next one may answer another burst at once.
    func readComplete() { burst = 0 }

    /// True when one more request may be answered in this turn; otherwise `resume` runs once,
    /// after `burstPause`. A timer a little in the future, not `execute` or a due timer: NIO runs
    /// every task that is ready (including ones queued by tasks) before it polls sockets again, so
    /// a task that re-queues itself at once would still starve every other connection.
    func admit(context: ChannelHandlerContext, resume: @escaping () -> Void) -> Bool {
        guard burst >= Self.burstLimit else {
            burst += 1
            return true
        }
        guard !resumeScheduled else { return false }
        resumeScheduled = true
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.burstPause) { [self] in
            resumeScheduled = false
            burst = 0
            resume()
        }
        return false
    }

    /// Writable again: `resume`. No longer writable: the connection is closed if it is still not
    /// reading its responses after `timeout`.
    func writabilityChanged(context: ChannelHandlerContext, timeout: TimeAmount, resume: () -> Void) {
        if context.channel.isWritable {
            unwritableSince = nil
            resume()
        } else {
            let started = NIODeadline.now()
            unwritableSince = started
            context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
                if let self, self.unwritableSince == started { context.close(promise: nil) }
            }
        }
    }
}
