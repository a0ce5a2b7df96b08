import Crypto
import ArgumentParser
import Foundation
import SandgateCore
import SandgateFixtures
import SandgateLedger
import SandgateLedgerPostgres
import SandgatePolicy
import SandgateSupport

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
                try writeOut("wrote \(out): \(summary.customers) customers, \(summary.orders) orders\n")
            } catch {
                throw Failure("cannot write \(out): \(error)")
            }
        }
    }
}

struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "The usage ledger.", subcommands: [Export.self, Invoice.self, Settle.self, Verify.self, ReceiptCommand.self, CheckReceipt.self, Archive.self, Quota.self])

    /// The ledger `--ledger` names, or the one in the state directory (created empty when missing).
    static func ledger(_ common: CommonOptions) throws -> any LedgerStore {
        do {
            return try common.openLedger()
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
            // Every charge is billed, whether or not its dataset is still published (red team: an
            // unpublished dataset, or a wrong --policies, made charges vanish). A refusal on an
            // unknown dataset is recorded with dataset "" and never becomes a line.
            let lines = SandgateLedger.Invoice.lines(from: records)
            let text = switch format {
            case .json: SandgateLedger.Invoice.json(lines, from: period.firstDay, to: period.lastDay)
            case .jsonl: SandgateLedger.Invoice.jsonLines(lines)
            default: SandgateLedger.Invoice.csv(lines)
            }
            try period.write(text)
        }
    }

    struct Settle: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "settle",
            abstract: "One statement per holder for a period (UTC days, both inclusive): per dataset and purpose, gross, platform fee and holder revenue; refuses a ledger whose chain does not verify.")

        @OptionGroup var common: CommonOptions

        @OptionGroup var period: PeriodOptions

        @Option(help: "csv or json.")
        var format: OutputFormat = .csv

        @Option(help: "Only this holder's statement (a dataset's `owner`).")
        var holder: String?

        func validate() throws {
            try format.require(in: [.csv, .json])
        }

        func run() throws {
            let ledger = try UsageCommand.ledger(common)
            let (start, end) = period.range
            var records: [UsageRecord] = []
            do {
                if let problem = try ledger.verify() { throw Failure("internal: the ledger does not verify (\(problem)); no statement from a tampered ledger") }
                try ledger.records(from: start, to: end) { records.append($0); return true }
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
            // The same selection as `usage invoice`, so statements and invoices sum to the same total.
            var settlement = Settlement.settle(records: records)
            if let holder { settlement.statements.removeAll { $0.holder != holder } }
            try period.write(format == .json ? settlement.json(from: period.firstDay, to: period.lastDay)
                                             : settlement.csv(from: period.firstDay, to: period.lastDay))
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
            // Streamed in 1 MiB pieces: an export of millions of records is never one string.
            let sink = try period.sink()
            var output = format == .csv ? UsageExport.csvHeader : format == .json ? "[" : ""
            var first = true
            var failedWrite: (any Error)?
            do {
                try ledger.records(from: start, to: end, consumer: consumer, dataset: dataset) { record in
                    switch format {
                    case .csv: output += UsageExport.csvLine(record)
                    case .json:
                        output += (first ? "\n" : ",\n") + UsageExport.jsonLine(record).dropLast()
                        first = false
                    default: output += UsageExport.jsonLine(record)
                    }
                    if output.utf8.count >= 1 << 20 {
                        do { try sink.write(Data(output.utf8)) } catch { failedWrite = error; return false }
                        output = ""
                    }
                    return true
                }
                if let failedWrite { throw failedWrite }
            } catch let failure as Failure {
                sink.discard()
                throw failure
            } catch {
                sink.discard()
                throw Failure("\(error)")
            }
            if format == .json { output += first ? "]\n" : "\n]\n" }
            try sink.write(Data(output.utf8))
            try sink.close()
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check the ledger's keyed hash chain and its checkpoint (edits, deletions, reordering, truncation, recomputation).")

        @OptionGroup var common: CommonOptions

        @Option(help: "Verify this archive file (written by `usage archive`) instead of the ledger.")
        var archive: String?

        func run() throws {
            let path = (common.state as NSString).appendingPathComponent("usage.sqlite")
            if let archive {
                guard FileManager.default.fileExists(atPath: archive), FileManager.default.fileExists(atPath: common.keyPath) else {
                    throw Failure("the archive \(archive) or the ledger key \(common.keyPath) is missing")
                }
                do {
                    let problem: LedgerProblem?
                    if NodeArchive.isNodeArchive(path: archive) {
                        // A shared ledger's archive: the key is all it needs.
                        guard let key = try LedgerKey.read(path: common.keyPath) else { throw Failure("the ledger key \(common.keyPath) is missing") }
                        problem = try NodeArchive.verify(path: archive, key: key)
                    } else {
                        problem = try Ledger(path: path).verifyArchive(at: archive)
                    }
                    if let problem { throw Failure("the archive does not verify: \(problem)") }
                    try writeOut("ok: the archive's keyed hash chain verifies between its boundaries\n")
                    return
                } catch let failure as Failure {
                    throw failure
                } catch {
                    throw Failure("\(error)")
                }
            }
            let shared = try common.usesSharedLedger()
            guard shared || FileManager.default.fileExists(atPath: path) else { throw Failure("no ledger at \(path)") }
            // A check must not repair what it checks: without its key a ledger cannot verify,
            // and opening it would create a new key.
            guard FileManager.default.fileExists(atPath: common.keyPath) else {
                throw Failure("the ledger does not verify: its key \(common.keyPath) is missing")
            }
            do {
                let ledger = try UsageCommand.ledger(common)
                if let problem = try ledger.verify() {
                    throw Failure("the ledger does not verify: \(problem)")
                }
                try writeOut(!shared ? "ok: the keyed hash chain and its checkpoint verify\n"
                                              : "ok: every node's keyed hash chain and its anchor verify\n")
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
        }
    }
}

extension UsageCommand {
    struct Archive: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "archive",
            abstract: "Move the records that started before DATE (UTC, at most the first day of this month) into FILE, which verifies on its own; the ledger keeps each chain's boundary hash.")

        @OptionGroup var common: CommonOptions

        @Option(help: "First day to keep, YYYY-MM-DD: earlier records move.")
        var before: String

        @Option(help: "The archive file to create (must not exist).")
        var out: String

        func validate() throws {
            guard Timestamp.startOfDay(before) != nil else { throw ValidationError("--before must be a date YYYY-MM-DD") }
        }

        func run() throws {
            guard let day = Timestamp.startOfDay(before) else { throw Failure("bad_request: --before must be a date YYYY-MM-DD") }
            // This month's records count against quotas (`monthly_cost_micros`, daily quotas) and
            // its invoice is still open: moving them would hand quota back.
            let month = Timestamp.startOfMonth(containing: Int64(Date().timeIntervalSince1970 * 1_000_000))
            guard day <= month else {
                throw Failure("bad_request: --before \(before) is in the current month; records of an open month count against quotas and its invoice (archive up to \(Timestamp.rfc3339(month).prefix(10)) at most)")
            }
            try OutputFile.checkDestination(out)
            let existed = FileManager.default.fileExists(atPath: out)
            do {
                let ledger = try UsageCommand.ledger(common)
                let moved: Int64
                switch ledger {
                case let sqlite as Ledger: moved = try sqlite.archive(before: day, to: out)
                case let shared as PostgresLedgerStore: moved = try shared.archive(before: day, to: out)
                default: throw Failure("internal: this ledger cannot archive")
                }
                ledger.close()
                guard moved > 0 else {
                    // An empty file would not verify: nothing moved means no archive at all.
                    if !existed { try? FileManager.default.removeItem(atPath: out) }
                    return try writeOut("ok: nothing to move: no record started before \(before); no file written\n")
                }
                try writeOut("ok: \(moved) record(s) moved to \(out); verify it with `sandgate usage verify --archive \(out)`\n")
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
        }
    }

    /// Today's queries and rows against the grant, and the ε left of each private dataset's
    /// budget (issue 10), for one consumer.
    struct Quota: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "quota", abstract: "A consumer's use of its grants today and the privacy budget (ε) it has left.")

        @OptionGroup var common: CommonOptions

        @Option(name: .customLong("as"), help: "The consumer.")
        var consumer: String

        @Option(help: "Only this dataset.")
        var dataset: String?

        func run() throws {
            let loaded = PolicyLoader.load(directory: common.policies, requireSources: false)
            guard let grants = loaded.consumers.consumers[consumer]?.grants else { throw Failure("not_granted: no consumer named '\(consumer)'") }
            let ledger = try UsageCommand.ledger(common)
            defer { ledger.close() }
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            var lines: [String] = []
            for (name, grant) in grants.sorted(by: { $0.key < $1.key }) where dataset == nil || dataset == name {
                do {
                    let today = try ledger.totals(consumer: consumer, dataset: name, at: now).day
                    var line = "\(name): \(today.ranQueries) queries (of \(grant.dailyQueries.map(String.init) ?? "unlimited")) and \(today.okRows) rows (of \(grant.dailyRows.map(String.init) ?? "unlimited")) today"
                    if let policy = loaded.datasets[name],
                       let privacy = try PrivacyBudgetStatus.read(policy: policy, grant: grant, consumer: consumer, ledger: ledger, now: now) {
                        line += "; epsilon left \(PrivacyBudget.epsilonText(privacy.remainingMicros)) of \(PrivacyBudget.epsilonText(privacy.budgetMicros)) (spent \(PrivacyBudget.epsilonText(privacy.spentMicros)) this \(privacy.period == .total ? "budget" : privacy.period.rawValue)), refreshes \(privacy.refresh)"
                    }
                    lines.append(line)
                } catch {
                    throw Failure("\(error)")
                }
            }
            if lines.isEmpty { throw Failure("not_granted: '\(consumer)' has no grant\(dataset.map { " for dataset '\($0)'" } ?? "")") }
            try writeOut(lines.joined(separator: "\n") + "\n")
        }
    }

    struct ReceiptCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "receipt",
            abstract: "Print the record of a query and the hashes that join it to its node's chain tail (JSON, for `usage check-receipt`).")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The query_id of a response.")
        var queryID: String

        @Option(help: "Write to this file instead of standard output.")
        var out: String?

        func run() throws {
            let receipt: Receipt
            do {
                guard let found = try UsageCommand.ledger(common).receipt(queryID: queryID) else {
                    throw Failure("no record with query_id \(queryID)")
                }
                receipt = found
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure("\(error)")
            }
            guard let out else { return try writeOut(receipt.json) }
            try OutputFile.write(receipt.json, to: out)
        }
    }

    struct CheckReceipt: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-receipt",
            abstract: "Check a receipt: it names the response's record and its links reach the chain's tail; with --key, recompute the record's hash.")

        @Argument(help: "A receipt written by `usage receipt`.")
        var file: String

        @Option(help: "The record_hash of the response (the receipt must be for that record).")
        var recordHash: String?

        @Option(help: "The ledger key (usage.key): also recompute the record's keyed hash.")
        var key: String?

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file), let receipt = Receipt.parse(data) else {
                throw Failure("\(file) is not a sandgate receipt")
            }
            if let recordHash, recordHash != receipt.record.recordHash {
                throw Failure("the receipt is for record_hash \(receipt.record.recordHash), not \(recordHash)")
            }
            var symmetricKey: SymmetricKey?
            if let key {
                guard let bytes = FileManager.default.contents(atPath: key), bytes.count == 32 else { throw Failure("\(key) is not a 32-byte ledger key") }
                symmetricKey = SymmetricKey(data: bytes)
            }
            if let problem = receipt.check(key: symmetricKey) { throw Failure("the receipt does not check: \(problem)") }
            let tail = receipt.links.last
            try writeOut("ok: query \(receipt.record.queryID) is seq \(receipt.record.seq) of node \(receipt.record.nodeID), linked to seq \(tail?.seq ?? 0) (\(tail?.recordHash ?? ""))"
                + (symmetricKey == nil ? "" : "; its hash verifies under the key") + "\n")
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

    /// Where streamed output goes: `--out` through an `OutputFile` (so a failed export leaves no
    /// half file), or standard output.
    func sink() throws -> OutputSink {
        guard let out else { return OutputSink(file: nil) }
        return OutputSink(file: try OutputFile(destination: out))
    }

    /// Writes to `--out`, or to standard output.
    func write(_ text: String) throws {
        guard let out else { return try writeOut(text) }
        try OutputFile.write(text, to: out)
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

/// A file being written by `usage export` (or standard output).
struct OutputSink {
    let file: OutputFile?

    func write(_ data: Data) throws {
        guard let file else { return try writeOut(String(decoding: data, as: UTF8.self)) }
        try file.write(data)
    }

    /// Moves a finished file into place.
    func close() throws { try file?.commit() }

    /// Removes an unfinished file (after a failure).
    func discard() { file?.discard() }
}
