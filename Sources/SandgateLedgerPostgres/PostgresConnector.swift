import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import SandgateLedger

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
/// keeps one, and `PostgresConnector` lends the others.
final class PostgresSession {
    let connection: PostgresConnection
    private let logger: Logger

    init(url: PostgresLedgerURL, logger: Logger) throws(LedgerError) {
        self.logger = logger
        do {
            connection = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: url.configuration,
                id: Int.random(in: 1...Int.max), logger: logger).wait()
        } catch {
            throw LedgerError(.unavailable, "cannot connect to the ledger at \(url): \(Self.describe(error))")
        }
    }

    /// Closes before the connection goes (PostgresNIO asserts that it was closed). Sessions are
    /// released only on the threads that use them, never on an event loop, so waiting is safe.
    deinit { _ = try? connection.close().wait() }

    var isClosed: Bool { connection.isClosed }

    /// Runs one statement and returns its rows.
    @discardableResult
    func run(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) throws(LedgerError) -> [PostgresRow] {
        do {
            return try connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).wait().rows
        } catch {
            throw LedgerError(.store, "\(Self.describe(error))")
        }
    }

    /// Sends statements one after another without waiting between them (one round trip), then
    /// waits for all and returns each one's rows; the first failure is thrown after every answer
    /// arrived.
    @discardableResult
    func pipeline(_ statements: [(String, PostgresBindings)]) throws(LedgerError) -> [[PostgresRow]] {
        let futures = statements.map { connection.query(PostgresQuery(unsafeSQL: $0.0, binds: $0.1), logger: logger) }
        var failure: (any Error)?
        var results: [[PostgresRow]] = []
        for future in futures {
            do { results.append(try future.wait().rows) } catch { failure = failure ?? error; results.append([]) }
        }
        if let failure { throw LedgerError(.store, "\(Self.describe(failure))") }
        return results
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
final class PostgresConnector: @unchecked Sendable {
    let url: PostgresLedgerURL
    let logger: Logger
    /// Idle sessions, only under `lock`.
    private var idle: [PostgresSession] = []
    private let lock = NSLock()

    init(url: PostgresLedgerURL, logger: Logger) {
        self.url = url
        self.logger = logger
    }

    func connect() throws(LedgerError) -> PostgresSession { try PostgresSession(url: url, logger: logger) }

    /// Runs `body` with a session of its own; a session that failed is dropped, not reused.
    func withSession<T>(_ body: (PostgresSession) throws(LedgerError) -> T) throws(LedgerError) -> T {
        lock.lock()
        var session = idle.popLast()
        lock.unlock()
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
        lock.lock()
        if idle.count < 8 { idle.append(session) }
        lock.unlock()
        return result
    }

    func closeAll() {
        lock.lock()
        idle.removeAll()
        lock.unlock()
    }
}
