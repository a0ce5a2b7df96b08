import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateLedger
import SandgateLedgerPostgres
import SandgatePolicy

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Work with policy files.", subcommands: [Check.self, Test.self, Diff.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate every policy file; print each problem as file:line:column: message.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "Policies directory (default: --policies).")
        var directory: String?

        func run() throws {
            let loaded = PolicyLoader.load(directory: directory ?? common.policies)
            var problems = loaded.diagnostics
            if case .failure(let errors) = GatewaySettings.load(directory: directory ?? common.policies, isValidLedger: { PostgresLedgerURL($0) != nil }) {
                problems += errors.diagnostics
            }
            for name in loaded.datasets.keys.sorted() {
                guard let policy = loaded.datasets[name] else { continue }
                problems += DataValidator.validate(policy, databasePath: policy.sourcePath)
            }
            // Warnings (risky but valid choices) are printed and never change the exit status.
            for warning in loaded.warnings { try writeOut("\(warning.location): warning: \(warning.message)\n") }
            for problem in problems { try writeOut(problem.description + "\n") }
            if !problems.isEmpty {
                throw Failure("\(problems.count) problem(s) found")
            }
            try writeOut("ok: \(loaded.datasets.count) dataset(s), \(loaded.consumers.consumers.count) consumer(s)\n")
        }
    }
}

extension PolicyCommand {
    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test",
            abstract: "Run the cases of <policies>/tests/<dataset>.yaml through the gateway; print each failing case; exit 1 on any failure.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "Policies directory (default: --policies); cases are read from its tests/ directory.")
        var directory: String?

        func run() throws {
            let policies = directory ?? common.policies
            let (files, problems) = PolicyTestLoader.load(policiesDirectory: policies)
            for problem in problems { try writeOut(problem.description + "\n") }
            guard !files.isEmpty || !problems.isEmpty else {
                throw Failure("no test files in \((policies as NSString).appendingPathComponent(PolicyTestLoader.directoryName)) (write <dataset>.yaml there; see the operator guide)")
            }
            // A scratch state directory: test queries never reach the real ledger or its quotas.
            let state = NSTemporaryDirectory() + "sandgate-policy-test-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: state) }
            let gateway: Gateway
            do {
                gateway = try Gateway(configuration: GatewayConfiguration(policiesDirectory: policies, stateDirectory: state, poolSize: 1),
                                      logger: Logger(label: "sandgate.policy-test", factory: { _ in SwiftLogNoOpLogHandler() }))
            } catch {
                throw Failure("\(error.code.rawValue): \(error.message)")
            }
            defer { gateway.ledger.close() }
            var passed = 0, failed = 0
            for file in files {
                if gateway.runtime(file.dataset) == nil {
                    // Why the dataset is not served, before its cases fail for that reason.
                    func standard(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }
                    let policyFile = standard((policies as NSString).appendingPathComponent(file.dataset + ".yaml"))
                    for diagnostic in gateway.diagnostics where standard(diagnostic.location.file) == policyFile {
                        try writeOut(diagnostic.description + "\n")
                    }
                }
                for result in PolicyTestRunner.run(file, gateway: gateway) {
                    if let failure = result.failure {
                        failed += 1
                        let testCase = result.testCase
                        try writeOut("""
                            FAIL \(result.dataset): \(testCase.name)  (\(testCase.location))
                              query:    \(testCase.query.replacingOccurrences(of: "\n", with: "\n            "))
                              consumer: \(testCase.consumer)
                              expected: \(testCase.expectation.summary)
                              actual:   \(result.actual)
                              problem:  \(failure)

                            """)
                    } else {
                        passed += 1
                        try writeOut("ok   \(result.dataset): \(result.testCase.name)\n")
                    }
                }
            }
            try writeOut("policy test: \(passed) passed, \(failed) failed\(problems.isEmpty ? "" : ", \(problems.count) problem(s) in test files")\n")
            if failed > 0 || !problems.isEmpty { throw Failure("\(failed) case(s) failed") }
        }
    }
}

extension PolicyCommand {
    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "diff",
            abstract: "What an edit changes in exposure, most dangerous first; exit 3 when exposure grows.",
            discussion: """
                OLD and NEW are two policy files (a dataset's or consumers.yaml) or two policies directories.
                With --git REV, the policies directory (NEW, default --policies) is compared with its version at REV.
                Exit codes: 0 nothing grows, 3 exposure grows, 1 the new version does not validate.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "Compare the policies directory at this git revision (OLD) with the working tree.")
        var git: String?

        @Argument(help: "OLD and NEW (files or directories); with --git, at most the directory.")
        var paths: [String] = []

        func validate() throws {
            if let git {
                guard paths.count <= 1 else { throw ValidationError("with --git give at most the policies directory") }
                // A revision is passed to git as an argument: one starting with '-' would be an option.
                guard !git.isEmpty, !git.hasPrefix("-"), !git.contains(":") else { throw ValidationError("--git needs a revision such as HEAD or main") }
            } else {
                guard paths.count == 2 else { throw ValidationError("give OLD and NEW (two files or two directories), or --git REV") }
            }
        }

        func run() throws {
            let old: PolicyDiff.Side, new: PolicyDiff.Side
            if let git {
                let directory = paths.first ?? common.policies
                let checkout = try GitCheckout(revision: git, directory: directory)
                defer { checkout.remove() }
                old = try Self.side(checkout.path, role: "the version at \(git)")
                new = try Self.side(directory, role: "the working tree")
            } else {
                old = try Self.side(paths[0], role: "OLD")
                new = try Self.side(paths[1], role: "NEW")
            }
            let changes = PolicyDiff.compare(old: old, new: new)
            for change in changes { try writeOut(change.description + "\n") }
            let wider = changes.filter { $0.direction == .wider }.count
            let narrower = changes.filter { $0.direction == .narrower }.count
            try writeOut(changes.isEmpty ? "policy diff: no change in exposure\n"
                     : "policy diff: \(wider) change(s) expose more, \(narrower) expose less, \(changes.count - wider - narrower) other\n")
            if wider > 0 { throw ExitCode(3) }
        }

        /// One side: a directory, `consumers.yaml`, or one dataset file (named by its `dataset:`).
        static func side(_ path: String, role: String) throws -> PolicyDiff.Side {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw Failure("\(role): no file or directory \(path)") }
            var problems: [PolicyDiagnostic] = []
            var side = PolicyDiff.Side(datasets: [:], consumers: nil)
            if isDirectory.boolValue {
                let loaded = PolicyLoader.load(directory: path, requireSources: false)
                problems = loaded.diagnostics
                side = PolicyDiff.Side(datasets: loaded.datasets, consumers: loaded.consumerFile == nil ? nil : loaded.consumers)
            } else if (path as NSString).lastPathComponent == PolicyLoader.consumersFileName {
                let file = PolicyLoader.loadConsumers(path: path, knownDatasets: [])
                problems = file.diagnostics
                side.consumers = file.directory
            } else {
                switch PolicyLoader.loadDataset(path: path, anyFileName: true, requireSource: false) {
                case .success(let policy): side.datasets[policy.name] = policy
                case .failure(let errors): problems = errors.diagnostics
                }
            }
            guard problems.isEmpty else {
                for problem in problems { writeError(problem.description + "\n") }
                throw Failure("\(role) does not validate (\(problems.count) problem(s)); `sandgate policy check` explains them")
            }
            return side
        }
    }
}

/// The policies directory as it was at a git revision, written beside the real one (so that
/// relative `source:` paths resolve to the same files) and removed afterwards.
struct GitCheckout {
    let path: String

    init(revision: String, directory: String) throws {
        let prefix = try Self.git(["rev-parse", "--show-prefix"], in: directory).trimmingCharacters(in: .whitespacesAndNewlines)
        let names = try Self.git(["ls-tree", "--full-tree", "--name-only", "\(revision):\(prefix)"], in: directory)
            .split(separator: "\n").map(String.init).filter { $0.hasSuffix(".yaml") }
        let parent = (URL(fileURLWithPath: directory).standardizedFileURL.path as NSString).deletingLastPathComponent
        path = (parent as NSString).appendingPathComponent(".sandgate-diff-" + UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        for name in names {
            let text = try Self.git(["show", "\(revision):\(prefix)\(name)"], in: directory)
            try text.write(toFile: (path as NSString).appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    static func git(_ arguments: [String], in directory: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw Failure("cannot run git: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure("git \(arguments.joined(separator: " ")) failed: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
