import ArgumentParser
import Foundation
import SandgateCore
import SandgateFixtures
import SandgateLedger
import SandgatePolicy

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
