import Foundation
import SandgateLedger

/// Progress of long work on standard error, only when it is a terminal: a script reading the
/// output sees nothing extra.
enum TerminalProgress {
    /// A `LedgerProgress` that rewrites one line: records done of all, rate and time left.
    static func ledger(_ what: String) -> LedgerProgress? {
        guard isatty(STDERR_FILENO) == 1 else { return nil }
        let started = Date()
        return { done, total in
            var line = "\r\(what): \(done) of \(total) records"
            let seconds = Date().timeIntervalSince(started)
            if done > 0, done < total, seconds > 0 {
                let rate = Double(done) / seconds
                line += String(format: " (%.0f/s, %.0f s left)", rate, Double(total - done) / rate)
            }
            if done >= total { line += String(format: ", done in %.1f s\n", seconds) }
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}
