import Crypto
import Foundation
import SandgateSupport

/// Proof that a usage record is in its node's chain: the record, its canonical bytes and the
/// links (`seq`, `prev_hash`, `record_hash`) from it to the chain's tail when the receipt was
/// made. A consumer holding a response's `query_id`, `seq`, `node_id` and `record_hash` checks
/// that the receipt names the same record and that the links join it to the tail; whoever holds
/// the ledger key also recomputes the record's hash (docs/CONTRACT.md §7).
public struct Receipt: Sendable, Equatable {
    public struct Link: Sendable, Equatable {
        public let seq: Int64
        public let prevHash: String
        public let recordHash: String

        public init(seq: Int64, prevHash: String, recordHash: String) {
            self.seq = seq
            self.prevHash = prevHash
            self.recordHash = recordHash
        }
    }

    public let record: UsageRecord
    /// `LedgerChain.canonicalBytes(record)`, what `record_hash` is the keyed hash of.
    public let canonical: [UInt8]
    /// The record's own link first, then every later record of its node, in `seq` order.
    public let links: [Link]

    public init(record: UsageRecord, links: [Link]) {
        self.record = record
        canonical = LedgerChain.canonicalBytes(record)
        self.links = links
    }

    init(record: UsageRecord, canonical: [UInt8], links: [Link]) {
        self.record = record
        self.canonical = canonical
        self.links = links
    }

    /// The first problem, or nil: the first link is the record, `seq`s follow each other, each
    /// `prev_hash` is the previous `record_hash`, the canonical bytes are the record's (for its
    /// chain version); with `key`, the record's hash is also recomputed from those bytes.
    public func check(key: SymmetricKey? = nil) -> LedgerProblem? {
        guard let first = links.first, first.seq == record.seq, first.recordHash == record.recordHash,
              first.prevHash == record.prevHash else {
            return LedgerProblem(seq: record.seq, reason: "the first link is not the record")
        }
        for (previous, next) in zip(links, links.dropFirst()) {
            guard next.seq == previous.seq + 1, next.prevHash == previous.recordHash else {
                return LedgerProblem(seq: next.seq, reason: "the link does not follow seq \(previous.seq)")
            }
        }
        // Needs no key: a record edited while its canonical bytes were kept must not pass.
        guard canonical == LedgerChain.canonicalBytes(record) else {
            return LedgerProblem(seq: record.seq, reason: "the canonical bytes are not the record's")
        }
        if let key {
            let mac = Hex.encode(HMAC<SHA256>.authenticationCode(for: canonical, using: key))
            guard constantTimeEqual(mac, record.recordHash) else {
                return LedgerProblem(seq: record.seq, reason: "the record's hash does not verify under the ledger key")
            }
        }
        return nil
    }

    /// The receipt as one JSON object: `receipt` (format 1), `node_id`, `record` (the JSON-lines
    /// export object plus `started_at_us` and `finished_at_us`), `canonical` (hex) and `links`.
    public var json: String {
        JSONWriter.object { json in
            json.field("receipt", 1)
            json.field("node_id", record.nodeID)
            json.object("record") { json in
                UsageExport.write(record, to: &json)
                json.field("started_at_us", record.startedAt)
                json.field("finished_at_us", record.finishedAt)
            }
            json.field("canonical", Hex.encode(canonical))
            json.array("links") { json in
                for link in links {
                    json.object { json in
                        json.field("seq", link.seq)
                        json.field("prev_hash", link.prevHash)
                        json.field("record_hash", link.recordHash)
                    }
                }
            }
        } + "\n"
    }

    /// Reads a receipt written by `json`; nil when it is not one.
    public static func parse(_ data: Data) -> Receipt? {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["receipt"] as? Int == 1,
              let fields = object["record"] as? [String: Any], let canonicalHex = object["canonical"] as? String,
              let canonical = Hex.decode(canonicalHex), let linkObjects = object["links"] as? [[String: Any]] else { return nil }
        func text(_ key: String) -> String? { fields[key] as? String }
        func integer(_ key: String) -> Int64? { (fields[key] as? NSNumber)?.int64Value }
        guard let queryID = text("query_id"), let started = integer("started_at_us"), let finished = integer("finished_at_us"),
              let consumer = text("consumer"), let dataset = text("dataset"), let datasetVersion = text("dataset_version"),
              let policyVersion = text("policy_version"), let status = text("status").flatMap(UsageStatus.init(rawValue:)),
              let errorCode = text("error_code"), let rows = integer("rows"), let cells = integer("cells"),
              let bytes = integer("bytes"), let masked = integer("masked_cells"), let suppressed = integer("suppressed_groups"),
              let truncated = fields["truncated"] as? Bool, let vmSteps = integer("vm_steps"), let elapsed = integer("elapsed_us"),
              let cost = integer("cost_micros"), let currency = text("currency"), let sqlSHA256 = text("sql_sha256"),
              let sql = text("sql"), let rewritten = text("rewritten_sql"), let seq = integer("seq"),
              let prevHash = text("prev_hash"), let recordHash = text("record_hash") else { return nil }
        var record = UsageRecord(
            queryID: queryID, startedAt: started, finishedAt: finished, consumer: consumer, dataset: dataset,
            datasetVersion: datasetVersion, policyVersion: policyVersion, status: status, errorCode: errorCode, rows: rows,
            cells: cells, bytes: bytes, maskedCells: masked, suppressedGroups: suppressed, truncated: truncated, vmSteps: vmSteps,
            elapsedMicroseconds: elapsed, costMicros: cost, currency: currency, sqlSHA256: sqlSHA256, sql: sql, rewrittenSQL: rewritten)
        record.seq = seq
        record.nodeID = object["node_id"] as? String ?? ""
        // Receipts of version-2 records carry neither `chain` nor the fields version 3 added.
        record.chain = integer("chain") ?? LedgerChain.firstKeyedVersion
        record.purpose = text("purpose") ?? ""
        record.epsilonMicros = integer("epsilon_micros") ?? 0
        record.clientAddress = text("client_address") ?? ""
        record.holder = text("holder") ?? ""
        record.holderSharePPM = integer("holder_share_ppm") ?? 0
        // Version 4's fields travel as their export text (receipts of earlier records lack them).
        record.readVersion4(kind: text("kind") ?? "", members: text("members") ?? "", extensions: text("extensions") ?? "")
        record.prevHash = prevHash
        record.recordHash = recordHash
        var links: [Link] = []
        for link in linkObjects {
            guard let seq = (link["seq"] as? NSNumber)?.int64Value, let prev = link["prev_hash"] as? String,
                  let hash = link["record_hash"] as? String else { return nil }
            links.append(Link(seq: seq, prevHash: prev, recordHash: hash))
        }
        return Receipt(record: record, canonical: canonical, links: links)
    }
}
