import Crypto
import Foundation
import SandgateSupport

/// The keyed hash chain of the ledger and its anchor (docs/CONTRACT.md §7).
///
/// Every record carries `record_hash = HMAC-SHA256(ledger key, canonical bytes)`, where the
/// canonical bytes include `prev_hash`. The encoding is typed and length-prefixed, independent of
/// any export format: changing how a field is printed never changes a hash.
public enum LedgerChain {
    /// The chain version of records written by this code (column `chain`). Older versions still
    /// verify as they were written: 1 (unkeyed SHA-256 over export text, before issue 12), 2
    /// (keyed, without the fields that version 3 added) and 3 (without version 4's kind, members
    /// and extensions).
    public static let currentVersion: Int64 = 4
    /// The first keyed version.
    public static let firstKeyedVersion: Int64 = 2

    /// `SGLR<version>`, then per field a tag and its bytes: `i` + 8-byte big-endian
    /// two's-complement integer, `t` + 4-byte big-endian byte length + UTF-8 bytes, `b` + one
    /// byte 0 or 1. Fields in this order: prev_hash, seq, query_id, started_at, finished_at,
    /// consumer, dataset, dataset_version, policy_version, status, error_code, rows, cells, bytes,
    /// masked_cells, suppressed_groups, truncated, vm_steps, elapsed_us, cost_micros, currency,
    /// sql_sha256, sql, rewritten_sql; version 3 then adds purpose, epsilon_micros,
    /// client_address, holder, holder_share_ppm; version 4 then adds kind, members and extensions
    /// (`CanonicalEncoder.version4`). The record's `chain` picks the version (2, 3 or 4).
    public static func canonicalBytes(_ r: UsageRecord) -> [UInt8] {
        let version = min(max(r.chain, 2), 4)
        var encoder = CanonicalEncoder(magic: "SGLR\(version)")
        encoder.text(r.prevHash)
        encoder.integer(r.seq)
        encoder.text(r.queryID)
        encoder.integer(r.startedAt)
        encoder.integer(r.finishedAt)
        encoder.text(r.consumer)
        encoder.text(r.dataset)
        encoder.text(r.datasetVersion)
        encoder.text(r.policyVersion)
        encoder.text(r.status.rawValue)
        encoder.text(r.errorCode)
        encoder.integer(r.rows)
        encoder.integer(r.cells)
        encoder.integer(r.bytes)
        encoder.integer(r.maskedCells)
        encoder.integer(r.suppressedGroups)
        encoder.bool(r.truncated)
        encoder.integer(r.vmSteps)
        encoder.integer(r.elapsedMicroseconds)
        encoder.integer(r.costMicros)
        encoder.text(r.currency)
        encoder.text(r.sqlSHA256)
        encoder.text(r.sql)
        encoder.text(r.rewrittenSQL)
        if version >= 3 {
            encoder.text(r.purpose)
            encoder.integer(r.epsilonMicros)
            encoder.text(r.clientAddress)
            encoder.text(r.holder)
            encoder.integer(r.holderSharePPM)
        }
        if version >= 4 { encoder.version4(r) }
        return encoder.bytes
    }

    /// The keyed hash of a record (its `prevHash`, `seq` and `chain` set), lower-case hex.
    public static func keyedHash(of record: UsageRecord, key: SymmetricKey) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: canonicalBytes(record), using: key))
    }

    /// The version-1 hash (before issue 12): unkeyed SHA-256 of `prev_hash` and the export text
    /// of each field as `<length>:<bytes>`. Kept only to verify records written then.
    public static func legacyHash(of record: UsageRecord) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(record.prevHash.utf8))
        var fields = record.legacyFields
        fields.append(record.sql)
        fields.append(record.rewrittenSQL)
        for field in fields {
            let bytes = Array(field.utf8)
            hasher.update(data: Array("\(bytes.count):".utf8))
            hasher.update(data: bytes)
        }
        return Hex.encode(hasher.finalize())
    }
}

/// Typed, length-prefixed bytes for hashing (see `LedgerChain.canonicalBytes`).
struct CanonicalEncoder {
    private(set) var bytes: [UInt8]

    init(magic: String) { bytes = Array(magic.utf8) }

    mutating func integer(_ value: Int64) {
        bytes.append(UInt8(ascii: "i"))
        withUnsafeBytes(of: UInt64(bitPattern: value).bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func text(_ value: String) {
        bytes.append(UInt8(ascii: "t"))
        let utf8 = Array(value.utf8)
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: utf8)
    }

    mutating func bool(_ value: Bool) {
        bytes.append(UInt8(ascii: "b"))
        bytes.append(value ? 1 : 0)
    }
}

/// The ledger key: 32 random bytes in `<state>/usage.key`, mode 0600, created on first use and
/// never written anywhere else (not to logs, records or exports).
public enum LedgerKey {
    /// Reads the key, or creates it (exclusively, so two processes agree on one key). Returns the
    /// key and whether this call created it.
    public static func loadOrCreate(path: String) throws(LedgerError) -> (SymmetricKey, created: Bool) {
        if let key = try read(path: path) { return (key, false) }
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if descriptor < 0 {
            // Another process created it first: use theirs.
            if errno == EEXIST, let key = try read(path: path) { return (key, false) }
            throw LedgerError(.file, "cannot create the ledger key \(path)")
        }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(descriptor) == 0 else { throw LedgerError(.file, "cannot write the ledger key \(path)") }
        return (SymmetricKey(data: bytes), true)
    }

    public static func read(path: String) throws(LedgerError) -> SymmetricKey? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path), data.count == 32 else {
            throw LedgerError(.integrity, "the ledger key \(path) is unreadable or not 32 bytes")
        }
        return SymmetricKey(data: data)
    }
}

/// The anchor outside the ledger: `(node_id, seq, hash)` of the chain's tail, MACed with the
/// ledger key, in `<state>/usage.checkpoint`. Written after every group commit and on close, so
/// deleting the last records (or all of them) no longer verifies.
public struct LedgerCheckpoint: Sendable, Equatable {
    public let nodeID: String
    /// The last committed record's `seq` and `record_hash` (0 and the genesis hash when empty).
    public let seq: Int64
    public let hash: String
    /// The first record of the keyed chain; records before it are version 1 (pre-issue 12).
    public let firstKeyedSeq: Int64

    static let magic = "sandgate-ledger-checkpoint/1"

    public init(nodeID: String, seq: Int64, hash: String, firstKeyedSeq: Int64) {
        self.nodeID = nodeID
        self.seq = seq
        self.hash = hash
        self.firstKeyedSeq = firstKeyedSeq
    }

    /// `HMAC-SHA256(K, "SGCP1" ‖ t node_id ‖ i seq ‖ t hash ‖ i first_keyed_seq)`, hex.
    public func mac(key: SymmetricKey) -> String {
        var encoder = CanonicalEncoder(magic: "SGCP1")
        encoder.text(nodeID)
        encoder.integer(seq)
        encoder.text(hash)
        encoder.integer(firstKeyedSeq)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: encoder.bytes, using: key))
    }

    /// One line: `sandgate-ledger-checkpoint/1 <node_id> <seq> <hash> <first_keyed_seq> <mac>`.
    func line(key: SymmetricKey) -> String {
        "\(Self.magic) \(nodeID) \(seq) \(hash) \(firstKeyedSeq) \(mac(key: key))\n"
    }

    /// Parses and authenticates a checkpoint file; nil when it is missing.
    public static func read(path: String, key: SymmetricKey) throws(LedgerError) -> LedgerCheckpoint? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard parts.count == 6, parts[0] == magic, let seq = Int64(parts[2]), let first = Int64(parts[4]) else {
            throw LedgerError(.integrity, "the checkpoint \(path) is malformed")
        }
        let checkpoint = LedgerCheckpoint(nodeID: parts[1], seq: seq, hash: parts[3], firstKeyedSeq: first)
        guard constantTimeEqual(checkpoint.mac(key: key), parts[5]) else {
            throw LedgerError(.integrity, "the checkpoint \(path) does not verify under the ledger key")
        }
        return checkpoint
    }

    /// Replaces the checkpoint atomically (temporary file, fsync, rename) unless the one on disk
    /// is already at or past `seq`: several processes may append to one ledger.
    public func write(path: String, key: SymmetricKey) throws(LedgerError) {
        let lock = open(path + ".lock", O_RDWR | O_CREAT, 0o600)
        guard lock >= 0 else { throw LedgerError(.file, "cannot open \(path).lock") }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        if let current = try? Self.read(path: path, key: key), current.seq >= seq { return }
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw LedgerError(.file, "cannot write \(temporary)") }
        let bytes = Array(line(key: key).utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            throw LedgerError(.file, "cannot write the checkpoint \(path)")
        }
    }
}

/// Compares two strings in time independent of where they differ.
public func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in x.indices { difference |= x[index] ^ y[index] }
    return difference == 0
}

/// Why `usage verify` refused a ledger: the first record that does not verify (or nil when the
/// problem is the anchor itself) and what is wrong.
public struct LedgerProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let seq: Int64?
    public let reason: String

    public init(seq: Int64?, reason: String) {
        self.seq = seq
        self.reason = reason
    }

    public var description: String { seq.map { "seq \($0): \(reason)" } ?? reason }
}
