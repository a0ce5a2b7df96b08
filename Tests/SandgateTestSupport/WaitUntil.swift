import Foundation

/// Polls `condition` every `interval` until it holds. The deadline is a guard against a hang,
/// not a threshold: a condition still false at it throws `WaitTimedOut`, naming `what`. (Also
/// for async tests: they block their thread on sockets anyway.)
public func waitUntil(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(300), interval: Duration = .milliseconds(10),
    fileID: String = #fileID, line: Int = #line, _ condition: () throws -> Bool
) throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw WaitTimedOut(what: what(), timeout: timeout, fileID: fileID, line: line) }
        Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18 + Double(interval.components.seconds))
    }
}

/// A condition of `waitUntil` did not hold by its deadline.
public struct WaitTimedOut: Error, CustomStringConvertible {
    public let what: String
    public let timeout: Duration
    public let fileID: String
    public let line: Int

    public var description: String { "\(fileID):\(line): still waiting after \(timeout) for \(what)" }
}
