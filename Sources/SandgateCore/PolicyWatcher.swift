import Foundation
import SandgatePolicy

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
/// `@unchecked Sendable`: the timer is created once and only cancelled afterwards, which
/// Dispatch allows from any thread; its handler and `Poller` run only on the watcher's own
/// serial queue.
public final class PolicyWatcher: @unchecked Sendable {
    private let timer: (any DispatchSourceTimer)?
    private let queue = DispatchQueue(label: "sandgate.policy-watcher")
    private let poller: Poller

    /// What the watcher has seen and what it does on a poll; touched only on `queue`.
    private final class Poller: @unchecked Sendable {
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

        func poll(at now: ContinuousClock.Instant) {
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

    /// Starts watching; call `stop()` to end.
    public convenience init(
        gateway: Gateway, interval: Duration = .milliseconds(250), settle: Duration = .seconds(1),
        onReload: @escaping @Sendable ([String]) -> Void = { _ in }
    ) {
        self.init(gateway: gateway, polling: interval, settle: settle, onReload: onReload)
    }

    /// With `polling` nil no timer runs: only `poll(at:)` polls, at instants the caller (a test)
    /// chooses, so the settle interval is tested without waiting for it.
    init(gateway: Gateway, polling interval: Duration?, settle: Duration, onReload: @escaping @Sendable ([String]) -> Void = { _ in }) {
        let poller = Poller(gateway: gateway, settle: settle, onReload: onReload)
        self.poller = poller
        guard let interval else {
            timer = nil
            return
        }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        self.timer = timer
        let milliseconds = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        timer.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .milliseconds(milliseconds))
        timer.setEventHandler { poller.poll(at: .now) }
        timer.resume()
    }

    /// One poll as if the time were `now`.
    func poll(at now: ContinuousClock.Instant) {
        queue.sync { poller.poll(at: now) }
    }

    /// True when every `*.yaml` of `directory` ends with the closing `...` line.
    static func everyFileClosed(in directory: String) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.allSatisfy { name in
            guard let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(name)) else { return false }
            return PolicyLoader.isSealed(String(decoding: data, as: UTF8.self))
        }
    }

    public func stop() {
        timer?.cancel()
    }
}
