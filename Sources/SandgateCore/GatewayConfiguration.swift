import Foundation
import SandgateLedger

/// How a gateway is set up. Every field has a documented default.
public struct GatewayConfiguration: Sendable {
    /// Directory of `<dataset>.yaml` files and `consumers.yaml`.
    public var policiesDirectory: String
    /// Directory for snapshots, dataset keys and the usage ledger (created when missing).
    public var stateDirectory: String
    /// Idle sandbox connections kept per dataset; defaults to the number of cores.
    public var poolSize: Int
    /// Process-wide SQLite heap limit in bytes; allocations beyond fail the query, not the process.
    public var sqliteHeapLimitBytes: Int64
    /// The clock, in microseconds since the Unix epoch (UTC); injected so tests control "today".
    public var now: @Sendable () -> Int64
    /// Opens the usage ledger; nil: `Ledger`, the SQLite file `usage.sqlite` in the state directory.
    public var ledger: (@Sendable () throws(LedgerError) -> any LedgerStore)?

    public init(
        policiesDirectory: String = "Policies",
        stateDirectory: String = "var",
        poolSize: Int = ProcessInfo.processInfo.activeProcessorCount,
        sqliteHeapLimitBytes: Int64 = 4 << 30,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1_000_000) },
        ledger: (@Sendable () throws(LedgerError) -> any LedgerStore)? = nil
    ) {
        self.ledger = ledger
        self.policiesDirectory = policiesDirectory
        self.stateDirectory = stateDirectory
        self.poolSize = poolSize
        self.sqliteHeapLimitBytes = sqliteHeapLimitBytes
        self.now = now
    }
}
