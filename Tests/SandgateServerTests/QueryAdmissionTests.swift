import Dispatch
import Logging
import NIOCore
import NIOPosix
import SandgateCore
import SandgateLedger
@testable import SandgateServer
import SandgateTestSupport
import Synchronization
import Testing

/// Issue 18 item 1: the one admission path every front end uses, tested without sockets.
@Suite struct QueryAdmissionTests {
    /// An admission over a real gateway and worker pool, with one query in flight per consumer.
    final class Subject {
        let workspace: TestWorkspace
        let gateway: Gateway
        let workers: NIOThreadPool
        let state: ServerState
        let admission: QueryAdmission
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

        init() throws {
            workspace = try TestWorkspace()
            gateway = try workspace.gateway()
            workers = NIOThreadPool(numberOfThreads: 2)
            workers.start()
            state = ServerState(configuration: ServerConfiguration(maxInFlightPerConsumer: 1, maxUnsentBytesPerConsumer: 1_000))
            let services = ServerServices(gateway: gateway, workers: workers, decoders: workers, state: state, logger: Logger(label: "test"))
            admission = QueryAdmission(services: services)
        }

        var loop: any EventLoop { group.next() }

        func request(_ sql: String = "SELECT city FROM customers LIMIT 2") -> QueryRequest {
            QueryRequest(consumer: "analyst-a", dataset: "retail", sql: sql)
        }

        func records() throws -> [UsageRecord] {
            var records: [UsageRecord] = []
            try gateway.ledger.records { records.append($0); return true }
            return records
        }

        func close() async throws {
            try await workers.shutdownGracefully()
            try await group.shutdownGracefully()
        }
    }

    /// A unit of work that waits on its worker until the test lets it answer.
    final class HeldWork: Sendable {
        private let done = Mutex<(@Sendable (String, String) -> Void)?>(nil)
        private let started = DispatchSemaphore(value: 0)

        func work(_ finish: @escaping @Sendable (String, String) -> Void) {
            done.withLock { $0 = finish }
            started.signal()
        }

        /// Waits until the work runs (a hang guard, not a threshold).
        func waitUntilRunning() -> Bool { started.wait(timeout: .now() + 60) == .success }

        func finish() { done.withLock { $0 }?("held", "ok") }
    }

    @Test("past the in-flight cap a query is refused as overloaded, recorded; the cap frees when the first ends")
    func overloadedIsRecorded() async throws {
        let subject = try Subject()
        let held = HeldWork()
        let first = subject.admission.admit(subject.request(), on: subject.loop, refused: { _ in "refused" }) { held.work($0) }
        #expect(held.waitUntilRunning())
        #expect(subject.state.totalInFlight == 1)

        let second = try await subject.admission.query(subject.request(), on: subject.loop) { $0 }.get()
        guard case .answered(let refusal) = second else {
            Issue.record("an overloaded query is answered with its recorded refusal")
            return
        }
        #expect(refusal.error?.code == .overloaded)
        #expect(refusal.usage.seq > 0, "the refusal has a record")
        #expect(try subject.records().map(\.errorCode) == ["overloaded"])

        held.finish()
        guard case .answered(let line) = try await first.get() else {
            Issue.record("the held query is answered")
            return
        }
        #expect(line == "held")
        #expect(subject.state.totalInFlight == 0)

        let third = try await subject.admission.query(subject.request(), on: subject.loop) { $0 }.get()
        guard case .answered(let response) = third else {
            Issue.record("a query after the cap freed runs")
            return
        }
        #expect(response.result?.rowCount == 2)
        #expect(response.usage.seq == 2)
        #expect(try subject.records().map(\.status) == [.refused, .ok])
        try await subject.close()
    }

    @Test("a consumer that does not read its answers is refused (recorded) until it reads")
    func unreadAnswers() async throws {
        let subject = try Subject()
        subject.state.unsent(2_000, consumer: "analyst-a")
        guard case .answered(let refusal) = try await subject.admission.query(subject.request(), on: subject.loop, encode: { $0 }).get() else {
            Issue.record("refused with a recorded answer")
            return
        }
        #expect(refusal.error?.code == .overloaded)
        #expect(subject.state.totalInFlight == 0)
        subject.state.sent(2_000, consumer: "analyst-a")
        guard case .answered(let response) = try await subject.admission.query(subject.request(), on: subject.loop, encode: { $0 }).get() else {
            Issue.record("runs once the answers are read")
            return
        }
        #expect(response.isOK)
        #expect(try subject.records().map(\.errorCode) == ["overloaded", ""])
        try await subject.close()
    }

    @Test("once the workers stop, a query is answered unavailable, unrecorded, and nothing stays in flight")
    func shutdown() async throws {
        let subject = try Subject()
        try await subject.workers.shutdownGracefully()
        let answer = try await subject.admission.query(subject.request(), on: subject.loop) { $0 }.get()
        guard case .unavailable(let error) = answer else {
            Issue.record("a query after shutdown is unavailable")
            return
        }
        #expect(error.code == .unavailable)
        #expect(subject.state.totalInFlight == 0)
        #expect(try subject.records().isEmpty)
        try await subject.group.shutdownGracefully()
    }
}
