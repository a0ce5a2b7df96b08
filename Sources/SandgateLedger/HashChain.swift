import Crypto

/// One node's keyed hash chain as a value: its key and its tail. Both stores link records with
/// it before they write them, so the chain's rules live in one place and need no storage to test.
public struct HashChain {
    public let key: SymmetricKey
    /// The node whose chain this is (stored with each record; bound to the chain by the anchor).
    public let nodeID: String
    /// The last linked record's `seq` and `record_hash` (0 and the genesis hash when empty).
    public private(set) var seq: Int64
    public private(set) var hash: String

    /// The hash that precedes the first record of every chain.
    public static let genesisHash = String(repeating: "0", count: 64)

    public init(key: SymmetricKey, nodeID: String, seq: Int64 = 0, hash: String = HashChain.genesisHash) {
        self.key = key
        self.nodeID = nodeID
        self.seq = seq
        self.hash = hash
    }

    /// `record`, bounded, with the next `seq`, the tail as its `prev_hash` and its keyed hash;
    /// the chain's tail moves to it.
    public mutating func link(_ record: UsageRecord) -> UsageRecord {
        var linked = record.bounded()
        seq += 1
        linked.seq = seq
        linked.nodeID = nodeID
        linked.prevHash = hash
        linked.chain = LedgerChain.currentVersion
        linked.recordHash = LedgerChain.keyedHash(of: linked, key: key)
        hash = linked.recordHash
        return linked
    }
}

/// Checks stored records against the chain rules, one after another in `seq` order: `seq` 1, 2,
/// 3… without gaps, each `prev_hash` the previous `record_hash`, each hash recomputed (keyed
/// from `firstKeyedSeq` on, the version-1 hash before it) and the stored chain version as
/// expected. A value, so that every store verifies with the same code. (Not `Sendable`: swift-crypto's
/// `SymmetricKey` is not; each verification runs on one thread.)
public struct ChainVerifier {
    private let key: SymmetricKey
    private let firstKeyedSeq: Int64
    /// The last record that verified (0 and the genesis hash before the first).
    public private(set) var seq: Int64 = 0
    public private(set) var hash = HashChain.genesisHash
    /// The chain version of the last record that verified.
    private var version: Int64 = 1
    /// The anchor's `seq` (0: none) and the `record_hash` found there, once seen.
    private let anchorSeq: Int64
    private var anchorHash: String?
    private var anchorArchived = false

    /// `after`: where the stored records begin — the genesis, or an archive boundary (the last
    /// archived record's `seq` and `record_hash`).
    public init(key: SymmetricKey, firstKeyedSeq: Int64 = 1, anchorSeq: Int64 = 0,
                after: (seq: Int64, hash: String) = (0, HashChain.genesisHash)) {
        self.key = key
        seq = after.seq
        hash = after.hash
        // An anchor at the boundary names the last archived record (whose hash the MACed
        // boundary carries); one before it names records no longer here to compare.
        if anchorSeq == after.seq { anchorHash = after.hash }
        anchorArchived = anchorSeq < after.seq
        self.firstKeyedSeq = firstKeyedSeq
        self.anchorSeq = anchorSeq
    }

    /// The problem with `record` (stored with chain version `chain`), or nil when it extends the
    /// chain; after a problem the verifier must not be fed further records.
    /// A keyed record's version is 2 or 3 and never lower than the one before it (the magic of
    /// the canonical bytes names the version, so the stored `chain` cannot be changed unseen).
    public mutating func check(_ record: UsageRecord, chain: Int64) -> LedgerProblem? {
        var record = record
        record.chain = chain
        let keyed = record.seq >= firstKeyedSeq
        let versionFits = keyed
            ? (LedgerChain.firstKeyedVersion...LedgerChain.currentVersion).contains(chain) && chain >= version
            : chain == 1
        let expectedHash = keyed ? LedgerChain.keyedHash(of: record, key: key) : LedgerChain.legacyHash(of: record)
        guard record.seq == seq + 1, record.prevHash == hash, versionFits,
              constantTimeEqual(expectedHash, record.recordHash) else {
            return LedgerProblem(seq: record.seq, reason: "the record does not verify (changed, deleted, inserted, reordered or recomputed without the key)")
        }
        if record.seq == anchorSeq { anchorHash = record.recordHash }
        seq = record.seq
        hash = record.recordHash
        version = chain
        return nil
    }

    /// After the last record: the chain must reach the anchor's `seq` with the anchor's hash.
    public func finish(anchorHash expected: String) -> LedgerProblem? {
        if seq < anchorSeq {
            return LedgerProblem(seq: seq + 1, reason: "truncated: the anchor names seq \(anchorSeq) but the chain ends at seq \(seq)")
        }
        if anchorSeq > 0, !anchorArchived, anchorHash != expected {
            return LedgerProblem(seq: anchorSeq, reason: "the record differs from the anchor")
        }
        return nil
    }
}
