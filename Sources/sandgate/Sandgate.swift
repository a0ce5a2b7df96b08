import ArgumentParser
import Foundation
import Logging
import SandgateCore

/// The `sandgate` command line (DESIGN.md §4).
struct Sandgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandgate",
        abstract: "A data-sandbox query gateway: masked, limited, metered SQL over published SQLite datasets.",
        subcommands: [
            QueryCommand.self, ExplainCommand.self, DescribeCommand.self, PolicyCommand.self, FixturesCommand.self, UsageCommand.self,
            ServeCommand.self, ConsumerCommand.self,
        ])
}

/// `--policies` and `--state`, shared by every command.
struct CommonOptions: ParsableArguments {
    @Option(help: "Directory of policy files and consumers.yaml.")
    var policies = "Policies"

    @Option(help: "State directory: snapshots, dataset keys and the usage ledger.")
    var state = "var"

    @Flag(help: "Log gateway events to stderr.")
    var verbose = false

    func gateway() throws -> Gateway {
        var logger = Logger(label: "sandgate")
        logger.logLevel = verbose ? .info : .error
        do {
            return try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: state), logger: logger)
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
            FileHandle.standardError.write(Data("error: \(failure.description)\n".utf8))
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
            FileHandle.standardError.write(Data((Sandgate.fullMessage(for: error) + "\n").utf8))
            exit(code == .validationFailure || code.rawValue == 64 ? 2 : (error is CleanExit ? 0 : 2))
        }
    }
}

/// Writes to standard output without Swift's line buffering surprises for large outputs.
func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}
