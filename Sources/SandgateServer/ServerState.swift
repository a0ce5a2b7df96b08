import Foundation
import SandgateLedger
import NIOCore
import Synchronization

/// Counters shared by all connections: connections open, queries in flight per consumer,
/// failed authentications per address, and the metrics of the `stats` op.
final class ServerState: Sendable {
    private struct Counters {
        var connections = 0
        var connectionsByAddress: [String: Int] = [:]
        var inFlight: [String: Int] = [:]
        var totalInFlight = 0
        var authFailures: [String: (count: Int, last: UInt64)] = [:]
        var requestsByOp: [String: Int] = [:]
        var outcomes: [String: Int] = [:]
        var latencyBuckets = [Int](repeating: 0, count: ServerState.latencyBoundsMs.count + 1)
        var latencySumMicros: Int64 = 0
        var queries = 0
    }

    private let counters = Mutex(Counters())
    let configuration: ServerConfiguration

    /// Upper bounds of the latency histogram buckets, in milliseconds (the last bucket is +Inf).
    static let latencyBoundsMs: [Double] = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 10000]

    init(configuration: ServerConfiguration) {
        self.configuration = configuration
    }

    func openConnection(address: String) -> Bool {
        counters.withLock { state in
            guard state.connections < configuration.maxConnections,
                  state.connectionsByAddress[address, default: 0] < configuration.maxConnectionsPerAddress else { return false }
            state.connections += 1
            state.connectionsByAddress[address, default: 0] += 1
            return true
        }
    }

    func closeConnection(address: String) {
        counters.withLock { state in
            state.connections -= 1
            state.connectionsByAddress[address, default: 1] -= 1
            if state.connectionsByAddress[address] == 0 { state.connectionsByAddress[address] = nil }
        }
    }

    var connections: Int { counters.withLock { $0.connections } }
    var totalInFlight: Int { counters.withLock { $0.totalInFlight } }

    func beginQuery(consumer: String) -> Bool {
        counters.withLock { state in
            guard state.inFlight[consumer, default: 0] < configuration.maxInFlightPerConsumer else { return false }
            state.inFlight[consumer, default: 0] += 1
            state.totalInFlight += 1
            return true
        }
    }

    func endQuery(consumer: String, outcome: String, elapsedMicros: Int64) {
        counters.withLock { state in
            state.inFlight[consumer, default: 1] -= 1
            if state.inFlight[consumer] == 0 { state.inFlight[consumer] = nil }
            state.totalInFlight -= 1
            state.outcomes[outcome, default: 0] += 1
            state.queries += 1
            state.latencySumMicros += elapsedMicros
            let ms = Double(elapsedMicros) / 1000
            let bucket = Self.latencyBoundsMs.firstIndex { ms <= $0 } ?? Self.latencyBoundsMs.count
            state.latencyBuckets[bucket] += 1
        }
    }

    func countRequest(op: String) { counters.withLock { $0.requestsByOp[op, default: 0] += 1 } }

    /// How long to wait before answering an authentication from `address`.
    func authDelay(address: String) -> TimeAmount {
        let failures = counters.withLock { $0.authFailures[address]?.count ?? 0 }
        guard failures > 0 else { return .zero }
        let milliseconds = min(Int64(configuration.maxAuthDelay.nanoseconds / 1_000_000), 100 << min(failures - 1, 10))
        return .milliseconds(milliseconds)
    }

    func authFailed(address: String) {
        counters.withLock { state in
            // Bounded: forget the oldest addresses beyond 10,000.
            if state.authFailures.count > 10_000, let oldest = state.authFailures.min(by: { $0.value.last < $1.value.last })?.key {
                state.authFailures[oldest] = nil
            }
            let previous = state.authFailures[address]?.count ?? 0
            state.authFailures[address] = (previous + 1, DispatchTime.now().uptimeNanoseconds)
        }
    }

    func authSucceeded(address: String) { counters.withLock { $0.authFailures[address] = nil } }

    /// The `stats` op: counts by op and outcome, the latency histogram, in-flight, ledger lag.
    func statsJSON(ledgerPending: Int) -> String {
        counters.withLock { state in
            func object(_ dictionary: [String: Int]) -> String {
                "{" + dictionary.sorted { $0.key < $1.key }.map { "\(JSONText.quoted($0.key)):\($0.value)" }.joined(separator: ",") + "}"
            }
            var buckets: [String] = []
            var cumulative = 0
            for (index, count) in state.latencyBuckets.enumerated() {
                cumulative += count
                let bound = index < Self.latencyBoundsMs.count ? "\(Self.latencyBoundsMs[index])" : "\"+Inf\""
                buckets.append("[\(bound),\(cumulative)]")
            }
            return "\"connections\":\(state.connections),\"in_flight\":\(state.totalInFlight),\"ledger_pending\":\(ledgerPending)"
                + ",\"requests\":\(object(state.requestsByOp)),\"queries\":{\"total\":\(state.queries),\"by_outcome\":\(object(state.outcomes))"
                + ",\"latency_ms_le\":[\(buckets.joined(separator: ","))],\"latency_sum_us\":\(state.latencySumMicros)}"
        }
    }
}
