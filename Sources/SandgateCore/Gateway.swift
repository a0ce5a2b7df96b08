import Crypto
import Foundation
import Logging
import SandgateLedger
import SandgatePolicy
import SandgateSQL
import SandgateSQLite
import Synchronization
import SandgateSupport

/// The one code path every front end uses (DESIGN.md §1): grant → check → execute → meter →
/// price → record → release. A result leaves only after its usage record is committed.
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    /// Where usage records go (`Ledger`, the SQLite file in the state directory, unless the
    /// configuration names another store).
    public let ledger: any LedgerStore
    let logger: Logger
    let state: Mutex<GatewayState>
    private let refusals = RefusalMeter()

    /// The datasets and consumers in force; replaced as a whole on reload.
    struct GatewayState: Sendable {
        var datasets: [String: DatasetRuntime]
        var consumers: ConsumerDirectory
        var diagnostics: [PolicyDiagnostic]
        /// Files whose version in force ends with `...` (`PolicyLoadResult.sealed`).
        var sealed: Set<String> = []
    }

    /// Loads policies, validates them against their data, snapshots every valid dataset and opens
    /// the ledger. A dataset whose policy has any problem is unavailable (fail closed); the
    /// problems are in `diagnostics`.
    public init(configuration: GatewayConfiguration, logger: Logger = Logger(label: "sandgate")) throws(GatewayError) {
        self.configuration = configuration
        self.logger = logger
        SQLiteLibrary.setHardHeapLimit(bytes: configuration.sqliteHeapLimitBytes)
        do {
            try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
        } catch {
            throw GatewayError(.internal, "cannot create the state directory \(configuration.stateDirectory)")
        }
        do {
            if let open = configuration.ledger {
                ledger = try open()
            } else {
                ledger = try Ledger(path: (configuration.stateDirectory as NSString).appendingPathComponent("usage.sqlite"))
            }
        } catch {
            throw GatewayError(.internal, error.description)
        }
        if let failure = ledger.anchorFailure {
            logger.error("the ledger's anchor is broken; `sandgate usage verify` reports it until an operator acts", metadata: ["problem": "\(failure)"])
        }
        state = Mutex(Self.load(configuration: configuration, logger: logger))
    }

    static func load(configuration: GatewayConfiguration, logger: Logger) -> GatewayState {
        build(previous: nil, configuration: configuration, logger: logger).state
    }

    /// Builds the state from the policy files. With `previous`, a dataset whose file or data does
    /// not validate keeps its last valid version (never fail open), an unchanged dataset keeps its
    /// runtime (and pooled connections), and a removed file removes its dataset.
    static func build(previous: GatewayState?, configuration: GatewayConfiguration, logger: Logger) -> (state: GatewayState, changes: [String]) {
        let loaded = PolicyLoader.load(directory: configuration.policiesDirectory)
        var diagnostics = loaded.diagnostics
        var datasets: [String: DatasetRuntime] = [:]
        var changes: [String] = []
        var sealed: Set<String> = []
        for name in loaded.datasetFiles.sorted() {
            let old = previous?.datasets[name]
            // A version in force that ends with `...` is replaced only by one that does too: a
            // prefix of a file (an editor rewriting it in place, a crash, a full disk) can be
            // valid YAML and protect less — a mask key not written yet, a row filter cut short.
            let unsealedEdit = old != nil && previous?.sealed.contains(name) == true && !loaded.sealed.contains(name)
                && loaded.datasets[name]?.version != old?.policy.version
            guard let policy = loaded.datasets[name], !unsealedEdit else {
                if let old {
                    datasets[name] = old
                    if previous?.sealed.contains(name) == true { sealed.insert(name) }
                    changes.append("\(name): \(unsealedEdit ? "edit without the closing '...' line ignored (half-written?)" : "invalid edit ignored"), policy \(old.policy.version.prefix(12)) stays in force")
                }
                continue
            }
            if loaded.sealed.contains(name) { sealed.insert(name) }
            do throws(GatewayError) {
                let snapshot = try Snapshotter.snapshot(source: policy.sourcePath, dataset: name, stateDirectory: configuration.stateDirectory)
                if let old, old.policy.version == policy.version, old.snapshot == snapshot {
                    datasets[name] = old
                    continue
                }
                let problems = DataValidator.validate(policy, databasePath: snapshot.path)
                guard problems.isEmpty else {
                    diagnostics += problems
                    if let old {
                        datasets[name] = old
                        changes.append("\(name): invalid edit ignored, policy \(old.policy.version.prefix(12)) stays in force")
                    }
                    continue
                }
                let key = try DatasetSecret.load(dataset: name, stateDirectory: configuration.stateDirectory)
                guard let facts = try? SnapshotFacts.measure(policy, snapshotPath: snapshot.path) else {
                    throw GatewayError(.unavailable, "cannot read the snapshot's table sizes and keys")
                }
                datasets[name] = DatasetRuntime(policy: policy, snapshot: snapshot, facts: facts, key: key, poolSize: configuration.poolSize)
                changes.append("\(name): policy \(policy.version.prefix(12)), dataset \(snapshot.sha256.prefix(12))")
                logger.info("dataset ready", metadata: ["dataset": "\(name)", "policy_version": "\(policy.version.prefix(12))", "dataset_version": "\(snapshot.sha256.prefix(12))"])
            } catch {
                diagnostics.append(PolicyDiagnostic(policy.sourceLocation, error.message))
                if let old { datasets[name] = old }
            }
        }
        for name in (previous?.datasets.keys).map(Array.init) ?? [] where !loaded.datasetFiles.contains(name) {
            changes.append("\(name): removed")
        }
        // Part by part: a removal or a narrowed grant takes effect even when another entry is
        // invalid; an invalid entry keeps its previous version (or stays out if it is new).
        var consumers = loaded.consumerFile?.merged(over: previous?.consumers) ?? loaded.consumers
        if let previous, previous.sealed.contains(PolicyLoader.consumersFileName), !loaded.sealed.contains(PolicyLoader.consumersFileName),
           consumers.version != previous.consumers.version {
            // Not closed with `...` (half-written?): only revocations apply, nothing is widened.
            let names = loaded.consumerFile?.readable == true ? Set(loaded.consumerFile?.declared ?? [])
                : loaded.consumerFile?.scannedNames ?? Set(previous.consumers.consumers.keys)
            consumers = ConsumerDirectory(consumers: previous.consumers.consumers.filter { names.contains($0.key) }, version: previous.consumers.version)
            sealed.insert(PolicyLoader.consumersFileName)
            changes.append("consumers.yaml: edit without the closing '...' line: only removals of consumers apply")
        } else if loaded.sealed.contains(PolicyLoader.consumersFileName) {
            sealed.insert(PolicyLoader.consumersFileName)
        }
        if let file = loaded.consumerFile, !file.isValid, previous != nil {
            changes.append("consumers.yaml: " + (file.readable ? "invalid parts keep their previous version, the rest is in force" : "unreadable edit ignored, the previous version stays in force"))
        } else if previous.map({ $0.consumers.version != consumers.version }) ?? false {
            changes.append("consumers.yaml: version \(consumers.version.prefix(12))")
        }
        for diagnostic in diagnostics {
            logger.error("policy problem", metadata: ["at": "\(diagnostic.location)", "problem": "\(diagnostic.message)"])
        }
        return (GatewayState(datasets: datasets, consumers: consumers, diagnostics: diagnostics, sealed: sealed), changes)
    }

    /// Re-reads the policies and swaps the new state in atomically. Queries already running keep
    /// the runtime they started with. Returns what changed.
    @discardableResult
    public func reload() -> [String] {
        let previous = state.withLock { $0 }
        let (next, changes) = Self.build(previous: previous, configuration: configuration, logger: logger)
        state.withLock { $0 = next }
        for change in changes { logger.notice("policy reload", metadata: ["change": "\(change)"]) }
        return changes
    }

    /// A cheap fingerprint of everything a reload depends on: the policy files and every
    /// published dataset's source (size, mtime, inode, and its WAL file).
    public func policyFingerprint() -> String {
        let directory = configuration.policiesDirectory
        var parts: [String] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory).sorted()) ?? []
        for name in names where name.hasSuffix(".yaml") {
            var info = stat()
            let path = (directory as NSString).appendingPathComponent(name)
            if stat(path, &info) == 0 { parts.append("\(name):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec):\(info.st_ino)") }
        }
        let sources = state.withLock { $0.datasets.values.map(\.policy.sourcePath) }
        for source in sources.sorted() { parts.append(Snapshotter.sourceFingerprint(source)) }
        return parts.joined(separator: "|")
    }

    /// Opens every dataset's pool of sandbox connections ahead of the first queries (the server
    /// does this at start; the command line opens connections on first use).
    public func warmUp() {
        let runtimes = state.withLock { Array($0.datasets.values) }
        for runtime in runtimes where runtime.policy.tokens == .shared {
            do {
                try runtime.pool.warmUp()
            } catch {
                logger.error("cannot open sandbox connections", metadata: ["dataset": "\(runtime.policy.name)", "error": "\(error.message)"])
            }
        }
    }

    /// Problems found in the policies at the last load.
    public var diagnostics: [PolicyDiagnostic] { state.withLock { $0.diagnostics } }

    /// Names of the datasets that are available.
    public var datasetNames: [String] { state.withLock { $0.datasets.keys.sorted() } }

    /// The runtime of a dataset (for describe and tests).
    public func runtime(_ dataset: String) -> DatasetRuntime? { state.withLock { $0.datasets[dataset] } }

    /// The consumer directory in force.
    public var consumers: ConsumerDirectory { state.withLock { $0.consumers } }

    // MARK: Running a query

    /// A response whose usage record still has to be committed before it may be released.
    /// Internal, like `execute` and `complete`: outside this module a `QueryResponse` exists only
    /// once the ledger answered for its record (DESIGN.md §2: no usage record, no result).
    struct PendingResponse: Sendable {
        let response: QueryResponse
        let record: UsageRecord
        /// The quota hold the record's append charges (or `release` drops).
        let hold: QuotaHold?
        /// A private query's released groups, cached once its record (which pays for them) is committed.
        var privateAnswer: PrivateAnswer? = nil
    }

    /// Runs one request end to end. Never throws: every outcome, refusals included, is a response
    /// with a usage record behind it; if the record cannot be written, no result is released.
    public func run(_ request: QueryRequest) -> QueryResponse {
        let pending = execute(request)
        if let unrecorded = summarizedRefusal(pending) { return unrecorded }
        do {
            return complete(pending, stored: .success(try ledger.append(pending.record, hold: pending.hold)))
        } catch {
            return complete(pending, stored: .failure(error))
        }
    }

    /// Runs `request` and hands the response to `completion` only after its usage record is
    /// durable; the calling thread does not wait for the commit (the server's workers use this,
    /// so that many queries share one group commit).
    public func run(_ request: QueryRequest, completion: @escaping @Sendable (QueryResponse) -> Void) {
        let pending = execute(request)
        if let unrecorded = summarizedRefusal(pending) { return completion(unrecorded) }
        ledger.append(pending.record, hold: pending.hold) { [self] stored in completion(complete(pending, stored: stored)) }
    }

    /// Refusals cost nothing, so a consumer's refusals past `RefusalMeter.recordedPerWindow` in a
    /// minute are not recorded one by one: they are answered (a refusal carries no data) and
    /// counted into one summary record when the consumer's next minute begins. So no consumer
    /// can grow the ledger by more than about 120 × 2.6 KiB a minute with refusals (red team:
    /// 243 MB a minute). Returns the response when `pending` is such a refusal.
    func summarizedRefusal(_ pending: PendingResponse) -> QueryResponse? {
        guard pending.record.status == .refused, !pending.record.consumer.isEmpty,
              Name.isValid(pending.record.consumer) else { return nil }
        let minute = pending.record.startedAt / 60_000_000
        let (record, summary) = refusals.admit(consumer: pending.record.consumer, minute: minute)
        if let summary {
            appendRefusalSummary(consumer: pending.record.consumer, count: summary.count, minute: summary.minute)
        }
        guard !record else { return nil }
        if let hold = pending.hold { ledger.release(hold) }
        var response = complete(pending, stored: .success(pending.record))
        response.usage.seq = 0
        response.usage.nodeID = ""
        response.usage.recordHash = ""
        return response
    }

    /// Writes the summary records of refusals counted so far (the server calls it every few
    /// seconds, so a crash loses at most those seconds' count; red team: a summary waited for the
    /// consumer's next refusal and was lost on kill -9).
    public func writeDueRefusalSummaries() {
        for (consumer, count, minute) in refusals.flush(before: configuration.now() / 60_000_000) {
            appendRefusalSummary(consumer: consumer, count: count, minute: minute)
        }
    }

    /// Writes the summary records of refusals not yet summarised and forgets every window (at
    /// shutdown).
    public func flushRefusalSummaries() {
        for (consumer, count, minute) in refusals.flush(before: .max) {
            appendRefusalSummary(consumer: consumer, count: count, minute: minute)
        }
    }

    private func appendRefusalSummary(consumer: String, count: Int, minute: Int64) {
        let start = minute * 60_000_000
        appendUnmeteredRefusal(consumer: consumer, kind: RecordKind.refusalSummary, code: "refusals_summarized", during: start...(start + 59_999_999),
                               detail: "\(count) more refused requests of \(consumer) in this minute, not recorded one by one")
    }

    /// A refused record of `request` (nothing run, priced 0) that `execute` fills in as it goes.
    static func refusedRecord(_ request: QueryRequest, queryID: String, started: Int64, runtime: DatasetRuntime?, consumer: Consumer?) -> UsageRecord {
        var record = UsageRecord(
            queryID: queryID, startedAt: started, finishedAt: started,
            // A refused consumer name is kept (cut to 64 bytes) for the audit; an unknown dataset
            // is recorded as "" (red team: any string became its own invoice line and log text).
            consumer: consumer?.name ?? request.consumer,
            dataset: runtime?.policy.name ?? "", datasetVersion: runtime?.snapshot.sha256 ?? "",
            policyVersion: runtime?.policy.version ?? "", status: .refused, errorCode: "", rows: 0, cells: 0,
            bytes: 0, maskedCells: 0, suppressedGroups: 0, truncated: false, vmSteps: 0, elapsedMicroseconds: 0,
            costMicros: 0, currency: runtime?.policy.pricing.currency ?? "", sqlSHA256: Self.sha256Hex(request.sql),
            sql: request.sql, rewrittenSQL: "", clientAddress: request.clientAddress,
            holder: runtime?.policy.owner ?? "",
            // The holder's share as it is now, so that settlement is reproducible from the ledger
            // alone after the policy changes. The purpose is set only once it is decided: a refused
            // purpose is not recorded (any string would become its own invoice line).
            holderSharePPM: runtime?.policy.pricing.holderSharePPM ?? 0)
        record.kind = request.kind == .catalog ? RecordKind.catalog : RecordKind.query
        return record.bounded()
    }

    /// The dataset and consumer `request` names, as loaded now. Names are looked up only when
    /// they are valid ASCII names: Swift's String equality is canonical equivalence, which would
    /// let `\u{212A}ate` in as `Kate` (issue 12).
    func resolve(_ request: QueryRequest) -> (runtime: DatasetRuntime?, consumer: Consumer?) {
        state.withLock {
            (Name.isValid(request.dataset) ? $0.datasets[request.dataset] : nil,
             Name.isValid(request.consumer) ? $0.consumers.consumers[request.consumer] : nil)
        }
    }

    /// Records a request that a front end refused before running it (`overloaded`: too many in
    /// flight, responses not read) and hands the refusal over once it is recorded — every
    /// authenticated request leaves a record. Refusals past the per-minute count are summarised
    /// like every other refusal.
    public func refuse(_ request: QueryRequest, _ error: GatewayError, completion: @escaping @Sendable (QueryResponse) -> Void) {
        let (runtime, consumer) = resolve(request)
        // The record is bounded already; an error code is a short, fixed string.
        var progress = QueryProgress(record: Self.refusedRecord(request, queryID: Self.newQueryID(), started: configuration.now(),
                                                                 runtime: runtime, consumer: consumer))
        progress.record.errorCode = error.code.rawValue
        let pending = PendingResponse(
            response: QueryResponse(outcome: .failure(error), truncated: false, truncatedBy: nil, usage: progress.usage),
            record: progress.record, hold: nil)
        if let unrecorded = summarizedRefusal(pending) { return completion(unrecorded) }
        ledger.append(pending.record) { [self] stored in completion(complete(pending, stored: stored)) }
    }

    /// The response to release once the ledger answered for its record (the store has charged
    /// or dropped the request's quota hold by then).
    func complete(_ pending: PendingResponse, stored: Result<UsageRecord, LedgerError>) -> QueryResponse {
        var response = pending.response
        switch stored {
        case .success(let record):
            response.usage.seq = record.seq
            response.usage.nodeID = record.nodeID
            response.usage.recordHash = record.recordHash
            // The record that pays for the answer is committed: an identical query reuses it.
            if let answer = pending.privateAnswer { answer.runtime.remember(answer) }
        case .failure(let error):
            logger.error("ledger append failed; result withheld", metadata: ["query_id": "\(pending.record.queryID)", "error": "\(error.message)"])
            response.outcome = .failure(GatewayError(.unavailable, "the usage record could not be written; no result is released",
                                                     hint: "the ledger is unavailable; retry later"))
            response.truncated = false
            response.truncatedBy = nil
            // Nothing is recorded, so nothing is metered either: rows, bytes and steps of a
            // withheld result are figures about the data (red team: an oracle without a record).
            response.usage = UsageSummary(queryID: pending.record.queryID, rows: 0, cells: 0, bytes: 0, maskedCells: 0,
                                          suppressedGroups: nil, vmSteps: 0, elapsedMicroseconds: 0, costMicros: 0,
                                          currency: response.usage.currency, seq: 0)
        }
        if case .failure(let error) = response.outcome {
            logger.notice("request refused", metadata: ["query_id": "\(pending.record.queryID)", "consumer": "\(pending.record.consumer)", "dataset": "\(pending.record.dataset)", "code": "\(error.code.rawValue)"])
        }
        return response
    }

    /// Longest SQL text accepted.
    public static let maxSQLBytes = 1_000_000

    /// The purpose of a request under `PurposeRule`, or `purpose_not_allowed` with the purposes
    /// the consumer may use in the hint.
    static func decidePurpose(_ requested: String?, runtime: DatasetRuntime, grant: Grant) -> Result<PurposeRule.Decision, GatewayError> {
        PurposeRule.decide(requested, dataset: runtime.policy, grant: grant).mapError { refusal in
            let (message, hint) = PurposeRule.explain(refusal, dataset: runtime.policy, grant: grant)
            return GatewayError(.purposeNotAllowed, message, hint: hint)
        }
    }

    /// Parses and checks `sql` against `policy` (the consumer's view of the dataset).
    static func check(_ sql: String, policy: DatasetPolicy, facts: SnapshotFacts) -> Result<CheckedQuery, GatewayError> {
        let select: Select
        do {
            select = try Parser.parseSelect(sql)
        } catch {
            switch error.kind {
            case .notASelect: return .failure(GatewayError(.notASelect, error.message, hint: "send one SELECT (or WITH … SELECT) statement"))
            case .tooDeep: return .failure(GatewayError(.requestTooLarge, error.description))
            case .syntax: return .failure(GatewayError(.syntaxError, error.description))
            }
        }
        var checker = Checker(policy: policy, facts: facts)
        do {
            return .success(try checker.check(select))
        } catch {
            return .failure(error)
        }
    }

    static func newQueryID() -> String { RandomToken.hex128() }

    static func sha256Hex(_ text: String) -> String {
        Hex.encode(SHA256.hash(data: Array(text.utf8)))
    }
}

/// Per consumer and minute: how many refusals were recorded one by one, and how many were not.
final class RefusalMeter: Sendable {
    /// Refusals of one consumer recorded one by one per minute.
    static let recordedPerWindow = 120

    private struct Window {
        var minute: Int64
        var recorded = 0
        var unrecorded = 0
    }

    private let windows = Mutex<[String: Window]>([:])

    /// Whether this refusal is recorded, and the summary of an earlier minute that is now due.
    func admit(consumer: String, minute: Int64) -> (record: Bool, summary: (count: Int, minute: Int64)?) {
        windows.withLock { windows in
            var summary: (count: Int, minute: Int64)?
            var window = windows[consumer] ?? Window(minute: minute)
            if window.minute != minute {
                if window.unrecorded > 0 { summary = (window.unrecorded, window.minute) }
                window = Window(minute: minute)
            }
            let record = window.recorded < Self.recordedPerWindow
            if record { window.recorded += 1 } else { window.unrecorded += 1 }
            windows[consumer] = window
            if windows.count > 100_000 { windows = windows.filter { $0.value.minute == minute } }
            return (record, summary)
        }
    }

    /// The unrecorded counts so far, cleared; each window keeps how many it recorded one by one
    /// (so flushing often never records more refusals one by one), and windows of minutes before
    /// `minute` are dropped.
    func flush(before minute: Int64) -> [(consumer: String, count: Int, minute: Int64)] {
        windows.withLock { windows in
            var due: [(consumer: String, count: Int, minute: Int64)] = []
            for (consumer, window) in windows {
                if window.unrecorded > 0 { due.append((consumer, window.unrecorded, window.minute)) }
                if window.minute < minute {
                    windows[consumer] = nil
                } else {
                    windows[consumer]?.unrecorded = 0
                }
            }
            return due
        }
    }
}
