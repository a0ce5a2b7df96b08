import Crypto
import Foundation
import SandgateLedger
import SandgateSQLite
import SandgateSupport

/// A private, checked, hashed copy of a data holder's source file: queries only ever open this.
public struct Snapshot: Sendable, Hashable {
    /// Path of the snapshot file inside the state directory.
    public let path: String
    /// Hex SHA-256 of the snapshot file: the dataset version in usage records.
    public let sha256: String
}

/// Makes snapshots with SQLite's backup API into `<state>/snapshots/`, reusing the last one while
/// the source (and its WAL file) keep the same identity, size and modification time.
public enum Snapshotter {
    /// Returns the snapshot of `source` for `dataset`, creating it when the source changed.
    public static func snapshot(source: String, dataset: String, stateDirectory: String) throws(GatewayError) -> Snapshot {
        let directory = (stateDirectory as NSString).appendingPathComponent("snapshots")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw GatewayError(.internal, "cannot create the snapshot directory \(directory)")
        }
        let fingerprint = sourceFingerprint(source)
        let manifestPath = (directory as NSString).appendingPathComponent("\(dataset).manifest")
        if let manifest = try? String(contentsOfFile: manifestPath, encoding: .utf8) {
            let lines = manifest.split(separator: "\n").map(String.init)
            if lines.count == 3, lines[0] == fingerprint, FileManager.default.fileExists(atPath: lines[1]) {
                return Snapshot(path: lines[1], sha256: lines[2])
            }
        }
        let staging = (directory as NSString).appendingPathComponent(".\(dataset)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: .min ... .max)).partial")
        defer { try? FileManager.default.removeItem(atPath: staging) }
        do {
            let sourceConnection = try Connection(path: source, mode: .readOnly)
            let copy = try Connection(path: staging, mode: .readWriteCreate)
            try copy.restore(from: sourceConnection)
            // A WAL-mode source would make the copy WAL too; immutable opens need rollback mode.
            try copy.execute("PRAGMA journal_mode=DELETE")
            let check = try copy.scalar("PRAGMA quick_check")
            guard check == .text("ok") else {
                throw GatewayError(.unavailable, "the source of dataset '\(dataset)' failed its integrity check")
            }
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError(.unavailable, "cannot snapshot the source of dataset '\(dataset)': \(error)")
        }
        guard let hash = fileSHA256(staging) else {
            throw GatewayError(.internal, "cannot hash the snapshot of dataset '\(dataset)'")
        }
        let final = (directory as NSString).appendingPathComponent("\(dataset)-\(hash.prefix(16)).sqlite")
        do {
            if !FileManager.default.fileExists(atPath: final) {
                try FileManager.default.moveItem(atPath: staging, toPath: final)
                try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: final)
            }
            let manifestStaging = staging + ".manifest"
            try "\(fingerprint)\n\(final)\n\(hash)\n".write(toFile: manifestStaging, atomically: false, encoding: .utf8)
            guard rename(manifestStaging, manifestPath) == 0 else {
                throw GatewayError(.internal, "cannot replace \(manifestPath)")
            }
        } catch {
            throw GatewayError(.internal, "cannot store the snapshot of dataset '\(dataset)': \(error)")
        }
        return Snapshot(path: final, sha256: hash)
    }

    /// Identity, size and modification time of the source and its WAL file.
    static func sourceFingerprint(_ source: String) -> String {
        func describe(_ path: String) -> String {
            var info = stat()
            guard stat(path, &info) == 0 else { return "-" }
            return "\(info.st_dev):\(info.st_ino):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }
        return "\(source)|\(describe(source))|\(describe(source + "-wal"))"
    }

    /// Streams a file through SHA-256.
    public static func fileSHA256(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
            }
        } catch {
            return nil
        }
        return Hex.encode(hasher.finalize())
    }
}

/// The per-dataset secret behind `hash` masks and join tokens: 32 random bytes in
/// `<state>/keys/<dataset>.key`, mode 0600, created on first use and never written anywhere else.
public enum DatasetSecret {
    /// The key of `consumer`'s tokens and hash values on a `tokens: per_consumer` dataset:
    /// HKDF-SHA256 of the dataset's secret with the consumer's name as info. Deterministic (the
    /// same consumer gets the same tokens after a reload or restart), independent between
    /// consumers (HKDF outputs for different infos are unrelated without the secret), and the
    /// dataset's secret cannot be recovered from it. Never logged or stored.
    public static func consumerKey(datasetKey: [UInt8], consumer: String) -> [UInt8] {
        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: datasetKey), salt: Array("sandgate/tokens/per-consumer/v1".utf8),
            info: Array("consumer:\(consumer)".utf8), outputByteCount: 32)
        return derived.withUnsafeBytes { Array($0) }
    }

    public static func load(dataset: String, stateDirectory: String) throws(GatewayError) -> [UInt8] {
        let directory = (stateDirectory as NSString).appendingPathComponent("keys")
        let path = (directory as NSString).appendingPathComponent("\(dataset).key")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw GatewayError(.internal, "cannot create the key directory")
        }
        var fresh = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in fresh.indices { fresh[index] = generator.next() }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if descriptor >= 0 {
            let written = fresh.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            fsync(descriptor)
            close(descriptor)
            guard written == 32 else { throw GatewayError(.internal, "cannot write the key of dataset '\(dataset)'") }
            return fresh
        }
        // Another process may have created the file a moment ago and still be writing it.
        for attempt in 0..<20 {
            if let data = FileManager.default.contents(atPath: path), data.count == 32 { return Array(data) }
            if attempt < 19 { usleep(10_000) }
        }
        throw GatewayError(.internal, "the key file of dataset '\(dataset)' is unreadable or not 32 bytes")
    }
}
