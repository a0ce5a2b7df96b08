import Foundation
import SandgateCore
import SandgateSupport
import NIOCore
import Synchronization

/// Counters shared by all connections: connections open, queries in flight per consumer,
/// failed authentications per address, and the metrics of the `stats` op.
final class ServerState: Sendable {
    private struct Counters {
        var connections = 0
        var connectionsByAddress: [String: Int] = [:]
        /// Connections that have not authenticated yet, oldest first, and their count by address.
        var unauthenticated: [(id: ObjectIdentifier, channel: any Channel)] = []
        var unauthenticatedByAddress: [String: Int] = [:]
        var inFlight: [String: Int] = [:]
        var totalInFlight = 0
        /// Failures by address and by claimed consumer name (bounded, see `authFailed`).
        var authFailures: [String: (count: Int, last: UInt64)] = [:]
        var consumerAuthFailures: [String: (count: Int, last: UInt64)] = [:]
        var failureRecords = FailureRecordWindow()
        /// Response bytes handed to NIO and not yet written to a socket, in total and by consumer.
        var unsentBytes = 0
        var unsentByConsumer: [String: Int] = [:]
        var all = Figures()
        var byConsumer: [String: Figures] = [:]
        /// Shutdown waits for the queries in flight: resumed when the count reaches 0.
        var idleWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Set when shutdown begins waiting for the queries in flight: no query starts after it.
        var draining = false
        var nextWaiter = 0
    }

    /// The `stats` figures, server-wide and per consumer.
    private struct Figures {
        var requestsByOp: [String: Int] = [:]
        var outcomes: [String: Int] = [:]
        var latencyBuckets = [Int](repeating: 0, count: ServerState.latencyBoundsMs.count + 1)
        var latencySumMicros: Int64 = 0
        var queries = 0

        mutating func query(outcome: String, elapsedMicros: Int64) {
            outcomes[outcome, default: 0] += 1
            queries += 1
            latencySumMicros += elapsedMicros
            let ms = Double(elapsedMicros) / 1000
            let bucket = ServerState.latencyBoundsMs.firstIndex { ms <= $0 } ?? ServerState.latencyBoundsMs.count
            latencyBuckets[bucket] += 1
        }
    }

    /// Failed-authentication records admitted to the ledger in the current interval.
    private struct FailureRecordWindow {
        var start: UInt64 = 0
        var recorded = 0
        var byAddress: [String: (recorded: Int, suppressed: Int)] = [:]
        var otherSuppressed = 0

        /// Failures counted but not recorded one by one, as (source, count); resets the window.
        mutating func drain(now: UInt64) -> [(source: String, count: Int)] {
            var summaries = byAddress.filter { $0.value.suppressed > 0 }.map { (source: $0.key, count: $0.value.suppressed) }
                .sorted { $0.source < $1.source }
            if otherSuppressed > 0 { summaries.append((source: "other addresses", count: otherSuppressed)) }
            self = FailureRecordWindow(start: now)
            return summaries
        }
    }

    private let counters = Mutex(Counters())
    let configuration: ServerConfiguration

    /// Upper bounds of the latency histogram buckets, in milliseconds (the last bucket is +Inf).
    static let latencyBoundsMs: [Double] = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 10000]

    init(configuration: ServerConfiguration) {
        self.configuration = configuration
    }

    /// Admits a new connection, which counts as unauthenticated until `authenticated(_:)`.
    /// Unauthenticated connections have their own caps: per address (a new one beyond it is
    /// refused) and in total (the oldest unauthenticated connection is closed to make room), so
    /// idle connections that never log in can neither take every slot nor lock anyone out.
    func openConnection(address: String, channel: any Channel) -> Bool {
        let evicted = counters.withLock { state -> (any Channel)? in
            guard state.connections < configuration.maxConnections,
                  state.connectionsByAddress[address, default: 0] < configuration.maxConnectionsPerAddress,
                  state.unauthenticatedByAddress[address, default: 0] < configuration.maxUnauthenticatedPerAddress else { return nil }
            var evicted: (any Channel)?
            if state.unauthenticated.count >= configuration.maxUnauthenticatedConnections, !state.unauthenticated.isEmpty {
                evicted = state.unauthenticated.removeFirst().channel
            }
            state.connections += 1
            state.connectionsByAddress[address, default: 0] += 1
            state.unauthenticated.append((ObjectIdentifier(channel), channel))
            state.unauthenticatedByAddress[address, default: 0] += 1
            return evicted ?? channel
        }
        guard let evicted else { return false }
        // Closing is safe from any thread; its handler's `channelInactive` fixes the counts.
        if evicted !== channel { evicted.close(promise: nil) }
        return true
    }

    /// The connection authenticated: it no longer counts against the unauthenticated caps.
    func authenticated(_ channel: any Channel, address: String) {
        counters.withLock { state in Self.forgetUnauthenticated(&state, channel, address: address) }
    }

    func closeConnection(address: String, channel: any Channel) {
        counters.withLock { state in
            state.connections -= 1
            state.connectionsByAddress[address, default: 1] -= 1
            if state.connectionsByAddress[address] == 0 { state.connectionsByAddress[address] = nil }
            Self.forgetUnauthenticated(&state, channel, address: address)
        }
    }

    private static func forgetUnauthenticated(_ state: inout Counters, _ channel: any Channel, address: String) {
        guard let index = state.unauthenticated.firstIndex(where: { $0.id == ObjectIdentifier(channel) }) else { return }
        state.unauthenticated.remove(at: index)
        state.unauthenticatedByAddress[address, default: 1] -= 1
        if state.unauthenticatedByAddress[address] == 0 { state.unauthenticatedByAddress[address] = nil }
    }

    var connections: Int { counters.withLock { $0.connections } }
    var totalInFlight: Int { counters.withLock { $0.totalInFlight } }

    /// Whether a query may start now.
    enum QueryStart {
        case started
        /// The consumer has `maxInFlightPerConsumer` queries running.
        case overloaded
        /// The server is shutting down (`waitUntilIdle` began).
        case draining
    }

    /// Counts a query of `consumer` in flight, unless its cap is reached or shutdown began. One
    /// critical section with `waitUntilIdle`'s, so no query starts after the wait saw none running.
    func beginQuery(consumer: String) -> QueryStart {
        counters.withLock { state in
            guard !state.draining else { return .draining }
            guard state.inFlight[consumer, default: 0] < configuration.maxInFlightPerConsumer else { return .overloaded }
            state.inFlight[consumer, default: 0] += 1
            state.totalInFlight += 1
            return .started
        }
    }

    func endQuery(consumer: String, outcome: String, elapsedMicros: Int64) {
        let waiters = counters.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.inFlight[consumer, default: 1] -= 1
            if state.inFlight[consumer] == 0 { state.inFlight[consumer] = nil }
            state.totalInFlight -= 1
            state.all.query(outcome: outcome, elapsedMicros: elapsedMicros)
            state.byConsumer[consumer, default: Figures()].query(outcome: outcome, elapsedMicros: elapsedMicros)
            guard state.totalInFlight == 0 else { return [] }
            defer { state.idleWaiters.removeAll() }
            return Array(state.idleWaiters.values)
        }
        waiters.forEach { $0.resume() }
    }

    /// Returns when no query is in flight, or after `grace` on `eventLoop` (shutdown: no polling).
    /// From the call on no query starts: `beginQuery` answers `.draining`.
    func waitUntilIdle(grace: TimeAmount, on eventLoop: any EventLoop) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id = counters.withLock { state -> Int? in
                state.draining = true
                guard state.totalInFlight > 0 else { return nil }
                state.nextWaiter += 1
                state.idleWaiters[state.nextWaiter] = continuation
                return state.nextWaiter
            }
            guard let id else { return continuation.resume() }
            eventLoop.scheduleTask(in: grace) { [self] in
                counters.withLock { $0.idleWaiters.removeValue(forKey: id) }?.resume()
            }
        }
    }

    /// Counts a request by op, and for its consumer once authenticated (consumers are the
    /// declared ones, so the per-consumer table is bounded by consumers.yaml).
    func countRequest(op: String, consumer: String? = nil) {
        counters.withLock { state in
            state.all.requestsByOp[op, default: 0] += 1
            if let consumer { state.byConsumer[consumer, default: Figures()].requestsByOp[op, default: 0] += 1 }
        }
    }

    // MARK: Unsent bytes

    /// Counts a response of `bytes` as unsent until `sent` is called with the same figures.
    func unsent(_ bytes: Int, consumer: String?) {
        counters.withLock { state in
            state.unsentBytes += bytes
            if let consumer { state.unsentByConsumer[consumer, default: 0] += bytes }
        }
    }

    func sent(_ bytes: Int, consumer: String?) {
        counters.withLock { state in
            state.unsentBytes -= bytes
            if let consumer {
                state.unsentByConsumer[consumer, default: bytes] -= bytes
                if state.unsentByConsumer[consumer] == 0 { state.unsentByConsumer[consumer] = nil }
            }
        }
    }

    /// Why a new query must wait for clients to read, or nil when it may run.
    func unsentRefusal(consumer: String) -> GatewayError? {
        counters.withLock { state in
            if state.unsentBytes >= configuration.maxUnsentBytes {
                return GatewayError(.unavailable, "the server holds too many unsent response bytes", hint: "retry after reading your responses")
            }
            if state.unsentByConsumer[consumer, default: 0] >= configuration.maxUnsentBytesPerConsumer {
                return GatewayError(.overloaded, "\(consumer) has \(configuration.maxUnsentBytesPerConsumer) bytes of responses not yet read", hint: "read your responses before sending more queries")
            }
            return nil
        }
    }

    // MARK: Authentication

    /// How long to wait before answering an authentication from `address` for `consumer`: the
    /// larger of the two back-offs (100 ms doubling per recent failure, at most `maxAuthDelay`).
    func authDelay(address: String, consumer: String) -> TimeAmount {
        let now = DispatchTime.now().uptimeNanoseconds
        let memory = UInt64(max(0, configuration.authFailureMemory.nanoseconds))
        let failures = counters.withLock { state -> Int in
            func recent(_ entry: (count: Int, last: UInt64)?) -> Int {
                guard let entry, now &- entry.last < memory else { return 0 }
                return entry.count
            }
            return max(recent(state.authFailures[address]), recent(state.consumerAuthFailures[consumer]))
        }
        guard failures > 0 else { return .zero }
        let milliseconds = min(Int64(configuration.maxAuthDelay.nanoseconds / 1_000_000), 100 << min(failures - 1, 10))
        return .milliseconds(milliseconds)
    }

    /// Counts a failure against the address and against the consumer name (only a valid name:
    /// arbitrary bytes must not grow the table). Both tables keep at most 10,000 entries.
    func authFailed(address: String, consumer: String?) {
        let now = DispatchTime.now().uptimeNanoseconds
        counters.withLock { state in
            Self.count(&state.authFailures, address, now: now)
            if let consumer { Self.count(&state.consumerAuthFailures, consumer, now: now) }
        }
    }

    private static func count(_ table: inout [String: (count: Int, last: UInt64)], _ key: String, now: UInt64) {
        if table[key] == nil, table.count >= 10_000, let oldest = table.min(by: { $0.value.last < $1.value.last })?.key {
            table[oldest] = nil
        }
        table[key] = ((table[key]?.count ?? 0) + 1, now)
    }

    /// A success clears the consumer's own count, never the address's: alternating guesses with a
    /// valid login from one address must not reset its back-off.
    func authSucceeded(consumer: String) { counters.withLock { _ = $0.consumerAuthFailures.removeValue(forKey: consumer) } }

    /// Whether this failure from `address` gets its own ledger record, and the summaries of the
    /// previous interval's unrecorded failures, due now (see `ServerConfiguration.authRecordInterval`).
    func admitFailureRecord(address: String) -> (record: Bool, summaries: [(source: String, count: Int)]) {
        let now = DispatchTime.now().uptimeNanoseconds
        let interval = UInt64(max(1, configuration.authRecordInterval.nanoseconds))
        return counters.withLock { state in
            var summaries: [(source: String, count: Int)] = []
            if now &- state.failureRecords.start >= interval { summaries = state.failureRecords.drain(now: now) }
            var window = state.failureRecords
            defer { state.failureRecords = window }
            guard var entry = window.byAddress[address] ?? (window.byAddress.count < configuration.authRecordTrackedAddresses ? (0, 0) : nil) else {
                window.otherSuppressed += 1
                return (false, summaries)
            }
            defer { window.byAddress[address] = entry }
            if entry.recorded < configuration.authRecordsPerAddress, window.recorded < configuration.authRecordsTotal {
                entry.recorded += 1
                window.recorded += 1
                return (true, summaries)
            }
            entry.suppressed += 1
            return (false, summaries)
        }
    }

    /// The unrecorded failures of the current interval (written on shutdown).
    func drainFailureSummaries() -> [(source: String, count: Int)] {
        counters.withLock { $0.failureRecords.drain(now: DispatchTime.now().uptimeNanoseconds) }
    }

    // MARK: Stats

    /// The `stats` op. An operator sees the server: connections, in flight, ledger lag, requests
    /// by op, queries by outcome and latency; any other consumer sees the same figures for its
    /// own requests only (never other consumers' activity or the server's load).
    func writeStats(consumer: String, isOperator: Bool, ledgerPending: Int, to json: inout JSONWriter) {
        let (state, figures) = counters.withLock { state in
            (state, isOperator ? state.all : state.byConsumer[consumer] ?? Figures())
        }
        func counts(_ name: String, _ dictionary: [String: Int], to json: inout JSONWriter) {
            json.object(name) { json in
                for (key, value) in dictionary.sorted(by: { $0.key < $1.key }) { json.field(key, value) }
            }
        }
        if isOperator {
            json.field("scope", "server")
            json.field("connections", state.connections)
            json.field("in_flight", state.totalInFlight)
            json.field("ledger_pending", ledgerPending)
            json.field("unsent_bytes", state.unsentBytes)
        } else {
            json.field("scope", "consumer")
            json.field("consumer", consumer)
            json.field("in_flight", state.inFlight[consumer] ?? 0)
        }
        counts("requests", figures.requestsByOp, to: &json)
        json.object("queries") { json in
            json.field("total", figures.queries)
            counts("by_outcome", figures.outcomes, to: &json)
            json.array("latency_ms_le") { json in
                var cumulative = 0
                for (index, count) in figures.latencyBuckets.enumerated() {
                    cumulative += count
                    json.array { json in
                        if index < Self.latencyBoundsMs.count { json.raw("\(Self.latencyBoundsMs[index])") } else { json.string("+Inf") }
                        json.number(cumulative)
                    }
                }
            }
            json.field("latency_sum_us", figures.latencySumMicros)
        }
    }
}
