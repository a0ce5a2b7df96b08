import Foundation
import SandgateLedger
import SandgatePolicy
import ServiceLifecycle
import Synchronization

/// Polls the policies directory and the published sources, and reloads the gateway when anything
/// changed and then stayed unchanged for a settle interval. Polling (default every 250 ms) needs
/// no platform file-event API and also notices a data holder replacing a source file.
///
/// The settle interval (default 1 s) keeps the watcher from loading a file an editor is still
/// rewriting in place. When every policy file ends with the closing `...` line, the change is
/// reloaded at once (so `sandgate consumer grant` takes effect within one poll): a file caught
/// half-written does not end with that line, and the gateway never puts such a version in force
/// over a closed one. The reload itself then keeps every file that does not parse or validate
/// at its previous version (and the loader refuses empty values, so a prefix of a valid file
/// cannot load with less protection). Writing a new version to a temporary file and renaming it
/// over the old one avoids half-written files altogether (docs/operator-guide.md).
///
/// A `Service` (swift-service-lifecycle): `run` polls on a thread of its own (`ServiceThread`: a
/// reload blocks while the new version loads) until graceful shutdown or cancellation, so the
/// serving command's `ServiceGroup` stops it in order (docs/ARCHITECTURE.md).
public final class PolicyWatcher: Service, Sendable {
    /// Between polls; nil: only `poll(at:)` polls.
    private let interval: Duration?
    /// What the watcher has seen; one poll at a time.
    private let poller: Mutex<Poller>

    /// What the watcher has seen and what it does on a poll.
    private struct Poller {
        let gateway: Gateway
        let settle: Duration
        let onReload: @Sendable ([String]) -> Void
        /// The fingerprint of what is loaded.
        var loaded: String
        /// A changed fingerprint waiting to settle, and since when it has been unchanged.
        var pending: (fingerprint: String, since: ContinuousClock.Instant)?

        init(gateway: Gateway, settle: Duration, onReload: @escaping @Sendable ([String]) -> Void) {
            self.gateway = gateway
            self.settle = settle
            self.onReload = onReload
            loaded = gateway.policyFingerprint()
        }

        mutating func poll(at now: ContinuousClock.Instant) {
            let current = gateway.policyFingerprint()
            guard current != loaded else {
                pending = nil
                return
            }
            if !PolicyWatcher.everyFileClosed(in: gateway.configuration.policiesDirectory) {
                guard let pending, pending.fingerprint == current else {
                    self.pending = (current, now)
                    return
                }
                guard now - pending.since >= settle else { return }
            }
            let changes = gateway.reload()
            // Take the fingerprint after the reload, which may have added or removed sources.
            loaded = gateway.policyFingerprint()
            pending = nil
            onReload(changes)
        }
    }

    /// A watcher that polls every `interval` while it runs (`run`, in a `ServiceGroup`).
    public convenience init(
        gateway: Gateway, interval: Duration = .milliseconds(250), settle: Duration = .seconds(1),
        onReload: @escaping @Sendable ([String]) -> Void = { _ in }
    ) {
        self.init(gateway: gateway, polling: interval, settle: settle, onReload: onReload)
    }

    /// With `polling` nil no timer runs: only `poll(at:)` polls, at instants the caller (a test)
    /// chooses, so the settle interval is tested without waiting for it.
    init(gateway: Gateway, polling interval: Duration?, settle: Duration, onReload: @escaping @Sendable ([String]) -> Void = { _ in }) {
        self.interval = interval
        poller = Mutex(Poller(gateway: gateway, settle: settle, onReload: onReload))
    }

    /// Polls every interval until graceful shutdown (or cancellation); a poll in progress then
    /// finishes first. Without an interval it only waits for the shutdown.
    public func run() async {
        guard let interval else {
            try? await gracefulShutdown()
            return
        }
        await ServiceThread.repeating(name: Self.threadName, every: interval) { [self] in poll(at: .now) }
    }

    /// Polls every interval from now until the ticker is stopped, outside a `ServiceGroup` (tests
    /// whose threads block the cooperative pool); nil without an interval.
    public func startPolling() -> ServiceThread.Ticker? {
        interval.map { ServiceThread.Ticker(name: Self.threadName, every: $0) { [self] in poll(at: .now) } }
    }

    private static let threadName = "sandgate-policy-watcher"

    /// One poll as if the time were `now`.
    func poll(at now: ContinuousClock.Instant) {
        poller.withLock { $0.poll(at: now) }
    }

    /// True when every `*.yaml` of `directory` ends with the closing `...` line.
    static func everyFileClosed(in directory: String) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.allSatisfy { name in
            guard let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(name)) else { return false }
            return PolicyLoader.isSealed(String(decoding: data, as: UTF8.self))
        }
    }
}
