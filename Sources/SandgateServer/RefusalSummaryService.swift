import SandgateCore
import SandgateLedger
import ServiceLifecycle

/// Writes the summary records of refusals counted but not recorded one by one (past 120 a
/// minute): every `interval` for the minutes that are over, so they reach the ledger within
/// seconds rather than at the consumer's next refusal in a later minute, and all of them at
/// graceful shutdown. A `Service` of the serving command's `ServiceGroup`, shut down after the
/// servers (no refusal comes after it) and before the ledger (which it appends to). Appends wait
/// for their commit, so they run on a thread of its own (`ServiceThread`), never on an event
/// loop or the cooperative pool.
public struct RefusalSummaryService: Service {
    private let gateway: Gateway
    private let interval: Duration

    public init(gateway: Gateway, interval: Duration = .seconds(5)) {
        self.gateway = gateway
        self.interval = interval
    }

    public func run() async {
        let gateway = self.gateway
        await ServiceThread.repeating(name: Self.threadName, every: interval) {
            gateway.writeDueRefusalSummaries()
        } then: {
            // The rest, whatever minute it is.
            gateway.flushRefusalSummaries()
        }
    }

    /// Writes the due summaries every interval from now until the ticker is stopped, then the
    /// rest, outside a `ServiceGroup` (tests whose threads block the cooperative pool).
    public func start() -> ServiceThread.Ticker {
        let gateway = self.gateway
        return ServiceThread.Ticker(name: Self.threadName, every: interval) {
            gateway.writeDueRefusalSummaries()
        } then: {
            gateway.flushRefusalSummaries()
        }
    }

    private static let threadName = "sandgate-refusal-summaries"
}
