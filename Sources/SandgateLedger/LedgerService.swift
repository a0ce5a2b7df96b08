import ServiceLifecycle

/// A ledger store in the serving command's `ServiceGroup`: it runs until graceful shutdown (or
/// cancellation), then drains and anchors the store and closes it (`LedgerStore.close`). Listed
/// first in the group, so that it is shut down last, after every service that appends.
public struct LedgerService: Service {
    public let store: any LedgerStore

    public init(store: any LedgerStore) { self.store = store }

    public func run() async {
        try? await gracefulShutdown()
        // The writer commits what is queued and the tail is anchored (docs/CONTRACT.md §7); the
        // wait for the last commit blocks a thread of its own, not the cooperative pool.
        let store = self.store
        await ServiceThread.run(name: "sandgate-ledger-close") { store.close() }
    }
}
