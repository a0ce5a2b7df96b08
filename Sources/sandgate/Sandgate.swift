import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateLedger
import SandgateLedgerPostgres
import SandgatePolicy

/// The `sandgate` command line (DESIGN.md §4).
struct Sandgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandgate",
        abstract: "A data-sandbox query gateway: masked, limited, metered SQL over published SQLite datasets.",
        subcommands: [
            QueryCommand.self, ExplainCommand.self, DescribeCommand.self, PolicyCommand.self, FixturesCommand.self, UsageCommand.self,
            ServeCommand.self, ConsumerCommand.self, TraceCommand.self,
        ])
}

/// `--policies` and `--state`, shared by every command.
struct CommonOptions: ParsableArguments {
    @Option(help: "Directory of policy files and consumers.yaml.")
    var policies = "Policies"

    @Option(help: "State directory: snapshots, dataset keys and the usage ledger.")
    var state = "var"

    @Option(help: "The usage ledger: postgres://user@host:port/database for one ledger shared by many nodes (default: `ledger:` in <policies>/sandgate.yaml, else <state>/usage.sqlite).")
    var ledger: String?

    @Option(help: "This gateway node's name in a shared PostgreSQL ledger; it owns its own hash chain (default: the host name). Not for the SQLite ledger, which has its own node id.")
    var nodeID: String?

    @Flag(help: "Log gateway events to stderr.")
    var verbose = false

    func validate() throws {
        if let ledger, PostgresLedgerURL(ledger) == nil {
            throw ValidationError("--ledger must be \(PostgresLedgerURL.expectedForm)")
        }
        // Ignoring it would let an operator believe records carry a name they do not. A broken
        // sandgate.yaml is reported by the command itself.
        if nodeID != nil, case .some(.none) = try? ledgerURL() {
            throw ValidationError("""
                --node-id applies to a PostgreSQL ledger (--ledger postgres://… or `ledger:` in \(GatewaySettings.fileName)); \
                the SQLite ledger \((state as NSString).appendingPathComponent("usage.sqlite")) has its own node id, \
                chosen when it was created (the node_id of `sandgate usage export --format jsonl` and of `usage receipt`)
                """)
        }
    }

    /// `usage.key` in the state directory: the SQLite ledger's key, and the PostgreSQL ledger's
    /// (the same file on every node of a cluster).
    var keyPath: String { (state as NSString).appendingPathComponent("usage.key") }

    /// The node id in force: `--node-id`, else the host name (cut to a valid length).
    var node: String {
        let name = nodeID ?? ProcessInfo.processInfo.hostName
        return name.isEmpty ? "node" : String(decoding: Array(name.utf8.prefix(UsageRecord.nameLimit)), as: UTF8.self)
    }

    /// The shared ledger's URL in force: `--ledger`, else `ledger:` in `<policies>/sandgate.yaml`;
    /// nil for the embedded SQLite ledger. A broken `sandgate.yaml` is an error, never a silent
    /// fallback to another ledger (records would land where no one looks).
    func ledgerURL() throws(LedgerError) -> PostgresLedgerURL? {
        if let ledger { return PostgresLedgerURL(ledger) }
        switch GatewaySettings.load(directory: policies, isValidLedger: { PostgresLedgerURL($0) != nil }) {
        case .success(let settings): return settings.ledger.flatMap(PostgresLedgerURL.init)
        case .failure(let errors): throw LedgerError(.unavailable, "\(errors)")
        }
    }

    /// Whether the ledger in force is a shared one (`--ledger` or `sandgate.yaml`).
    func usesSharedLedger() throws -> Bool {
        do { return try ledgerURL() != nil } catch { throw Failure("bad_request: \(error.message)") }
    }

    /// Opens the ledger in force (`ledgerURL`), or the SQLite file in the state directory.
    func openLedger(logger: Logger = Logger(label: "sandgate")) throws(LedgerError) -> any LedgerStore {
        do {
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        } catch {
            throw LedgerError(.file, "cannot create the state directory \(state)")
        }
        if let url = try ledgerURL() {
            return try PostgresLedgerStore(url: url, nodeID: node, keyPath: keyPath, logger: logger,
                                           progress: TerminalProgress.ledger("building the ledger's running totals"))
        }
        return try Ledger(path: (state as NSString).appendingPathComponent("usage.sqlite"),
                          progress: TerminalProgress.ledger("building the ledger's running totals"))
    }

    func gateway() throws -> Gateway {
        var logger = Logger(label: "sandgate")
        logger.logLevel = verbose ? .info : .error
        let options = self
        do {
            return try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: policies, stateDirectory: state,
                ledger: { [logger] () throws(LedgerError) in try options.openLedger(logger: logger) }), logger: logger)
        } catch {
            throw Failure("\(error.code.rawValue): \(error.message)")
        }
    }
}

/// A refused or failed request: printed on stderr, exit code 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Exit codes of DESIGN.md §4: 0 ok, 1 refused or failed, 2 bad usage.
@main
enum Main {
    static func main() async {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        do {
            var command = try Sandgate.parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch let failure as Failure {
            writeError("error: \(failure.description)\n")
            exit(1)
        } catch let code as ExitCode where code != .validationFailure {
            // A command's own status (`policy diff` exits 3 when exposure grows).
            exit(code.rawValue)
        } catch {
            let code = Sandgate.exitCode(for: error)
            if code == .success {
                print(Sandgate.fullMessage(for: error))
                exit(0)
            }
            writeError(Sandgate.fullMessage(for: error) + "\n")
            exit(code == .validationFailure || code.rawValue == 64 ? 2 : (error is CleanExit ? 0 : 2))
        }
    }
}
