import SandgateSupport

/// The outcome class of a request in the ledger.
public enum UsageStatus: String, Sendable, Codable {
    /// A result was released.
    case ok
    /// The gateway refused the request before executing anything (priced 0).
    case refused
    /// Execution started and failed (budget, timeout, result too large, internal).
    case failed
}

/// One row of the usage ledger: one request that reached the gateway (DESIGN.md §7).
public struct UsageRecord: Sendable, Hashable {
    /// Position in its node's chain; 0 until appended.
    public var seq: Int64 = 0
    /// The gateway node whose chain holds the record; set when appended. Not part of the
    /// canonical bytes (chain version 2): the node's anchor binds its chain to its name.
    public var nodeID: String = ""
    public var queryID: String
    /// Microseconds since the Unix epoch, UTC.
    public var startedAt: Int64
    public var finishedAt: Int64
    public var consumer: String
    public var dataset: String
    public var datasetVersion: String
    public var policyVersion: String
    public var status: UsageStatus
    /// The stable error code of DESIGN.md §5, empty on success.
    public var errorCode: String
    public var rows: Int64
    public var cells: Int64
    public var bytes: Int64
    public var maskedCells: Int64
    public var suppressedGroups: Int64
    public var truncated: Bool
    public var vmSteps: Int64
    public var elapsedMicroseconds: Int64
    public var costMicros: Int64
    public var currency: String
    public var sqlSHA256: String
    /// Hash of the previous record (64 zeros for the first); set when appended.
    public var prevHash: String = ""
    public var recordHash: String = ""
    /// The consumer's SQL as received.
    public var sql: String
    /// The SQL that ran in the sandbox (empty when nothing ran).
    public var rewrittenSQL: String
    /// What the consumer declared the query is for (issue 13); empty when none was given.
    public var purpose: String
    /// Privacy budget spent, ε × 1,000,000 (issue 10): integers, so sums of a budget are exact.
    public var epsilonMicros: Int64
    /// The client's address as the server saw it (`127.0.0.1:51234`); empty for the local CLI.
    /// A failed login's address lives here, never inside the SQL fields.
    public var clientAddress: String
    /// The dataset's holder (its policy's `owner`) and the holder's share of the charge in parts
    /// per million, as they were when the query ran: settlement is reproducible from the ledger
    /// alone, whatever the policies say later.
    public var holder: String
    public var holderSharePPM: Int64
    /// The chain version the record is hashed under (`LedgerChain`): set when it is linked or read.
    public var chain: Int64 = LedgerChain.currentVersion
    /// What the record is (chain version 4; `RecordKind`): records of versions before 4 read as `query`.
    public var kind: String = RecordKind.query
    /// The member datasets a query read (a collaboration's; chain version 4), empty for one dataset.
    public var members: [RecordMember] = []
    /// Named fields the issues after version 4 add without a new chain version (chain version 4).
    public var extensions: [String: RecordExtension] = [:]

    public init(
        queryID: String, startedAt: Int64, finishedAt: Int64, consumer: String, dataset: String,
        datasetVersion: String, policyVersion: String, status: UsageStatus, errorCode: String, rows: Int64,
        cells: Int64, bytes: Int64, maskedCells: Int64, suppressedGroups: Int64, truncated: Bool, vmSteps: Int64,
        elapsedMicroseconds: Int64, costMicros: Int64, currency: String, sqlSHA256: String, sql: String,
        rewrittenSQL: String, purpose: String = "", epsilonMicros: Int64 = 0, clientAddress: String = "",
        holder: String = "", holderSharePPM: Int64 = 0
    ) {
        self.queryID = queryID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.consumer = consumer
        self.dataset = dataset
        self.datasetVersion = datasetVersion
        self.policyVersion = policyVersion
        self.status = status
        self.errorCode = errorCode
        self.rows = rows
        self.cells = cells
        self.bytes = bytes
        self.maskedCells = maskedCells
        self.suppressedGroups = suppressedGroups
        self.truncated = truncated
        self.vmSteps = vmSteps
        self.elapsedMicroseconds = elapsedMicroseconds
        self.costMicros = costMicros
        self.currency = currency
        self.sqlSHA256 = sqlSHA256
        self.sql = sql
        self.rewrittenSQL = rewrittenSQL
        self.purpose = purpose
        self.epsilonMicros = epsilonMicros
        self.clientAddress = clientAddress
        self.holder = holder
        self.holderSharePPM = holderSharePPM
    }

    // MARK: Bounds

    /// `sql` and `rewritten_sql` are stored cut to this many bytes (`sql_sha256` is of the full text).
    public static let sqlLimit = 65_536
    /// A refused request's `sql` and `rewritten_sql` are stored cut to this many bytes: refusals
    /// cost nothing, so they must not be a cheap way to fill the ledger (red team: 243 MB a
    /// minute of 64 KiB refusals).
    public static let refusedSQLLimit = 2_048
    /// `consumer` and `dataset`: a valid name is at most 64 bytes; a failed login's name is cut to this.
    public static let nameLimit = 64
    /// Every other text field (ids, versions, hashes, codes, currency).
    public static let fieldLimit = 256
    /// The most bytes of text one stored record can hold: 2 × `sqlLimit` + 3 × `nameLimit`
    /// (consumer, dataset, purpose) + 12 × `fieldLimit` (with `node_id`, `prev_hash`,
    /// `record_hash`, `client_address` and `holder`), about 132 KiB.
    public static let maxTextBytes = 2 * sqlLimit + 3 * nameLimit + 12 * fieldLimit

    /// This record with every text field cut by bytes, on a UTF-8 boundary, to its limit. The
    /// ledger stores only bounded records, so no caller can grow it by more per record.
    public func bounded() -> UsageRecord {
        var record = self
        func cut(_ text: inout String, _ limit: Int) { text = UTF8Text.prefix(text, maxBytes: limit) }
        cut(&record.queryID, Self.fieldLimit)
        cut(&record.consumer, Self.nameLimit)
        cut(&record.dataset, Self.nameLimit)
        cut(&record.datasetVersion, Self.fieldLimit)
        cut(&record.policyVersion, Self.fieldLimit)
        cut(&record.errorCode, Self.fieldLimit)
        cut(&record.currency, Self.fieldLimit)
        cut(&record.sqlSHA256, Self.fieldLimit)
        cut(&record.purpose, Self.nameLimit)
        cut(&record.clientAddress, Self.fieldLimit)
        cut(&record.holder, Self.fieldLimit)
        // A refusal is known by its code (a record still being built has none yet).
        let refused = record.status == .refused && !record.errorCode.isEmpty
        cut(&record.sql, refused ? Self.refusedSQLLimit : Self.sqlLimit)
        cut(&record.rewrittenSQL, refused ? Self.refusedSQLLimit : Self.sqlLimit)
        record.boundVersion4()
        return record
    }

    /// The CSV export columns, in order (DESIGN.md §7).
    public static let exportColumns = [
        "node_id", "seq", "query_id", "started_at", "finished_at", "consumer", "dataset", "dataset_version",
        "policy_version", "purpose", "status", "error_code", "rows", "cells", "bytes", "masked_cells",
        "suppressed_groups", "truncated", "vm_steps", "elapsed_us", "cost_micros", "currency", "epsilon_micros",
        "holder", "holder_share_ppm", "client_address", "sql_sha256", "chain", "prev_hash", "record_hash",
        "kind", "members", "extensions",
    ]

    /// The exported text of each column of `exportColumns`, in order.
    public var exportFields: [String] {
        [
            nodeID, String(seq), queryID, Timestamp.rfc3339(startedAt), Timestamp.rfc3339(finishedAt), consumer, dataset,
            datasetVersion, policyVersion, purpose, status.rawValue, errorCode, String(rows), String(cells), String(bytes),
            String(maskedCells), String(suppressedGroups), truncated ? "true" : "false", String(vmSteps),
            String(elapsedMicroseconds), String(costMicros), currency, String(epsilonMicros), holder,
            String(holderSharePPM), clientAddress, sqlSHA256, String(chain), prevHash, recordHash,
            kind, RecordColumns.members(members), RecordColumns.extensions(extensions),
        ]
    }

    /// The columns that the numbers of `exportColumns` are (unquoted in JSON).
    public static let numericExportColumns: Set<String> = [
        "seq", "rows", "cells", "bytes", "masked_cells", "suppressed_groups", "vm_steps", "elapsed_us", "cost_micros",
        "epsilon_micros", "holder_share_ppm", "chain",
    ]

    /// The export text of chain version 1 (before issue 12), which that version hashed: `seq`
    /// through `sql_sha256` as printed then. Frozen: only old records are checked with it.
    var legacyFields: [String] {
        [
            String(seq), queryID, Timestamp.rfc3339(startedAt), Timestamp.rfc3339(finishedAt), consumer, dataset,
            datasetVersion, policyVersion, status.rawValue, errorCode, String(rows), String(cells), String(bytes),
            String(maskedCells), String(suppressedGroups), truncated ? "true" : "false", String(vmSteps),
            String(elapsedMicroseconds), String(costMicros), currency, sqlSHA256,
        ]
    }
}
