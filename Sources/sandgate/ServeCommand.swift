import ArgumentParser
import Foundation
import Logging
import SandgateCore
import SandgateLedger
import SandgateServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway: JSON lines over TCP, policies reloaded live, graceful shutdown on SIGINT/SIGTERM.")

    @OptionGroup var common: CommonOptions

    @Option(help: "JSON-lines listen address, HOST:PORT.")
    var listen = "127.0.0.1:7878"

    @Option(help: "PostgreSQL wire listen address (not built yet; accepted and ignored with a warning).")
    var pgListen: String?

    @Option(help: "Sandbox workers (default: number of cores).")
    var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Most open connections.")
    var maxConnections = 1024

    @Option(help: "Most queries one consumer may have running at once.")
    var maxInFlightPerConsumer = 8

    func validate() throws {
        guard Address(listen) != nil else { throw ValidationError("--listen must be HOST:PORT") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be between 1 and 256") }
        guard (1...100_000).contains(maxConnections) else { throw ValidationError("--max-connections must be between 1 and 100000") }
        guard (1...10_000).contains(maxInFlightPerConsumer) else { throw ValidationError("--max-in-flight-per-consumer must be between 1 and 10000") }
    }

    func run() throws {
        var logger = Logger(label: "sandgate")
        logger.logLevel = common.verbose ? .debug : .info
        let gateway: Gateway
        do {
            gateway = try Gateway(configuration: GatewayConfiguration(
                policiesDirectory: common.policies, stateDirectory: common.state, poolSize: workers,
                ledger: { [common, logger] () throws(LedgerError) in try common.openLedger(logger: logger) }), logger: logger)
        } catch {
            throw Failure("\(error.code.rawValue): \(error.message)")
        }
        gateway.warmUp()
        if pgListen != nil { logger.warning("the PostgreSQL front end is not built yet; --pg-listen is ignored") }
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
            port = try server.start()
        } catch {
            throw Failure("unavailable: cannot listen on \(listen): \(error)")
        }
        writeOut("""
            sandgate is serving \(gateway.datasetNames.joined(separator: ", ")) on \(address.host):\(port) (JSON lines).
            Try:  printf '%s\\n' '{"op":"auth","consumer":"analyst-a","key":"…"}' '{"id":1,"op":"query","dataset":"retail","sql":"SELECT city, count(*) FROM customers GROUP BY city"}' | nc \(address.host) \(port)
              or: SANDGATE_KEY=… sandgate query --connect \(address.host):\(port) --as analyst-a --dataset retail "SELECT …"
            Stop with Ctrl-C.

            """)
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        stop.wait()
        logger.info("shutting down: finishing queries in flight")
        watcher.stop()
        server.shutdown()
        // The last checkpoint anchors the chain's tail (docs/CONTRACT.md §7).
        gateway.ledger.close()
        sources.forEach { $0.cancel() }
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
