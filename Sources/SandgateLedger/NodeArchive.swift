import Crypto
import Foundation
import SandgateSQLite
import SandgateSupport

/// An archive of a shared ledger (`usage archive` on PostgreSQL): one SQLite file with the
/// archived prefix of every node's chain and, per node, the boundaries it lies between — the
/// previous archive's end (or the genesis) and its own end, each MACed with the node's name, so
/// the file verifies on its own with the ledger key (docs/CONTRACT.md §7, Archives).
public enum NodeArchive {
    static let schema = """
        CREATE TABLE usage (node_id TEXT NOT NULL, seq INTEGER NOT NULL, \(Ledger.recordColumnDefinitions), PRIMARY KEY (node_id, seq));
        CREATE TABLE usage_archives (
            node_id TEXT NOT NULL, through_seq INTEGER NOT NULL, through_hash TEXT NOT NULL, file TEXT NOT NULL,
            mac TEXT NOT NULL, PRIMARY KEY (node_id, through_seq)
        );
        """

    /// `HMAC-SHA256(K, "SGAR2" ‖ t node_id ‖ i through_seq ‖ t through_hash)`: a boundary of one
    /// node's chain that cannot be moved, or given to another node, without the key.
    public static func boundaryMAC(node: String, seq: Int64, hash: String, key: SymmetricKey) -> String {
        var encoder = CanonicalEncoder(magic: "SGAR2")
        encoder.text(node)
        encoder.integer(seq)
        encoder.text(hash)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: encoder.bytes, using: key))
    }

    /// A new archive file being filled (mode 0600, one transaction until `finish`).
    public final class Writer {
        private let connection: Connection
        private let insert: Statement
        private let key: SymmetricKey
        public let path: String

        public init(path: String, key: SymmetricKey) throws(LedgerError) {
            guard !FileManager.default.fileExists(atPath: path) else { throw LedgerError(.conflict, "\(path) exists already") }
            self.path = path
            self.key = key
            do {
                connection = try Connection(path: path, mode: .readWriteCreate)
                chmod(path, 0o600)
                try connection.execute(NodeArchive.schema)
                try connection.execute("BEGIN")
                guard let statement = try connection.prepare("INSERT INTO usage (node_id, \(Ledger.storedColumns)) VALUES (\(Array(repeating: "?", count: 35).joined(separator: ",")))") else {
                    throw LedgerError(.file, "cannot prepare the archive's insert")
                }
                insert = statement
            } catch let error as LedgerError {
                throw error
            } catch {
                throw LedgerError(.file, "cannot create the archive \(path): \(error)")
            }
        }

        public func add(_ record: UsageRecord) throws(LedgerError) {
            do {
                insert.reset()
                try insert.bind([.text(record.nodeID)] + Ledger.columnValues(record))
                _ = try insert.step()
            } catch {
                throw LedgerError(.file, "cannot write to the archive \(path): \(error.message)")
            }
        }

        /// Records where `node`'s archived records begin (`start`: the previous boundary, or seq 0)
        /// and end.
        public func bound(node: String, start: (seq: Int64, hash: String), end: (seq: Int64, hash: String)) throws(LedgerError) {
            do {
                for (seq, hash) in [start, end] where seq > 0 {
                    _ = try connection.rows("INSERT OR IGNORE INTO usage_archives VALUES (?, ?, ?, '', ?)", [
                        .text(node), .integer(seq), .text(hash), .text(NodeArchive.boundaryMAC(node: node, seq: seq, hash: hash, key: key)),
                    ])
                }
            } catch {
                throw LedgerError(.file, "cannot write to the archive \(path): \(error.message)")
            }
        }

        /// Commits the file (durable before the ledger forgets the records).
        public func finish() throws(LedgerError) {
            do { try connection.execute("COMMIT") } catch { throw LedgerError(.file, "cannot commit the archive \(path): \(error.message)") }
        }

        /// Abandons a partial file.
        public func discard() {
            try? connection.execute("ROLLBACK")
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Whether the file at `path` is a node archive (its `usage` table has `node_id`).
    public static func isNodeArchive(path: String) -> Bool {
        guard let connection = try? Connection(path: path, mode: .readOnly),
              let rows = try? connection.rows("SELECT 1 FROM pragma_table_info('usage') WHERE name = 'node_id'") else { return false }
        return !rows.isEmpty
    }

    /// Verifies a node archive with the key: for each node, its records chain from its start
    /// boundary (or the genesis) to its end boundary; every boundary's MAC verifies.
    public static func verify(path: String, key: SymmetricKey) throws(LedgerError) -> LedgerProblem? {
        let archive: Connection
        let boundaries: [[SQLValue]]
        do {
            archive = try Connection(path: path, mode: .readOnly)
            boundaries = try archive.rows("SELECT node_id, through_seq, through_hash, mac FROM usage_archives ORDER BY node_id, through_seq")
        } catch {
            throw LedgerError(.file, "cannot read the archive \(path): \(error.message)")
        }
        var marks: [String: [(seq: Int64, hash: String)]] = [:]
        for row in boundaries {
            guard case .text(let node) = row[0], case .integer(let seq) = row[1], case .text(let hash) = row[2], case .text(let mac) = row[3],
                  constantTimeEqual(boundaryMAC(node: node, seq: seq, hash: hash, key: key), mac) else {
                return LedgerProblem(seq: nil, reason: "an archive boundary does not verify under the ledger key")
            }
            marks[node, default: []].append((seq, hash))
        }
        if marks.isEmpty { return LedgerProblem(seq: nil, reason: "the archive has no end boundary") }
        do {
            let nodes = try archive.rows("SELECT DISTINCT node_id FROM usage").compactMap { row -> String? in
                if case .text(let node) = row[0] { return node }
                return nil
            }
            if let stray = nodes.first(where: { marks[$0] == nil }) {
                return LedgerProblem(seq: nil, reason: "node \(stray): records without boundaries")
            }
            for node in marks.keys.sorted() {
                guard let nodeMarks = marks[node], let end = nodeMarks.last else { continue }
                let start = nodeMarks.count > 1 ? nodeMarks[nodeMarks.count - 2] : (seq: Int64(0), hash: HashChain.genesisHash)
                var verifier = ChainVerifier(key: key, anchorSeq: end.seq, after: start)
                guard let statement = try archive.prepare("SELECT \(Ledger.storedColumns) FROM usage WHERE node_id = ? ORDER BY seq") else { continue }
                try statement.bind([.text(node)])
                while try statement.step() {
                    var record = Ledger.record(from: statement)
                    record.nodeID = node
                    if let problem = verifier.check(record, chain: record.chain) {
                        return LedgerProblem(seq: problem.seq, reason: "node \(node): \(problem.reason)")
                    }
                }
                if let problem = verifier.finish(anchorHash: end.hash) {
                    return LedgerProblem(seq: problem.seq, reason: "node \(node): \(problem.reason)")
                }
            }
        } catch {
            throw LedgerError(.file, "cannot read the archive \(path): \(error.message)")
        }
        return nil
    }
}
