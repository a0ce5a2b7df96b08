import Foundation
import NIOCore
import NIOPosix
import SandgateCore

/// The one way a front end's query-like request reaches the gateway (issue 18): the consumer's
/// in-flight cap, the bound on unsent response bytes, the overload refusal (recorded like any
/// authenticated request, on a worker — recording may wait for a commit, so never on an event
/// loop), the shutdown answer, submission to the workers and the end of the query in the
/// server's counters. JSON lines and PostgreSQL only decode requests and encode answers around
/// it; the answer of a query is a `QueryResponse`, which only the gateway constructs, after the
/// ledger committed its record.
struct QueryAdmission: Sendable {
    let gateway: Gateway
    let workers: NIOThreadPool
    let state: ServerState

    init(services: ServerServices) {
        gateway = services.gateway
        workers = services.workers
        state = services.state
    }

    /// What came of a request.
    enum Answer<Value: Sendable>: Sendable {
        /// The work's answer, or the recorded refusal of a request that could not start now
        /// (too many in flight, answers not read), as the front end encoded it.
        case answered(Value)
        /// The gateway is shutting down: nothing ran and nothing was recorded.
        case unavailable(GatewayError)
    }

    static let shuttingDown = GatewayError(.unavailable, "the gateway is shutting down")

    /// Runs `request` through the gateway; `encode` turns its response — committed to the
    /// ledger by then — into the front end's answer, off the event loop.
    func query<Value: Sendable>(_ request: QueryRequest, on eventLoop: any EventLoop,
                                encode: @escaping @Sendable (QueryResponse) -> Value) -> EventLoopFuture<Answer<Value>> {
        let gateway = self.gateway
        return admit(request, on: eventLoop, refused: encode) { done in
            gateway.run(request) { response in done(encode(response), response.error?.code.rawValue ?? "ok") }
        }
    }

    /// Runs `work` on a worker for `request`'s consumer once admitted. `work` hands its answer
    /// and its outcome for the counters (`ok` or an error code) to `done`, from any thread; a
    /// request refused before it starts is recorded and answered by `refused`.
    func admit<Value: Sendable>(
        _ request: QueryRequest, on eventLoop: any EventLoop, refused: @escaping @Sendable (QueryResponse) -> Value,
        work: @escaping @Sendable (_ done: @escaping @Sendable (Value, _ outcome: String) -> Void) -> Void
    ) -> EventLoopFuture<Answer<Value>> {
        let consumer = request.consumer
        let promise = eventLoop.makePromise(of: Answer<Value>.self)
        let gateway = self.gateway, state = self.state
        switch start(consumer: consumer) {
        case .started:
            break
        case .draining:
            // Shutdown is waiting for the queries in flight: this one never starts.
            promise.succeed(.unavailable(Self.shuttingDown))
            return promise.futureResult
        case .refused(let refusal):
            workers.submit { workerState in
                guard workerState == .active else { return promise.succeed(.unavailable(Self.shuttingDown)) }
                gateway.refuse(request, refusal) { promise.succeed(.answered(refused($0))) }
            }
            return promise.futureResult
        }
        let started = DispatchTime.now().uptimeNanoseconds
        workers.submit { workerState in
            guard workerState == .active else {
                state.endQuery(consumer: consumer, outcome: "unavailable", elapsedMicros: 0)
                return promise.succeed(.unavailable(Self.shuttingDown))
            }
            work { value, outcome in
                state.endQuery(consumer: consumer, outcome: outcome, elapsedMicros: Int64((DispatchTime.now().uptimeNanoseconds - started) / 1000))
                promise.succeed(.answered(value))
            }
        }
        return promise.futureResult
    }

    /// Whether the consumer's next request may start now (counted in flight when it may).
    private enum Start {
        case started
        /// Refused before it starts, with a recorded refusal.
        case refused(GatewayError)
        /// Shutdown began: answered `unavailable`, unrecorded.
        case draining
    }

    private func start(consumer: String) -> Start {
        if let unsent = state.unsentRefusal(consumer: consumer) { return .refused(unsent) }
        switch state.beginQuery(consumer: consumer) {
        case .started:
            return .started
        case .draining:
            return .draining
        case .overloaded:
            return .refused(GatewayError(.overloaded, "too many queries in flight for \(consumer) (limit \(state.configuration.maxInFlightPerConsumer))",
                                         hint: "wait for your answers before sending more queries"))
        }
    }
}
