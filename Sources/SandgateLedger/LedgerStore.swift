/// Where the usage records live: the seam between the gateway and the ledger's storage. `Ledger`
/// (one SQLite file per state directory) is the embedded implementation; a shared one for many
/// gateway nodes (PostgreSQL, the ledger issue) implements the same contract:
/// - `append` makes a record durable — with its `seq` and chain hashes filled in — before its
///   completion runs; a caller releases the result it meters only then;
/// - `usage` counts a consumer's queries and rows on a dataset for the quotas;
/// - `records` scans in `seq` order for exports, invoices and audits;
/// - `verify` checks the keyed chain and its anchor.
public protocol LedgerStore: AnyObject, Sendable {
    /// The node that writes this chain (in every checkpoint).
    var nodeID: String { get }
    /// Why the chain's anchor is broken, when it is (logged at start).
    var anchorFailure: String? { get }
    /// Records waiting for their commit (the `ledger lag` metric).
    var pendingCount: Int { get }

    /// Queues `record`; `completion` runs once it is durable (or its commit failed).
    func append(_ record: UsageRecord, completion: @escaping Ledger.Completion)
    /// Appends `record` durably and returns it as stored (blocks until committed).
    func append(_ record: UsageRecord) throws(LedgerError) -> UsageRecord
    /// Queries and rows `consumer` used on `dataset` since `since` (µs since the epoch).
    func usage(consumer: String, dataset: String, since: Int64) throws(LedgerError) -> (queries: Int64, rows: Int64)
    /// Calls `visit` for each record matching `filter`, in `seq` order, until it returns false.
    func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError)
    /// The first problem of the chain or its anchor, or nil when everything verifies.
    func verify() throws(LedgerError) -> LedgerProblem?
    /// Waits until every record queued so far is committed and anchored.
    func sync()
    /// Commits what is queued, anchors the tail and stops writing.
    func close()
}

/// Which records a scan visits: a half-open time range (`started_at`, µs) and exact names.
public struct RecordFilter: Sendable, Equatable {
    public var from: Int64?
    public var to: Int64?
    public var consumer: String?
    public var dataset: String?

    public init(from: Int64? = nil, to: Int64? = nil, consumer: String? = nil, dataset: String? = nil) {
        self.from = from
        self.to = to
        self.consumer = consumer
        self.dataset = dataset
    }
}

extension LedgerStore {
    /// `scan` with the filter's fields as arguments.
    public func records(
        from: Int64? = nil, to: Int64? = nil, consumer: String? = nil, dataset: String? = nil,
        _ visit: (UsageRecord) -> Bool
    ) throws(LedgerError) {
        try scan(RecordFilter(from: from, to: to, consumer: consumer, dataset: dataset), visit)
    }
}
