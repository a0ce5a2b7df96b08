import ArgumentParser
import Crypto
import Foundation
import SandgateLedger
import SandgatePolicy

struct ConsumerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "consumer", abstract: "Manage consumers.", subcommands: [Add.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Create a consumer with a random key, print the key once, and store only its SHA-256 in consumers.yaml.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The consumer's name: \(Name.rule).")
        var name: String

        @Option(help: "A dataset to grant (repeat for several).")
        var grant: [String] = []

        @Option(help: "Grant limit: rows per query (lowers the dataset's).")
        var maxRows: Int?

        @Option(help: "Grant quota: queries per UTC day.")
        var dailyQueries: Int?

        @Option(help: "Grant quota: rows per UTC day.")
        var dailyRows: Int?

        @Option(help: "Grant quota: cost per UTC calendar month, in micro-units of the dataset's currency.")
        var monthlyCostMicros: Int?

        func validate() throws {
            // The one spelling checked everywhere (bytes, no normalisation): see `Name`.
            guard Name.isValid(name) else { throw ValidationError("the name must be \(Name.rule)") }
            guard !grant.isEmpty else { throw ValidationError("give at least one --grant DATASET") }
            for value in [maxRows, dailyQueries, dailyRows, monthlyCostMicros].compactMap({ $0 }) where value < 0 {
                throw ValidationError("limits must not be negative")
            }
        }

        func run() throws {
            let path = (common.policies as NSString).appendingPathComponent(PolicyLoader.consumersFileName)
            let loaded = PolicyLoader.load(directory: common.policies)
            for dataset in grant where !loaded.datasetFiles.contains(dataset) {
                throw Failure("unknown_dataset: no policy file for dataset '\(dataset)'")
            }
            guard loaded.consumersValid else { throw Failure("bad_request: consumers.yaml has problems; run `sandgate policy check` first") }
            if loaded.consumers.consumers[name] != nil { throw Failure("bad_request: consumer '\(name)' exists already") }

            var bytes = [UInt8](repeating: 0, count: 32)
            var generator = SystemRandomNumberGenerator()
            for index in bytes.indices { bytes[index] = generator.next() }
            let key = "sg_" + Hex.encode(bytes)
            let hash = Hex.encode(SHA256.hash(data: Array(key.utf8)))

            var limits: [String] = []
            if let maxRows { limits.append("max_rows: \(maxRows)") }
            if let dailyQueries { limits.append("daily_queries: \(dailyQueries)") }
            if let dailyRows { limits.append("daily_rows: \(dailyRows)") }
            if let monthlyCostMicros { limits.append("monthly_cost_micros: \(monthlyCostMicros)") }
            let grantLines = grant.map { "      \($0): { \(limits.joined(separator: ", ")) }\n" }.joined()
            let block = "  \(name):\n    key_sha256: \(hash)\n    grants:\n" + grantLines

            let original = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
            var text = original ?? "consumers:\n"
            // A file closed with `...` stays closed: the new entry goes before that line.
            let sealed = PolicyLoader.isSealed(text)
            if sealed, let end = text.range(of: "\n...", options: .backwards) { text = String(text[..<end.lowerBound]) }
            if !text.hasSuffix("\n") { text += "\n" }
            if original.map({ !$0.contains("consumers:") }) ?? false { text += "consumers:\n" }
            text += block
            if sealed || original == nil { text += "...\n" }
            do {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                throw Failure("internal: cannot write \(path)")
            }
            // Never leave an invalid consumer file behind.
            let check = PolicyLoader.loadConsumers(path: path, knownDatasets: loaded.datasetFiles)
            if !check.isValid {
                if let original { try? original.write(toFile: path, atomically: true, encoding: .utf8) }
                throw Failure("internal: the new consumers.yaml would not validate: \(PolicyErrors(check.diagnostics))")
            }
            writeOut("consumer \(name) added with grants: \(grant.joined(separator: ", "))\nkey (shown once, store it now): \(key)\n")
        }
    }
}
