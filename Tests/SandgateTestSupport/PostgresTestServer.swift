import Foundation
import SandgateLedgerPostgres
import Synchronization
import Testing

extension Trait where Self == ConditionTrait {
    /// For tests that need PostgreSQL: reported skipped where it is not installed, unless
    /// `SANDGATE_REQUIRE_POSTGRES=1` (CI), where they run and fail.
    public static var needsPostgres: Self {
        .enabled(if: PostgresTestServer.isAvailable, "needs PostgreSQL 15 server binaries (apt-get install postgresql-15)")
    }
}

/// A throw-away PostgreSQL 15 server for tests: `initdb` and `pg_ctl` in a temporary directory,
/// listening on a free port of 127.0.0.1 only, trust authentication, stopped (and its directory
/// removed) when the test process exits. `initdb` refuses to run as root, so as root the server
/// runs as the `postgres` user that Debian's package creates. One server per test process; each
/// test takes a fresh database (`makeDatabase`). Tests that need it carry
/// `.enabled(if: PostgresTestServer.isAvailable)`, so without PostgreSQL they are reported
/// skipped, not passed.
public final class PostgresTestServer: Sendable {
    public let port: Int
    let directory: String
    let binaries: String
    let runAsPostgres: Bool

    /// Where Debian installs PostgreSQL 15's server programs.
    static let binaryDirectories = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]

    private static let instance = Mutex<Result<PostgresTestServer, PostgresTestServerError>?>(nil)

    /// True when the tests that need PostgreSQL should run: its server programs are installed,
    /// or `SANDGATE_REQUIRE_POSTGRES=1` (CI) makes a missing PostgreSQL their failure, not a skip.
    public static var isAvailable: Bool { isRequired || installedBinaries != nil }

    /// `SANDGATE_REQUIRE_POSTGRES=1`, set by `.ci/run`.
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["SANDGATE_REQUIRE_POSTGRES"] == "1" }

    /// The first of `binaryDirectories` that holds `initdb`.
    static var installedBinaries: String? {
        binaryDirectories.first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }

    /// The process's server, started on first use. Tests call it only when `isAvailable`: a
    /// missing or broken PostgreSQL then throws, which fails the test.
    public static func shared() throws(PostgresTestServerError) -> PostgresTestServer {
        let result = instance.withLock { current in
            if let current { return current }
            let started: Result<PostgresTestServer, PostgresTestServerError>
            do throws(PostgresTestServerError) { started = .success(try PostgresTestServer()) } catch { started = .failure(error) }
            current = started
            if case .success = started { atexit { PostgresTestServer.stopShared() } }
            return started
        }
        return try result.get()
    }

    /// For the PostgreSQL case of a test parameterised over stores (a trait cannot skip one
    /// case): the shared server, or that case cancelled, which is reported as skipped.
    public static func sharedOrSkip() throws -> PostgresTestServer {
        guard isAvailable else { try Test.cancel("needs PostgreSQL 15 server binaries (apt-get install postgresql-15)") }
        return try shared()
    }

    /// A server of the caller's own, for tests that stop and start it; `destroy` removes it.
    public static func makePrivate() throws(PostgresTestServerError) -> PostgresTestServer {
        try PostgresTestServer()
    }

    /// Stops the server and removes its directory.
    public func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func stopShared() {
        if case .success(let server)? = instance.withLock({ $0 }) { server.destroy() }
    }

    private init() throws(PostgresTestServerError) {
        let fileManager = FileManager.default
        guard let binaries = Self.installedBinaries else {
            throw .notInstalled("no initdb in \(Self.binaryDirectories.joined(separator: ", "))")
        }
        self.binaries = binaries
        runAsPostgres = geteuid() == 0
        directory = NSTemporaryDirectory() + "sandgate-pg-\(UUID().uuidString.prefix(8))"
        do {
            try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if runAsPostgres { try Self.run("/bin/chown", ["postgres:postgres", directory]) }
            port = try Self.freePort()
            try run(binaries + "/initdb", ["-D", directory + "/data", "-U", "sandgate", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            try start()
        } catch let error as PostgresTestServerError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }

    /// Starts (or restarts) the server on its port; waits until it accepts connections.
    public func start() throws(PostgresTestServerError) {
        try run(binaries + "/pg_ctl", [
            "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60",
            "-o", "-p \(port) -c listen_addresses=127.0.0.1 -k \(directory) -c max_connections=200", "start",
        ])
    }

    /// Stops the server at once (`immediate`: like a crash of the database); `start` brings it back.
    public func stop() {
        try? run(binaries + "/pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"])
    }

    /// Freezes the server (SIGSTOP to it and its backends): connections stay open and nothing is
    /// answered, like a hung or partitioned database. `resume` thaws it.
    public func pause() { signalServer(SIGSTOP) }

    /// Thaws a paused server.
    public func resume() { signalServer(SIGCONT) }

    /// Sends `signal` to the postmaster (`postmaster.pid`) and every process it started.
    private func signalServer(_ signal: Int32) {
        guard let text = try? String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8),
              let first = text.split(separator: "\n").first, let postmaster = Int32(first) else { return }
        var targets = [postmaster]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
                  Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) == postmaster else { continue }
            targets.append(pid)
        }
        for pid in targets { kill(pid, signal) }
    }

    /// A new, empty database on this server and its ledger URL.
    public func makeDatabase() throws(PostgresTestServerError) -> PostgresLedgerURL {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        try run(binaries + "/createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "sandgate", name])
        guard let url = PostgresLedgerURL("postgres://sandgate@127.0.0.1:\(port)/\(name)") else { throw .failed("bad URL") }
        return url
    }

    /// Runs `sql` with psql on `url`'s database (tests that tamper with the ledger).
    public func execute(_ sql: String, on url: PostgresLedgerURL) throws(PostgresTestServerError) {
        try run(binaries + "/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "sandgate", "-d", url.database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
    }

    private func run(_ program: String, _ arguments: [String]) throws(PostgresTestServerError) {
        if runAsPostgres {
            try Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments)
        } else {
            try Self.run(program, arguments)
        }
    }

    /// Runs `program` and waits for it with `posix_spawn` and `waitpid`. Not `Process`: its
    /// wait missed the exit of `pg_ctl start` (whose server daemonises) and hung. Output goes to
    /// a file, not a pipe, since the server would hold a pipe open forever.
    private static func run(_ program: String, _ arguments: [String]) throws(PostgresTestServerError) {
        let logPath = NSTemporaryDirectory() + "sandgate-pg-command-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, program, &actions, nil, argv, environ)
        guard spawned == 0 else { throw .failed("cannot run \(program): error \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw .failed("waitpid for \(program) failed") }
        }
        // Exited normally with status 0 (WIFEXITED and WEXITSTATUS, macros Swift does not import).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw .failed("\((program as NSString).lastPathComponent) \(arguments.prefix(2).joined(separator: " ")) failed (\(status)): \(text.suffix(600))")
        }
    }

    /// A port nobody listens on now (bound to 0 and released).
    static func freePort() throws(PostgresTestServerError) -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw .failed("socket") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw .failed("bind") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Why the test server is not there.
public enum PostgresTestServerError: Error, CustomStringConvertible {
    case notInstalled(String)
    case failed(String)

    public var description: String {
        switch self {
        case .notInstalled(let why): "PostgreSQL is not installed: \(why)"
        case .failed(let why): "the PostgreSQL test server failed: \(why)"
        }
    }
}
