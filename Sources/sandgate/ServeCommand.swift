import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateLedger
import SandgatePolicy
import SandgateServer
import ServiceLifecycle
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway: JSON lines over TCP, policies reloaded live, graceful shutdown on SIGINT/SIGTERM.")

    @OptionGroup var common: CommonOptions

    @Option(help: "JSON-lines listen address, HOST:PORT.")
    var listen = "127.0.0.1:7878"

    @Option(help: "PostgreSQL wire protocol listen address, HOST:PORT (psql, psycopg, JDBC; user = consumer, dbname = dataset, password = API key).")
    var pgListen: String?

    @Option(help: "PEM certificate chain for TLS on the PostgreSQL listener (with --pg-tls-key).")
    var pgTlsCert: String?

    @Option(help: "PEM private key for TLS on the PostgreSQL listener.")
    var pgTlsKey: String?

    @Option(help: "Sandbox workers (default: number of cores).")
    var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Most open connections.")
    var maxConnections = 1024

    @Option(help: "Most queries one consumer may have running at once.")
    var maxInFlightPerConsumer = 8

    func validate() throws {
        guard Address(listen) != nil else { throw ValidationError("--listen must be HOST:PORT") }
        if let pgListen, Address(pgListen) == nil { throw ValidationError("--pg-listen must be HOST:PORT") }
        guard (pgTlsCert == nil) == (pgTlsKey == nil) else { throw ValidationError("--pg-tls-cert and --pg-tls-key go together") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be between 1 and 256") }
        guard (1...100_000).contains(maxConnections) else { throw ValidationError("--max-connections must be between 1 and 100000") }
        guard (1...10_000).contains(maxInFlightPerConsumer) else { throw ValidationError("--max-in-flight-per-consumer must be between 1 and 10000") }
    }

    func run() async throws {
        var logger = Logger(label: "sandgate")
        logger.logLevel = common.verbose ? .debug : .info
        // Quota and ε holds of queries in flight live in the serving process (SQLite ledger) and
        // snapshots are managed per state directory: two servers on one must not run (red team:
        // two nodes on one state overspent an ε budget by half). The lock ends with the process.
        let lock = try Self.lockState(common.state)
        defer { close(lock) }
        let gateway: Gateway
        do {
            gateway = try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: common.policies, stateDirectory: common.state, poolSize: workers,
                ledger: { [common, logger] () throws(LedgerError) in try common.openLedger(logger: logger) }), logger: logger)
        } catch {
            throw Failure("\(error.code.rawValue): \(error.message)")
        }
        gateway.warmUp()
        guard let address = Address(listen) else { throw ValidationError("--listen must be HOST:PORT") }
        let server = JSONLinesServer(
            gateway: gateway,
            configuration: ServerConfiguration(
                host: address.host, port: address.port, workers: workers, maxConnections: maxConnections,
                maxInFlightPerConsumer: maxInFlightPerConsumer),
            logger: logger)
        let port: Int
        do {
            port = try await server.start()
        } catch {
            if address.isInUse {
                throw Failure("unavailable: \(listen) is already in use (another `sandgate serve`?); give another address with --listen HOST:PORT (make serve LISTEN=HOST:PORT)")
            }
            throw Failure("unavailable: cannot listen on \(listen) (set by --listen): \(error)")
        }
        var postgres = ""
        if let pgListen, let pgAddress = Address(pgListen) {
            do {
                let tls = pgTlsCert.flatMap { cert in pgTlsKey.map { PostgresTLS(certificatePath: cert, keyPath: $0) } }
                let pgPort = try await server.startPostgres(host: pgAddress.host, port: pgAddress.port, tls: tls)
                postgres = "\n" + Self.psqlLine(gateway: gateway, host: pgAddress.host, port: pgPort)
            } catch {
                await server.shutdown()
                gateway.ledger.close()
                if pgAddress.isInUse {
                    throw Failure("unavailable: \(pgListen) is already in use (another `sandgate serve`, or PostgreSQL?); give another address with --pg-listen HOST:PORT (make serve PG_LISTEN=HOST:PORT)")
                }
                throw Failure("unavailable: cannot listen on \(pgListen) (set by --pg-listen): \(error)")
            }
        }
        // Where the records go, never with a password (the URL's description has none).
        let ledgerDescription = (try? common.ledgerURL()).flatMap { $0.map { "\($0) as node \(common.node)" } }
            ?? (common.state as NSString).appendingPathComponent("usage.sqlite")
        let banner = """
            sandgate is serving \(gateway.datasetNames.joined(separator: ", ")) on \(address.host):\(port) (JSON lines)\(postgres.isEmpty ? "" : " and PostgreSQL").
            \(Self.tryLine(gateway: gateway, host: address.host, port: port))\(postgres)
            Usage ledger: \(ledgerDescription).
            Stop with Ctrl-C.

            """
        // The banner is printed once the group runs, when SIGINT and SIGTERM are trapped: a Ctrl-C
        // right after "Stop with Ctrl-C" then shuts down in order instead of killing the process
        // (a test sending SIGINT as soon as it read the banner found that window).
        let announce = ServiceGroupConfiguration.ServiceConfiguration(
            service: ClosureService { try writeOut(banner) }, successTerminationBehavior: .ignore)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: Self.services(gateway: gateway, server: server) + [announce], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch let failure as Failure {
            // The banner could not be written: every service has stopped, the ledger is closed.
            throw failure
        } catch {
            logger.error("service group ended", metadata: ["error": "\(error)"])
        }
        logger.info("stopped")
    }

    /// The serving group's services, in the order they start. On SIGTERM or SIGINT the
    /// `ServiceGroup` shuts them down one at a time in reverse order, each finished before the
    /// next is told (docs/ARCHITECTURE.md, "Shutdown"):
    /// 1. the server (JSON lines and PostgreSQL): stops accepting connections and answers the
    ///    queries in flight, each after its record is durable; failed-login counts are recorded;
    /// 2. the policy watcher: no reload once the last query is answered;
    /// 3. the refusal summaries: the counts not yet summarised are appended;
    /// 4. the ledger: the writer drains its queue, the chain's tail is anchored, the store closes.
    /// Then `run` returns and the process exits 0. On cancellation (a service failed) all stop at
    /// once; the ledger still closes, and a query it can no longer record fails closed.
    static func services(gateway: Gateway, server: JSONLinesServer) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        [
            .init(service: LedgerService(store: gateway.ledger)),
            .init(service: RefusalSummaryService(gateway: gateway)),
            .init(service: PolicyWatcher(gateway: gateway)),
            .init(service: server),
        ]
    }
}

extension ServeCommand {
    /// The demo consumer and its key, published in `Policies/consumers.yaml` for the demo only.
    static let demo = (consumer: "analyst-a", key: "sg_demo_analyst_a_2026")

    /// A line to copy and paste: `sandgate query --connect` with the demo key when the demo
    /// consumer is configured with it, otherwise with placeholders for the operator's own.
    /// A psql line to copy: with the demo key when the demo consumer can log in over PostgreSQL.
    static func psqlLine(gateway: Gateway, host: String, port: Int) -> String {
        let connect = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        let dataset = gateway.datasetNames.first ?? "DATASET"
        if gateway.authenticate(consumer: demo.consumer, key: demo.key) != nil, gateway.consumers.consumers[demo.consumer]?.scram != nil,
           gateway.consumers.consumers[demo.consumer]?.grants[dataset] != nil {
            return "  or: PGPASSWORD=\(demo.key) psql 'host=\(connect) port=\(port) user=\(demo.consumer) dbname=\(dataset)'"
        }
        return "  or: PGPASSWORD=<key> psql 'host=\(connect) port=\(port) user=<consumer> dbname=\(dataset)'"
    }

    static func tryLine(gateway: Gateway, host: String, port: Int) -> String {
        let program = CommandLine.arguments.first.map { $0.contains("/") ? $0 : "sandgate" } ?? "sandgate"
        let connect = (host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        let dataset = gateway.datasetNames.first ?? "DATASET"
        let table = gateway.runtime(dataset)?.policy.tables.first { $0.access == .rows }?.name
        let sql = table.map { "SELECT * FROM \($0) LIMIT 5" } ?? "SELECT 1"
        if gateway.authenticate(consumer: demo.consumer, key: demo.key) != nil, gateway.consumers.consumers[demo.consumer]?.grants[dataset] != nil {
            return "Try (the demo key of \(demo.consumer)):\n  SANDGATE_KEY=\(demo.key) \(program) query --connect \(connect) --as \(demo.consumer) --dataset \(dataset) \"\(sql)\""
        }
        return "Try: SANDGATE_KEY=<key> \(program) query --connect \(connect) --as <consumer> --dataset \(dataset) \"\(sql)\""
    }
}

/// `HOST:PORT`.
struct Address {
    let host: String
    let port: Int

    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        let host = String(text[..<colon])
        guard !host.isEmpty else { return nil }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.port = port
    }

    /// True when binding this IPv4 address fails because something else holds it: tells "in
    /// use" apart from other failures by errno, not by the text of the server's error.
    var isInUse: Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else { return false }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound != 0 && errno == EADDRINUSE
    }
}

extension ServeCommand {
    /// An exclusive lock on `<state>/serve.lock`, or a clear refusal when another server holds it.
    static func lockState(_ state: String) throws -> Int32 {
        try? FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let path = (state as NSString).appendingPathComponent("serve.lock")
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Failure("unavailable: cannot open \(path)") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw Failure("unavailable: another `sandgate serve` is using the state directory \(state); give each gateway node its own --state (with a PostgreSQL ledger shared through --ledger or sandgate.yaml for several nodes)")
        }
        return descriptor
    }
}
