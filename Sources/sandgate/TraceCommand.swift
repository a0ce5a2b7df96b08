import ArgumentParser
import Foundation
import SandgateCore

/// `sandgate trace FILE --dataset D`: which consumer received the tokens in a leaked file, and in
/// which recorded queries (see `TraceReport` for what it can and cannot prove).
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Find which consumer received the join-key tokens and hash values in a file of released data, and in which recorded queries.")

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset the file's values came from.")
    var dataset: String

    @Argument(help: "The file (CSV, JSON lines or any text; at most 256 MiB).")
    var file: String

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @Option(help: "Output format: text or json.")
    var format: Format = .text

    func run() throws {
        let gateway = try common.gateway()
        let report: TraceReport
        do {
            report = try gateway.trace(path: file, dataset: dataset)
        } catch {
            throw Failure("bad_request: \(error.description)")
        }
        try writeOut(format == .json ? report.json : report.text)
        // Nothing to trace is a failure for scripts: the file cannot be attributed.
        if report.candidates == 0 { throw Failure("cannot trace: no join_key tokens or hash values in \(file)") }
        // A partial read proves nothing about the values it did not reach.
        if report.candidatesCapped, report.matches.isEmpty, report.sharedTokens == 0 {
            throw Failure("trace incomplete: only the first \(Trace.maxCandidates) distinct token-shaped values of \(file) were examined (\(report.bytesRead) bytes) and none matched; split the file and trace the parts")
        }
    }
}
