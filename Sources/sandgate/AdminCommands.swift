import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateFixtures
import SandgateLedger
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
            for name in loaded.datasets.keys.sorted() {
                guard let policy = loaded.datasets[name] else { continue }
                problems += DataValidator.validate(policy, databasePath: policy.sourcePath)
            }
            // Warnings (risky but valid choices) are printed and never change the exit status.
            for warning in loaded.warnings { writeOut("\(warning.location): warning: \(warning.message)\n") }
            for problem in problems { writeOut(problem.description + "\n") }
            if !problems.isEmpty {
                throw Failure("\(problems.count) problem(s) found")
            }
            writeOut("ok: \(loaded.datasets.count) dataset(s), \(loaded.consumers.consumers.count) consumer(s)\n")
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
            for problem in problems { writeOut(problem.description + "\n") }
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
                        writeOut(diagnostic.description + "\n")
                    }
                }
                for result in PolicyTestRunner.run(file, gateway: gateway) {
                    if let failure = result.failure {
                        failed += 1
                        let testCase = result.testCase
                        writeOut("""
                            FAIL \(result.dataset): \(testCase.name)  (\(testCase.location))
                              query:    \(testCase.query.replacingOccurrences(of: "\n", with: "\n            "))
                              consumer: \(testCase.consumer)
                              expected: \(testCase.expectation.summary)
                              actual:   \(result.actual)
                              problem:  \(failure)

                            """)
                    } else {
                        passed += 1
                        writeOut("ok   \(result.dataset): \(result.testCase.name)\n")
                    }
                }
            }
            writeOut("policy test: \(passed) passed, \(failed) failed\(problems.isEmpty ? "" : ", \(problems.count) problem(s) in test files")\n")
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
            for change in changes { writeOut(change.description + "\n") }
            let wider = changes.filter { $0.direction == .wider }.count
            let narrower = changes.filter { $0.direction == .narrower }.count
            writeOut(changes.isEmpty ? "policy diff: no change in exposure\n"
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
                for problem in problems { FileHandle.standardError.write(Data((problem.description + "\n").utf8)) }
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

struct FixturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fixtures", abstract: "Synthetic test data.", subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Write the deterministic synthetic retail dataset (same --rows, same bytes).")

        @Option(help: "Number of customers (each has 1–7 orders).")
        var rows: Int

        @Option(help: "Output SQLite file (replaced).")
        var out: String

        func validate() throws {
            guard (1...50_000_000).contains(rows) else { throw ValidationError("--rows must be between 1 and 50000000") }
        }

        func run() throws {
            do {
                let summary = try RetailFixture.generate(customers: rows, path: out)
                writeOut("wrote \(out): \(summary.customers) customers, \(summary.orders) orders\n")
            } catch {
                throw Failure("cannot write \(out): \(error)")
            }
        }
    }
}

struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "The usage ledger.", subcommands: [Export.self, Invoice.self, Verify.self])

    /// The ledger in the state directory (created empty when missing).
    static func ledger(_ common: CommonOptions) throws -> Ledger {
        do {
            try FileManager.default.createDirectory(atPath: common.state, withIntermediateDirectories: true)
            return try Ledger(path: (common.state as NSString).appendingPathComponent("usage.sqlite"))
        } catch {
            throw Failure("\(error)")
        }
    }


    struct Invoice: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "invoice",
            abstract: "One line per consumer × dataset for a period (UTC days, both inclusive); refuses a ledger whose chain does not verify.")

        @OptionGroup var common: CommonOptions

        @OptionGroup var period: PeriodOptions

        @Option(help: "csv, jsonl or json.")
        var format: OutputFormat = .csv

        func validate() throws {
            try format.require(in: [.csv, .jsonl, .json])
        }

        func run() throws {
            let ledger = try UsageCommand.ledger(common)
            let (start, end) = period.range
            var records: [UsageRecord] = []
            do {
                if let problem = try ledger.verify() { throw Failure("internal: the ledger does not verify (\(problem)); no invoice from a tampered ledger") }
                try ledger.records(from: start, to: end) { records.append($0); return true }
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
            let lines = SandgateLedger.Invoice.lines(from: records)
            let text = switch format {
            case .json: SandgateLedger.Invoice.json(lines, from: period.firstDay, to: period.lastDay)
            case .jsonl: SandgateLedger.Invoice.jsonLines(lines)
            default: SandgateLedger.Invoice.csv(lines)
            }
            try period.write(text)
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "export", abstract: "Export usage records (dates are UTC days, both inclusive).")

        @OptionGroup var common: CommonOptions

        @OptionGroup var period: PeriodOptions

        @Option(help: "Only this consumer.")
        var consumer: String?

        @Option(help: "Only this dataset.")
        var dataset: String?

        @Option(help: "csv, jsonl (with the SQL) or json (an array of the jsonl objects).")
        var format: OutputFormat = .csv

        func validate() throws {
            try format.require(in: [.csv, .jsonl, .json])
        }

        func run() throws {
            let (start, end) = period.range
            let ledger = try UsageCommand.ledger(common)
            var output = format == .csv ? UsageExport.csvHeader : format == .json ? "[" : ""
            var first = true
            do {
                try ledger.records(from: start, to: end, consumer: consumer, dataset: dataset) { record in
                    switch format {
                    case .csv: output += UsageExport.csvLine(record)
                    case .json:
                        output += (first ? "\n" : ",\n") + UsageExport.jsonLine(record).dropLast()
                        first = false
                    default: output += UsageExport.jsonLine(record)
                    }
                    return true
                }
            } catch {
                throw Failure("\(error)")
            }
            if format == .json { output += first ? "]\n" : "\n]\n" }
            try period.write(output)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check the ledger's keyed hash chain and its checkpoint (edits, deletions, reordering, truncation, recomputation).")

        @OptionGroup var common: CommonOptions

        func run() throws {
            let path = (common.state as NSString).appendingPathComponent("usage.sqlite")
            guard FileManager.default.fileExists(atPath: path) else { throw Failure("no ledger at \(path)") }
            // A check must not repair what it checks: without its key a ledger cannot verify,
            // and opening it would create a new key.
            let keyPath = (path as NSString).deletingPathExtension + ".key"
            guard FileManager.default.fileExists(atPath: keyPath) else {
                throw Failure("the ledger does not verify: its key \(keyPath) is missing")
            }
            do {
                let ledger = try Ledger(path: path)
                if let problem = try ledger.verify() {
                    throw Failure("the ledger does not verify: \(problem)")
                }
                writeOut("ok: the keyed hash chain and its checkpoint verify\n")
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
        }
    }
}

/// `--from`, `--to` (UTC days, both inclusive) and `--out`, shared by `usage export` and `usage invoice`.
struct PeriodOptions: ParsableArguments {
    @Option(help: "First day, YYYY-MM-DD (default: the first day of the current month, UTC).")
    var from: String?

    @Option(help: "Last day, YYYY-MM-DD, inclusive (default: today, UTC).")
    var to: String?

    @Option(help: "Write to this file instead of standard output.")
    var out: String?

    /// Today as `YYYY-MM-DD` (UTC).
    static var today: String { String(Timestamp.rfc3339(Int64(Date().timeIntervalSince1970 * 1_000_000)).prefix(10)) }

    var firstDay: String { from ?? String(Self.today.prefix(8)) + "01" }
    var lastDay: String { to ?? Self.today }

    func validate() throws {
        guard let first = Timestamp.startOfDay(firstDay) else { throw ValidationError("--from must be a date YYYY-MM-DD") }
        guard let last = Timestamp.startOfDay(lastDay) else { throw ValidationError("--to must be a date YYYY-MM-DD") }
        guard first <= last else { throw ValidationError("--from \(firstDay) is after --to \(lastDay)") }
    }

    /// Microseconds from the start of the first day to the end of the last (validated above).
    var range: (Int64, Int64) {
        (Timestamp.startOfDay(firstDay) ?? 0, (Timestamp.startOfDay(lastDay) ?? 0) + 86_400_000_000)
    }

    /// Writes to `--out`, or to standard output.
    func write(_ text: String) throws {
        guard let out else { return writeOut(text) }
        do {
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        } catch {
            throw Failure("cannot write \(out): \(error)")
        }
    }
}

/// One spelling per output format across commands (`query`, `usage export`, `usage invoice`);
/// each command accepts the ones that make sense for it.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    /// An aligned table for terminals (`query` only).
    case table
    /// RFC 4180 CSV with a header line.
    case csv
    /// One JSON object per line.
    case jsonl
    /// One JSON document.
    case json

    func require(in allowed: [OutputFormat]) throws {
        guard allowed.contains(self) else {
            throw ValidationError("--format must be \(allowed.map(\.rawValue).joined(separator: ", ")) here, not \(rawValue)")
        }
    }
}
