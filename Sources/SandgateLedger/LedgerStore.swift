
/// Reports a long step (building the running totals of an existing ledger): records done, of all.
public typealias LedgerProgress = @Sendable (_ done: Int64, _ total: Int64) -> Void

/// Runs once a record is durable (with its `seq` and hashes) or its commit failed.
public typealias LedgerCompletion = @Sendable (Result<UsageRecord, LedgerError>) -> Void

/// Where the usage records live: the seam between the gateway and the ledger's storage. `Ledger`
/// (one SQLite file per state directory) is the embedded implementation; `PostgresLedgerStore`
/// (module SandgateLedgerPostgres) is the shared one for many gateway nodes. The contract:
/// - `append` links the record into this node's chain (`HashChain`) and makes it durable before
///   its completion runs; a caller releases the result it meters only then. Records that arrive
///   together are committed together (one transaction per batch);
/// - `append` also adds each record to the running totals (`RunningTotals`) in the same commit;
/// - `reserve` decides a request's quotas (`QuotaRequest.decide`) against the running totals and
///   every hold in flight — of every process sharing the store — and places a hold; the hold is
///   charged by the `append` of the request's record, in the same commit, or dropped by `release`.
///   Its cost does not grow with the number of records;
/// - `totals` reads a consumer's running totals on a dataset (the `quota` op, ε left);
/// - `scan` visits records for exports, invoices and audits, each node's chain in `seq` order;
/// - `verify` checks every node's chain and its anchor, and recomputes the running totals.
public protocol LedgerStore: AnyObject, Sendable {
    /// The node whose chain this store appends to.
    var nodeID: String { get }
    /// Why the chain's anchor is broken, when it is (logged at start).
    var anchorFailure: String? { get }
    /// Records waiting for their commit (the `ledger lag` metric).
    var pendingCount: Int { get }

    /// Queues `record`; `completion` runs once it is durable (or its commit failed). `hold`, granted
    /// by this store's `reserve`, is charged in the same commit (and dropped if the commit fails).
    func append(_ record: UsageRecord, hold: QuotaHold?, completion: @escaping LedgerCompletion)
    /// Decides `request` against what is used and held, and holds what it grants.
    func reserve(_ request: QuotaRequest) throws(LedgerError) -> QuotaDecision
    /// Drops a hold whose request will not be recorded.
    func release(_ hold: QuotaHold)
    /// The running totals of `consumer` on `dataset` for the UTC day and month containing `time`
    /// (µs since the epoch) and for all time, of committed records (holds not included).
    func totals(consumer: String, dataset: String, at time: Int64) throws(LedgerError) -> UsageTotals
    /// Calls `visit` for each record matching `filter` until it returns false: ordered by node,
    /// then `seq`.
    func scan(_ filter: RecordFilter, _ visit: (UsageRecord) -> Bool) throws(LedgerError)
    /// The record of `queryID` and the links from it to its node's chain tail; nil when no
    /// record has that id.
    func receipt(queryID: String) throws(LedgerError) -> Receipt?
    /// The first problem of a chain or its anchor, or nil when everything verifies.
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

    /// Queues `record` without a quota hold.
    public func append(_ record: UsageRecord, completion: @escaping LedgerCompletion) {
        append(record, hold: nil, completion: completion)
    }

    /// Appends `record` durably and returns it as stored (blocks the calling thread until it is
    /// committed: never call it on an event loop).
    public func append(_ record: UsageRecord, hold: QuotaHold? = nil) throws(LedgerError) -> UsageRecord {
        let done = ThreadHandoff<Result<UsageRecord, LedgerError>?>(nil)
        append(record, hold: hold) { result in done.update { $0 = result } }
        return try done.wait(until: { $0 != nil }) { $0 ?? .failure(LedgerError(.integrity, "no result")) }.get()
    }
}
