import Foundation

/// Polls the policies directory and the published sources, and reloads the gateway when anything
/// changed. Polling (default every 500 ms) needs no platform file-event API and also notices a
/// data holder replacing a source file.
///
/// `@unchecked Sendable`: the timer is created once and only cancelled afterwards, which
/// Dispatch allows from any thread; its handler runs on the watcher's own serial queue.
public final class PolicyWatcher: @unchecked Sendable {
    private let timer: any DispatchSourceTimer
    private let queue = DispatchQueue(label: "sandgate.policy-watcher")

    /// Starts watching; call `stop()` to end.
    public init(gateway: Gateway, interval: Duration = .milliseconds(500), onReload: @escaping @Sendable ([String]) -> Void = { _ in }) {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        self.timer = timer
        let fingerprint = LockedString(gateway.policyFingerprint())
        let milliseconds = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        timer.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .milliseconds(milliseconds))
        timer.setEventHandler {
            let current = gateway.policyFingerprint()
            guard current != fingerprint.value else { return }
            let changes = gateway.reload()
            // Take the fingerprint after the reload, which may have added or removed sources.
            fingerprint.value = gateway.policyFingerprint()
            onReload(changes)
        }
        timer.resume()
    }

    public func stop() {
        timer.cancel()
    }
}

/// A string shared between the watcher's queue and its creator.
final class LockedString: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String

    init(_ value: String) { stored = value }

    /// `@unchecked Sendable`: every access goes through `lock`.
    var value: String {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
