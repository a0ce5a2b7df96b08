import Foundation
import NIOCore

/// How the JSON-lines server runs. Every field has a documented default.
public struct ServerConfiguration: Sendable {
    /// Address to listen on (default 127.0.0.1).
    public var host: String
    /// Port; 0 picks a free one (tests), the server reports the real port.
    public var port: Int
    /// Event-loop threads for socket I/O (JSON framing is light; SQLite runs on the workers).
    public var ioThreads: Int
    /// Sandbox workers: queries and ledger writes run here, never on an event loop (default: cores).
    public var workers: Int
    /// Threads that decode request lines longer than `inlineDecodeBytes`, off the event loop.
    public var decodeThreads: Int
    /// Lines up to this many bytes are decoded on the event loop (a few microseconds each).
    public var inlineDecodeBytes: Int
    /// Open connections beyond this are refused with `unavailable`.
    public var maxConnections: Int
    /// Open connections from one address beyond this are refused too, so one client cannot take
    /// every connection slot.
    public var maxConnectionsPerAddress: Int
    /// Connections that have not authenticated: at most this many from one address (more are
    /// refused) and in total (the oldest is closed to admit a new one), so they never lock out
    /// clients that do log in.
    public var maxUnauthenticatedPerAddress: Int
    public var maxUnauthenticatedConnections: Int
    /// A connection that has not authenticated within this time is closed.
    public var loginTimeout: TimeAmount
    /// Queries one consumer may have running at once, over all its connections.
    public var maxInFlightPerConsumer: Int
    /// Longest request line (default 1 MiB); longer ones get `request_too_large`.
    public var maxLineBytes: Int
    /// Requests read ahead on one connection before reading pauses (and at most `maxLineBytes`
    /// of them, so a connection buffers at most about two lines).
    public var maxPendingRequests: Int
    /// A connection that sends nothing for this long is closed.
    public var idleTimeout: TimeAmount
    /// Response bytes written but not yet taken by the kernel, over all connections and for one
    /// consumer: past these, new queries are refused (`unavailable`, `quota_exceeded`) until
    /// clients read, so clients that do not read cannot make the server hold unbounded memory.
    public var maxUnsentBytes: Int
    public var maxUnsentBytesPerConsumer: Int
    /// A connection that does not read its responses for this long is closed.
    public var unwritableTimeout: TimeAmount
    /// Failed authentications from one address (and against one consumer name) slow the next
    /// attempts, up to this delay. A success does not reset the address's count.
    public var maxAuthDelay: TimeAmount
    /// Failures are forgotten this long after the last one (so a typo does not slow a user forever).
    public var authFailureMemory: TimeAmount
    /// Ledger records of failed authentications: within each interval at most `perAddress` from one
    /// address and `total` from all addresses are recorded one by one; the rest are counted and
    /// written as one summary record per address (at most `trackedAddresses` of them, the rest in
    /// one more) when the interval has passed. So unauthenticated clients add at most
    /// `total + trackedAddresses + 1` records per interval, whatever they send.
    public var authRecordInterval: TimeAmount
    public var authRecordsPerAddress: Int
    public var authRecordsTotal: Int
    public var authRecordTrackedAddresses: Int

    public init(
        host: String = "127.0.0.1", port: Int = 7878, ioThreads: Int = 1,
        workers: Int = ProcessInfo.processInfo.activeProcessorCount, decodeThreads: Int = 1, inlineDecodeBytes: Int = 4096,
        maxConnections: Int = 1024,
        maxConnectionsPerAddress: Int = 256, maxUnauthenticatedPerAddress: Int = 32, maxUnauthenticatedConnections: Int = 256,
        loginTimeout: TimeAmount = .seconds(10),
        maxInFlightPerConsumer: Int = 8, maxLineBytes: Int = 1 << 20, maxPendingRequests: Int = 64,
        maxUnsentBytes: Int = 256 << 20, maxUnsentBytesPerConsumer: Int = 64 << 20, idleTimeout: TimeAmount = .seconds(300), unwritableTimeout: TimeAmount = .seconds(30),
        maxAuthDelay: TimeAmount = .seconds(5), authFailureMemory: TimeAmount = .minutes(15),
        authRecordInterval: TimeAmount = .seconds(60), authRecordsPerAddress: Int = 10, authRecordsTotal: Int = 100,
        authRecordTrackedAddresses: Int = 256
    ) {
        self.host = host
        self.port = port
        self.ioThreads = ioThreads
        self.workers = workers
        self.decodeThreads = decodeThreads
        self.inlineDecodeBytes = inlineDecodeBytes
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.maxUnauthenticatedPerAddress = maxUnauthenticatedPerAddress
        self.maxUnauthenticatedConnections = maxUnauthenticatedConnections
        self.loginTimeout = loginTimeout
        self.maxInFlightPerConsumer = maxInFlightPerConsumer
        self.maxLineBytes = maxLineBytes
        self.maxPendingRequests = maxPendingRequests
        self.idleTimeout = idleTimeout
        self.maxUnsentBytes = maxUnsentBytes
        self.maxUnsentBytesPerConsumer = maxUnsentBytesPerConsumer
        self.unwritableTimeout = unwritableTimeout
        self.maxAuthDelay = maxAuthDelay
        self.authFailureMemory = authFailureMemory
        self.authRecordInterval = authRecordInterval
        self.authRecordsPerAddress = authRecordsPerAddress
        self.authRecordsTotal = authRecordsTotal
        self.authRecordTrackedAddresses = authRecordTrackedAddresses
    }
}
