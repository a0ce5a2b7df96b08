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
/// Dispatch allows from any thread; its handler and `Progress` run only on the watcher's own
/// serial queue.
public final class PolicyWatcher: @unchecked Sendable {
    private let timer: any DispatchSourceTimer
    private let queue = DispatchQueue(label: "sandgate.policy-watcher")

    /// What the watcher has seen; touched only on `queue`.
    private final class Progress: @unchecked Sendable {
        /// The fingerprint of what is loaded.
        var loaded: String
        /// A changed fingerprint waiting to settle, and since when it has been unchanged.
        var pending: (fingerprint: String, since: ContinuousClock.Instant)?

        init(loaded: String) { self.loaded = loaded }
    }

    /// Starts watching; call `stop()` to end.
    public init(
        gateway: Gateway, interval: Duration = .milliseconds(250), settle: Duration = .seconds(1),
        onReload: @escaping @Sendable ([String]) -> Void = { _ in }
    ) {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        self.timer = timer
        let progress = Progress(loaded: gateway.policyFingerprint())
        let milliseconds = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        timer.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .milliseconds(milliseconds))
        timer.setEventHandler {
            let current = gateway.policyFingerprint()
            let now = ContinuousClock.now
            guard current != progress.loaded else {
                progress.pending = nil
                return
            }
            if !Self.everyFileClosed(in: gateway.configuration.policiesDirectory) {
                guard let pending = progress.pending, pending.fingerprint == current else {
                    progress.pending = (current, now)
                    return
                }
                guard now - pending.since >= settle else { return }
            }
            let changes = gateway.reload()
            // Take the fingerprint after the reload, which may have added or removed sources.
            progress.loaded = gateway.policyFingerprint()
            progress.pending = nil
            onReload(changes)
        }
        timer.resume()
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
        timer.cancel()
    }
}
