import ArgumentParser
import Crypto
import Foundation
import SandgateLedger
import SandgatePolicy
import SandgateSupport

struct ConsumerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consumer",
        abstract: "Manage consumers in consumers.yaml (comments and layout are kept; a running gateway reloads the file).",
        subcommands: [Add.self, Grant.self, Revoke.self, List.self, RotateKey.self])

    /// Consumer and dataset names go into consumers.yaml as text: only the documented spelling.
    static func requireNames(_ names: [String]) throws {
        for name in names where !Name.isValid(name) {
            throw ValidationError("'\(name)' is not a valid name: \(Name.rule)")
        }
    }

    /// Limits and quotas of a grant, shared by `add` and `grant`.
    struct GrantOptions: ParsableArguments {
        @Option(help: "Rows per query (lowers the dataset's max_rows).")
        var maxRows: Int?

        @Option(help: "Queries per UTC day.")
        var dailyQueries: Int?

        @Option(help: "Rows per UTC day.")
        var dailyRows: Int?

        @Option(help: "Milliseconds per query (lowers the dataset's timeout_ms).")
        var timeoutMs: Int?

        @Option(help: "Cost per UTC calendar month, in micro-units of the dataset's currency.")
        var monthlyCostMicros: Int?

        @Option(name: .customLong("purpose"), help: "A purpose the consumer may use the dataset for (repeat for several; replaces the grant's list).")
        var purposes: [String] = []

        func validate() throws {
            for value in [maxRows, dailyQueries, dailyRows, timeoutMs, monthlyCostMicros].compactMap({ $0 }) where value < 0 {
                throw ValidationError("limits must not be negative")
            }
            for purpose in purposes where !Name.isValid(purpose) {
                throw ValidationError("'\(purpose)' is not a purpose name (\(Name.rule))")
            }
        }

        /// `existing` with the options given set (a grant is only changed where an option says so).
        func applied(to existing: GrantFields = GrantFields()) -> GrantFields {
            var fields = existing
            if let maxRows { fields.set("max_rows", Int64(maxRows)) }
            if let timeoutMs { fields.set("timeout_ms", Int64(timeoutMs)) }
            if let dailyQueries { fields.set("daily_queries", Int64(dailyQueries)) }
            if let dailyRows { fields.set("daily_rows", Int64(dailyRows)) }
            if let monthlyCostMicros { fields.set("monthly_cost_micros", Int64(monthlyCostMicros)) }
            if !purposes.isEmpty { fields.setPurposes(purposes) }
            return fields
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Create a consumer with a random key, print the key once, and store only its SHA-256.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The consumer's name: \(Name.rule).")
        var name: String

        @Option(help: "A dataset to grant (repeat for several).")
        var grant: [String] = []

        @OptionGroup var limits: GrantOptions

        func validate() throws {
            // The one spelling checked everywhere (bytes, no normalisation): see `Name`.
            guard Name.isValid(name) else { throw ValidationError("the name must be \(Name.rule)") }
            guard !grant.isEmpty else { throw ValidationError("give at least one --grant DATASET (more can be added with `sandgate consumer grant`)") }
            try ConsumerCommand.requireNames(grant)
        }

        func run() throws {
            let file = ConsumersFile(policies: common.policies)
            try file.locked {
                var editor = try file.editor()
                try file.requireDatasets(grant)
                let key = try ConsumerKey.generate()
                let fields = limits.applied()
                try edit { try editor.addConsumer(name, keySHA256: key.sha256, scram: key.scram, grants: grant.map { ($0, fields) }) }
                try file.write(editor.text) { directory in
                    directory.consumers[name]?.keySHA256 == key.sha256 && Set((directory.consumers[name]?.grants ?? [:]).keys) == Set(grant)
                }
                try writeOut("consumer \(name) added with grants: \(grant.joined(separator: ", "))\nkey (shown once, store it now): \(key.key)\n")
            }
        }
    }

    struct Grant: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "grant",
            abstract: "Grant a consumer a dataset, or change a grant's limits (options not given keep their value).")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The consumer.")
        var name: String

        @Argument(help: "The dataset.")
        var dataset: String

        @OptionGroup var limits: GrantOptions

        func validate() throws {
            try ConsumerCommand.requireNames([name, dataset])
        }

        func run() throws {
            let file = ConsumersFile(policies: common.policies)
            try file.locked {
                var editor = try file.editor()
                try file.requireDatasets([dataset])
                let existing = try edit { try editor.grant(name, dataset: dataset) }
                let fields = limits.applied(to: existing ?? GrantFields())
                try edit { try editor.setGrant(name, dataset: dataset, fields: fields) }
                try file.write(editor.text) { $0.consumers[name]?.grants[dataset] != nil }
                try writeOut("\(existing == nil ? "granted" : "grant changed"): \(name) → \(dataset) \(fields.flowText)\n")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke",
            abstract: "Revoke a consumer's grant for a dataset, or (with --all) remove the consumer and its key.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The consumer.")
        var name: String

        @Argument(help: "The dataset whose grant is revoked.")
        var dataset: String?

        @Flag(help: "Remove the consumer entirely (its key stops working).")
        var all = false

        func validate() throws {
            guard (dataset == nil) == all else { throw ValidationError("give a DATASET, or --all to remove the consumer") }
            try ConsumerCommand.requireNames([name] + (dataset.map { [$0] } ?? []))
        }

        func run() throws {
            let file = ConsumersFile(policies: common.policies)
            try file.locked {
                var editor = try file.editor()
                if let dataset {
                    try edit { try editor.removeGrant(name, dataset: dataset) }
                    try file.write(editor.text) { $0.consumers[name] != nil && $0.consumers[name]?.grants[dataset] == nil }
                    try writeOut("revoked: \(name) → \(dataset)\n")
                } else {
                    try edit { try editor.removeConsumer(name) }
                    try file.write(editor.text) { $0.consumers[name] == nil }
                    try writeOut("removed: \(name) (its key no longer works)\n")
                }
            }
        }
    }

    struct RotateKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Give a consumer a new random key: printed once, only its SHA-256 and SCRAM verifier are stored; the old key stops working.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The consumer.")
        var name: String

        func validate() throws {
            try ConsumerCommand.requireNames([name])
        }

        func run() throws {
            let file = ConsumersFile(policies: common.policies)
            try file.locked {
                var editor = try file.editor()
                let key = try ConsumerKey.generate()
                try edit { try editor.setKeyHash(name, to: key.sha256, scram: key.scram) }
                try file.write(editor.text) { $0.consumers[name]?.keySHA256 == key.sha256 && $0.consumers[name]?.scram?.text == key.scram }
                try writeOut("new key for \(name) (shown once, store it now; the old key no longer works): \(key.key)\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "Consumers with their role, grants and today's usage (UTC) from the ledger in --state.")

        @OptionGroup var common: CommonOptions

        func run() throws {
            let loaded = PolicyLoader.load(directory: common.policies)
            for problem in loaded.consumerFile?.diagnostics ?? [] { try writeOut("\(problem.description)\n") }
            let ledgerPath = (common.state as NSString).appendingPathComponent("usage.sqlite")
            // Read-only use: a missing ledger means nothing was used and is not created, and a
            // ledger without its key is not opened (that would make a new key; see usage verify).
            let keyPath = (ledgerPath as NSString).deletingPathExtension + ".key"
            let ledger = FileManager.default.fileExists(atPath: ledgerPath) && FileManager.default.fileExists(atPath: keyPath)
                ? try? Ledger(path: ledgerPath) : nil
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            let consumers = loaded.consumers.consumers.values.sorted { $0.name < $1.name }
            var output = consumers.isEmpty ? "no consumers\n" : ""
            for consumer in consumers {
                output += "\(consumer.name)\(consumer.role == .operator ? " (operator)" : "")\n"
                if consumer.grants.isEmpty { output += "  no grants\n" }
                for dataset in consumer.grants.keys.sorted() {
                    guard let grant = consumer.grants[dataset] else { continue }
                    let used = try? ledger?.totals(consumer: consumer.name, dataset: dataset, at: now).day
                    var limits: [String] = []
                    if let value = grant.maxRows { limits.append("max_rows \(value)") }
                    if let value = grant.timeoutMilliseconds { limits.append("timeout_ms \(value)") }
                    if let value = grant.maxVMSteps { limits.append("max_vm_steps \(value)") }
                    if let value = grant.maxResultBytes { limits.append("max_result_bytes \(value)") }
                    let queries = "\(used?.ranQueries ?? 0)\(grant.dailyQueries.map { "/\($0)" } ?? "")"
                    let rows = "\(used?.okRows ?? 0)\(grant.dailyRows.map { "/\($0)" } ?? "")"
                    let dataset = loaded.datasetFiles.contains(dataset) ? dataset : "\(dataset) (no such dataset)"
                    output += "  \(dataset): \(limits.isEmpty ? "dataset limits" : limits.joined(separator: ", ")); today \(queries) queries, \(rows) rows\n"
                }
            }
            ledger?.close()
            try writeOut(output)
        }
    }
}

/// Runs an editor operation, turning its error into the command's failure (nothing written).
private func edit<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConsumerEditError {
        throw Failure("bad_request: \(error.description); consumers.yaml is unchanged")
    }
}

/// A random consumer key and its SHA-256; only the hash is ever stored.
struct ConsumerKey {
    let key: String
    let sha256: String
    /// The SCRAM-SHA-256 verifier of the same key (PostgreSQL-protocol logins).
    let scram: String

    static func generate() throws -> ConsumerKey {
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let key = "sg_" + Hex.encode(bytes)
        guard let verifier = SCRAMVerifier.make(password: key) else { throw Failure("internal: cannot derive the SCRAM verifier") }
        return ConsumerKey(key: key, sha256: Hex.encode(SHA256.hash(data: Array(key.utf8))), scram: verifier.text)
    }
}

/// `consumers.yaml` of a policies directory: read for editing, validated, written atomically.
struct ConsumersFile {
    let policies: String
    var path: String { (policies as NSString).appendingPathComponent(PolicyLoader.consumersFileName) }

    /// Runs one read-edit-write under an exclusive lock (`flock` on a file in the temporary
    /// directory named after this consumers file), so that two commands run at once do not
    /// lose one of the edits.
    func locked(_ body: () throws -> Void) throws {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let lockPath = NSTemporaryDirectory() + "sandgate-consumers-" + Hex.encode(SHA256.hash(data: Array(absolute.utf8))).prefix(16) + ".lock"
        let descriptor = open(lockPath, O_CREAT | O_RDWR, 0o600)
        guard descriptor >= 0 else { throw Failure("internal: cannot open the lock \(lockPath)") }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { throw Failure("internal: cannot lock \(lockPath)") }
        defer { flock(descriptor, LOCK_UN) }
        try body()
    }

    /// A new file: a comment, no consumers, and the closing line that protects reloads.
    static let emptyText = "# Consumers and their grants (edited by the operator and `sandgate consumer`).\nconsumers: {}\n...\n"

    /// An editor over the current text; refuses a file that does not validate now (an edit
    /// could not be told apart from the problems already there).
    func editor() throws -> ConsumerFileEditor {
        guard let data = FileManager.default.contents(atPath: path) else { return ConsumerFileEditor(text: Self.emptyText) }
        let file = PolicyLoader.loadConsumers(path: path, knownDatasets: datasets)
        guard file.isValid else {
            throw Failure("bad_request: \(path) has problems; fix them first:\n\(PolicyErrors(file.diagnostics))")
        }
        return ConsumerFileEditor(text: String(decoding: data, as: UTF8.self))
    }

    var datasets: Set<String> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: policies)) ?? []
        return Set(names.filter { $0.hasSuffix(".yaml") && !PolicyLoader.reservedFileNames.contains($0) }.map { String($0.dropLast(5)) })
    }

    /// The published tables of every valid dataset, by source (a grant may not pair a private
    /// table with exact access to its rows).
    var sourceTables: [String: [SourceTable]] {
        PolicyLoader.load(directory: policies, requireSources: false).datasets.mapValues(SourceTable.all)
    }

    func requireDatasets(_ names: [String]) throws {
        let known = datasets
        for name in names where !known.contains(name) {
            throw Failure("unknown_dataset: no policy file for dataset '\(name)' (datasets: \(known.sorted().joined(separator: ", ")))")
        }
    }

    /// Writes `text` to a temporary file beside the real one, checks that it validates, keeps the
    /// closing `...` line if the old file had it, and gives the intended result (`expected`),
    /// then renames it over the real file: a reader — the running gateway — sees the old file or
    /// the new one, never a mix.
    func write(_ text: String, expected: (ConsumerDirectory) -> Bool) throws {
        let temporary = (policies as NSString).appendingPathComponent(".consumers.yaml.\(UUID().uuidString.prefix(8)).tmp")
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw Failure("internal: cannot write \(temporary): \(error.localizedDescription)")
        }
        let check = PolicyLoader.loadConsumers(path: temporary, knownDatasets: datasets, sourceTables: sourceTables)
        let wasSealed = FileManager.default.contents(atPath: path).map { PolicyLoader.isSealed(String(decoding: $0, as: UTF8.self)) } ?? true
        guard check.isValid else {
            let problems = check.diagnostics.map { $0.message }.joined(separator: "; ")
            throw Failure("bad_request: the edit would make consumers.yaml invalid (\(problems)); nothing was written")
        }
        guard expected(check.directory), check.sealed || !wasSealed else {
            throw Failure("internal: the edited consumers.yaml would not have the intended effect; nothing was written")
        }
        guard rename(temporary, path) == 0 else {
            throw Failure("internal: cannot replace \(path): \(String(cString: strerror(errno)))")
        }
    }
}
