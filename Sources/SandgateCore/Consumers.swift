import Crypto
import Foundation
import Logging
import SandgateLedger
import SandgatePolicy
import SandgateSupport

/// Consumer authentication, quotas and the datasets a consumer may see.
extension Gateway {
    /// Checks `key` against the consumer's stored SHA-256 in constant time (an unknown consumer
    /// costs the same comparison against a fixed hash). Returns the name as declared in
    /// `consumers.yaml`, which every component uses from then on, or nil. A name that is not a
    /// valid `Name` is refused before any lookup (no normalisation, no case folding: bytes).
    /// The key is never stored or logged.
    public func authenticate(consumer: String, key: String) -> String? {
        let presented = Array(Hex.encode(SHA256.hash(data: Array(key.utf8))).utf8)
        let known = Name.isValid(consumer) ? consumers.consumers[consumer] : nil
        let stored = Array((known?.keySHA256 ?? String(repeating: "f", count: 64)).utf8)
        guard presented.count == stored.count else { return nil }
        var difference: UInt8 = 0
        for index in presented.indices { difference |= presented[index] ^ stored[index] }
        guard difference == 0, let known, Array(known.name.utf8) == Array(consumer.utf8) else { return nil }
        return known.name
    }

    /// The declared consumer's role (`operator` sees server-wide figures).
    public func role(of consumer: String) -> ConsumerRole {
        (Name.isValid(consumer) ? consumers.consumers[consumer]?.role : nil) ?? .consumer
    }

    /// Writes a refused `auth_failed` record for a failed authentication. The name is whatever
    /// the client sent, so only its first `UsageRecord.nameLimit` bytes are kept.
    public func recordAuthenticationFailure(consumer: String, source: String) {
        let now = configuration.now()
        appendUnmeteredRefusal(consumer: consumer, kind: RecordKind.authFailure, code: ErrorCode.authFailed.rawValue, during: now...now, detail: "",
                               clientAddress: source)
    }

    /// Writes one summary record for `count` failed authentications from `source` that were not
    /// recorded one by one (the server rate-limits them, so no client can grow the ledger faster
    /// than a fixed number of records per interval).
    public func recordAuthenticationFailureSummary(source: String, count: Int, seconds: Int) {
        let now = configuration.now()
        appendUnmeteredRefusal(consumer: "", kind: RecordKind.authFailureSummary, code: ErrorCode.authFailed.rawValue, during: now...now,
                               detail: "\(count) more failures in \(seconds) s, not recorded one by one", clientAddress: source)
    }

    /// Appends a refused record that meters nothing (a failed login, a summary of refusals not
    /// recorded one by one), naming the consumers file in force, with `detail` in `rewritten_sql`
    /// and the client's address (when there is one) in its own field.
    func appendUnmeteredRefusal(consumer: String, kind: String, code: String, during time: ClosedRange<Int64>, detail: String, clientAddress: String = "") {
        var record = UsageRecord(
            queryID: Self.newQueryID(), startedAt: time.lowerBound, finishedAt: time.upperBound, consumer: consumer,
            dataset: "", datasetVersion: "", policyVersion: consumers.version, status: .refused, errorCode: code,
            rows: 0, cells: 0, bytes: 0, maskedCells: 0, suppressedGroups: 0, truncated: false, vmSteps: 0, elapsedMicroseconds: 0,
            costMicros: 0, currency: "", sqlSHA256: "", sql: "", rewrittenSQL: detail, clientAddress: clientAddress).bounded()
        record.kind = kind
        do {
            _ = try ledger.append(record)
        } catch {
            logger.error("ledger append failed for a refused record", metadata: ["code": "\(code)", "error": "\(error.message)"])
        }
    }

    /// Today's use of a dataset by a consumer against its grant.
    public struct QuotaStatus: Sendable {
        public let dataset: String
        public let queriesToday: Int64
        public let rowsToday: Int64
        public let dailyQueries: Int?
        public let dailyRows: Int?
        /// The ε budget on the dataset's private tables (nil: the dataset has none).
        public var privacy: PrivacyBudgetStatus? = nil
    }

    public func quota(consumer: String, dataset: String) -> Result<QuotaStatus, GatewayError> {
        guard let grant = consumers.consumers[consumer]?.grants[dataset] else {
            return .failure(GatewayError(.notGranted, "consumer '\(consumer)' has no grant for dataset '\(dataset)'"))
        }
        do {
            let used = try ledger.totals(consumer: consumer, dataset: dataset, at: configuration.now()).day
            var status = QuotaStatus(dataset: dataset, queriesToday: used.ranQueries, rowsToday: used.okRows, dailyQueries: grant.dailyQueries, dailyRows: grant.dailyRows)
            if let policy = runtime(dataset)?.policy {
                status.privacy = try PrivacyBudgetStatus.read(policy: policy, grant: grant, consumer: consumer, ledger: ledger, now: configuration.now())
            }
            return .success(status)
        } catch {
            return .failure(GatewayError(.internal, "cannot read today's usage"))
        }
    }

    /// Datasets the consumer holds a grant for and that are available.
    public func grantedDatasets(consumer: String) -> [String] {
        let grants = consumers.consumers[consumer]?.grants ?? [:]
        return datasetNames.filter { grants[$0] != nil }
    }
}
