import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import SandgateLedger
import Synchronization

/// Where the PostgreSQL ledger is: `postgres://user[:password]@host[:port]/database` (or
/// `postgresql://`). Connections are plain TCP: run the ledger on the loopback or a private
/// network (docs/operator-guide.md).
public struct PostgresLedgerURL: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public let user: String
    public let password: String?
    public let database: String

    /// What `--ledger` and `ledger:` accept, for their error messages.
    public static let expectedForm = "postgres://user[:password]@host[:port]/database, with no ?query or #fragment "
        + "(connection options such as sslmode are not supported: the ledger connects in plain TCP)"

    /// Parses `text`; nil when it is not a `postgres://` URL with a user, a host and a database,
    /// or when it has a query string or a fragment: their options (`?sslmode=require`) would be
    /// dropped silently, so a URL that asks for TLS must not connect in plain text.
    public init?(_ text: String) {
        guard let components = URLComponents(string: text), components.query == nil, components.fragment == nil,
              !text.contains("?"), !text.contains("#"), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty else { return nil }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { return nil }
        self.host = host
        self.port = components.port ?? 5432
        self.user = user
        self.password = components.password
        self.database = database
    }

    /// Whether `text` names a PostgreSQL ledger rather than a file.
    public static func isPostgres(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// The URL without its password (for logs and messages).
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    var configuration: PostgresConnection.Configuration {
        PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: .disable)
    }
}

/// One PostgreSQL connection used synchronously: each call blocks the calling thread until the
/// server answered, so it must never run on an event loop (the gateway calls the ledger from its
/// worker threads and the ledger's own writer thread). Owned by one thread at a time: the writer
/// keeps one, and `PostgresConnector` lends the others. `Sendable` (immutable; the connection is)
/// only so that the connector's `Mutex` can hold idle sessions.
final class PostgresSession: Sendable {
    let connection: PostgresConnection
    private let logger: Logger
    /// How long a statement may wait for the server's answer before the session is closed (which
    /// fails the statement): a PostgreSQL that stops answering without closing the connection (a
    /// stopped or partitioned server) would otherwise block the waiting thread for good — a
    /// gateway on it once kept its workers and writer waiting after SIGINT and never exited.
    /// nil: no deadline (the schema's set-up, `verify`'s recomputation and `archive`, which may
    /// run for long on a big ledger).
    let answerTimeout: Duration?

    init(url: PostgresLedgerURL, logger: Logger, answerTimeout: Duration?) throws(LedgerError) {
        self.logger = logger
        self.answerTimeout = answerTimeout
        do {
            let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
            let connecting = PostgresConnection.connect(on: eventLoop, configuration: url.configuration, id: Int.random(in: 1...Int.max), logger: logger)
            connection = try Self.bounded(connecting, by: answerTimeout, on: eventLoop).wait()
        } catch {
            throw LedgerError(.unavailable, "cannot connect to the ledger at \(url): \(Self.describe(error))")
        }
    }

    /// `connecting`, or a failure once `timeout` passed without it (a server that accepts the TCP
    /// connection but never answers the start-up); a connection that comes later is closed.
    private static func bounded(_ connecting: EventLoopFuture<PostgresConnection>, by timeout: Duration?, on eventLoop: any EventLoop)
        -> EventLoopFuture<PostgresConnection> {
        guard let timeout else { return connecting }
        let bounded = eventLoop.makePromise(of: PostgresConnection.self)
        let deadline = eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            bounded.fail(LedgerError(.unavailable, "no answer from the server within \(timeout)"))
        }
        connecting.whenComplete { result in
            deadline.cancel()
            bounded.completeWith(result)
        }
        // A second completion of a promise is ignored, so a failed promise means the deadline won.
        bounded.futureResult.whenFailure { _ in connecting.whenSuccess { late in _ = late.close() as EventLoopFuture<Void> } }
        return bounded.futureResult
    }

    /// Closes before the connection goes (PostgresNIO asserts that it was closed). Sessions are
    /// released only on the threads that use them, never on an event loop, so waiting is safe.
    deinit { _ = try? connection.close().wait() }

    var isClosed: Bool { connection.isClosed }

    /// Runs one statement and returns its rows, waiting at most `answerTimeout` for the answer.
    @discardableResult
    func run(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) throws(LedgerError) -> [PostgresRow] {
        try run(sql, binds, timeout: answerTimeout)
    }

    /// Runs one statement and returns its rows, waiting at most `timeout` (nil: as long as it takes).
    @discardableResult
    func run(_ sql: String, _ binds: PostgresBindings = PostgresBindings(), timeout: Duration?) throws(LedgerError) -> [PostgresRow] {
        do {
            return try answer(connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger), timeout: timeout).rows
        } catch {
            throw LedgerError(.store, "\(Self.describe(error))")
        }
    }

    /// Sends statements one after another without waiting between them (one round trip), then
    /// waits for all and returns each one's rows; the first failure is thrown after every answer
    /// arrived (or the deadline, `timeout`, closed the session).
    @discardableResult
    func pipeline(_ statements: [(String, PostgresBindings)]) throws(LedgerError) -> [[PostgresRow]] {
        try pipeline(statements, timeout: answerTimeout)
    }

    /// `pipeline` waiting at most `timeout` for each answer (nil: as long as it takes).
    @discardableResult
    func pipeline(_ statements: [(String, PostgresBindings)], timeout deadline: Duration?) throws(LedgerError) -> [[PostgresRow]] {
        let futures = statements.map { connection.query(PostgresQuery(unsafeSQL: $0.0, binds: $0.1), logger: logger) }
        var failure: (any Error)?
        var results: [[PostgresRow]] = []
        for future in futures {
            do { results.append(try answer(future, timeout: deadline).rows) } catch { failure = failure ?? error; results.append([]) }
        }
        if let failure { throw LedgerError(.store, "\(Self.describe(failure))") }
        return results
    }

    /// Waits for `future`; if no answer came within `timeout`, closes the connection, which fails
    /// every statement waiting on it (the caller's session is then dropped and reconnected).
    private func answer<T: Sendable>(_ future: EventLoopFuture<T>, timeout: Duration?) throws -> T {
        guard let timeout else { return try future.wait() }
        let connection = self.connection
        let deadline = future.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { () -> Void in _ = connection.close() as EventLoopFuture<Void> }
        defer { deadline.cancel() }
        return try future.wait()
    }

    /// PSQLError's description hides the server's message; this keeps it (never bound values).
    static func describe(_ error: any Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] {
                return "\(psql.serverInfo?[.sqlState] ?? "") \(message)"
            }
            return "\(psql.code)"
        }
        return "\(error)"
    }
}

/// Lends sessions to reading and reserving threads, reconnecting when the server went away, so
/// the ledger resumes by itself once PostgreSQL is back.
final class PostgresConnector: Sendable {
    let url: PostgresLedgerURL
    let logger: Logger
    /// Each session's `answerTimeout`.
    let answerTimeout: Duration?
    /// Idle sessions.
    private let idle = Mutex<[PostgresSession]>([])

    init(url: PostgresLedgerURL, logger: Logger, answerTimeout: Duration?) {
        self.url = url
        self.logger = logger
        self.answerTimeout = answerTimeout
    }

    func connect() throws(LedgerError) -> PostgresSession { try PostgresSession(url: url, logger: logger, answerTimeout: answerTimeout) }

    /// Runs `body` with a session of its own; a session that failed is dropped, not reused.
    func withSession<T>(_ body: (PostgresSession) throws(LedgerError) -> T) throws(LedgerError) -> T {
        var session = idle.withLock { $0.popLast() }
        if session?.isClosed ?? true { session = try connect() }
        guard let session else { throw LedgerError(.unavailable, "no ledger connection") }
        let result: T
        do {
            result = try body(session)
        } catch {
            // After an error inside a transaction the session may be in an aborted transaction.
            if !session.isClosed { _ = try? session.run("ROLLBACK") }
            throw error
        }
        idle.withLock { if $0.count < 8 { $0.append(session) } }
        return result
    }

    func closeAll() {
        idle.withLock { $0.removeAll() }
    }
}

extension Duration {
    /// Whole nanoseconds (for NIO's `TimeAmount`).
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
