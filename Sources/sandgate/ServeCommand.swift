import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateLedger
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
        let gateway: Gateway
        do {
            gateway = try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: common.policies, stateDirectory: common.state, poolSize: workers), logger: logger)
        } catch {
            throw Failure("\(error.code.rawValue): \(error.message)")
        }
        gateway.warmUp()
        let watcher = PolicyWatcher(gateway: gateway)
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
            throw Failure("unavailable: cannot listen on \(listen): \(error)")
        }
        var postgres = ""
        if let pgListen, let pgAddress = Address(pgListen) {
            do {
                let tls = pgTlsCert.flatMap { cert in pgTlsKey.map { PostgresTLS(certificatePath: cert, keyPath: $0) } }
                let pgPort = try await server.startPostgres(host: pgAddress.host, port: pgAddress.port, tls: tls)
                postgres = "\n  psql: psql 'host=\(pgAddress.host) port=\(pgPort) user=analyst-a dbname=retail'   (password: the consumer's API key)"
            } catch {
                await server.shutdown()
                throw Failure("unavailable: cannot listen on \(pgListen) (--pg-listen): \(error)")
            }
        }
        writeOut("""
            sandgate is serving \(gateway.datasetNames.joined(separator: ", ")) on \(address.host):\(port) (JSON lines)\(postgres.isEmpty ? "" : " and PostgreSQL").\(postgres)
            Try:  printf '%s\\n' '{"op":"auth","consumer":"analyst-a","key":"…"}' '{"id":1,"op":"query","dataset":"retail","sql":"SELECT city, count(*) FROM customers GROUP BY city"}' | nc \(address.host) \(port)
              or: SANDGATE_KEY=… sandgate query --connect \(address.host):\(port) --as analyst-a --dataset retail "SELECT …"
            Stop with Ctrl-C.

            """)
        // SIGINT/SIGTERM end the group gracefully: the server stops accepting and finishes the
        // queries in flight, then the watcher stops and the ledger closes.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("service group ended", metadata: ["error": "\(error)"])
        }
        logger.info("closing the ledger")
        watcher.stop()
        await server.shutdown()
        // The last checkpoint anchors the chain's tail (docs/CONTRACT.md §7).
        gateway.ledger.close()
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
}
