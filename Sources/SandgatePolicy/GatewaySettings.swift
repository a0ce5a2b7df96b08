import Foundation
import Yams

/// `sandgate.yaml` in the policies directory: settings every node of a deployment shares with
/// the policies (copied with them), read at start. Today one key: `ledger`, the shared
/// PostgreSQL ledger's URL. A command-line `--ledger` wins over it.
public struct GatewaySettings: Sendable, Equatable {
    public static let fileName = "sandgate.yaml"

    /// The ledger URL as written (checked by `load`'s `isValidLedger`).
    public var ledger: String?

    public init(ledger: String? = nil) {
        self.ledger = ledger
    }

    /// The settings of `directory` (none when it has no `sandgate.yaml`), or every problem found
    /// with its `file:line:column`. `isValidLedger` checks a URL's form (the policy layer does not
    /// know the ledger stores).
    public static func load(directory: String, isValidLedger: (String) -> Bool) -> Result<GatewaySettings, PolicyErrors> {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return .success(GatewaySettings()) }
        let root: Node
        switch PolicyLoader.document(path: path) {
        case .success(let loaded): root = loaded.0
        case .failure(let errors): return .failure(errors)
        }
        var reader = YAMLReader(file: path)
        var settings = GatewaySettings()
        if let top = reader.fields(root, what: fileName, allowed: ["ledger"], whenEmpty: "write `ledger: postgres://user@host:port/database`, or delete the file") {
            if let entry = top["ledger"], let url = reader.string(entry.value, what: "ledger") {
                if isValidLedger(url) {
                    settings.ledger = url
                } else {
                    reader.report(entry.value, "ledger must be postgres://user@host:port/database, with no ?query or #fragment (connection options such as sslmode are not supported; omit the key for the embedded SQLite ledger)")
                }
            }
        }
        return reader.diagnostics.isEmpty ? .success(settings) : .failure(PolicyErrors(reader.diagnostics))
    }
}
