import Foundation
import Logging
import NIOCore
import NIOPosix
import SandgateCore
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The JSON-lines front end (DESIGN.md §5) on SwiftNIO: framing and short lines on the event
/// loop, long lines decoded on their own threads, queries and ledger writes on a bounded pool of
/// workers.
public final class JSONLinesServer: Sendable {
    private let configuration: ServerConfiguration
    private let group: MultiThreadedEventLoopGroup
    private let services: ServerServices
    /// Running PostgreSQL backends (CancelRequest), shared by the PostgreSQL listener.
    let backends = PGBackends()
    private let channel = Mutex<(any Channel)?>(nil)
    private let stopped = Mutex(false)

    public init(gateway: Gateway, configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.ioThreads))
        let workers = NIOThreadPool(numberOfThreads: max(1, configuration.workers))
        workers.start()
        let decoders = NIOThreadPool(numberOfThreads: max(1, configuration.decodeThreads))
        decoders.start()
        services = ServerServices(
            gateway: gateway, workers: workers, decoders: decoders, state: ServerState(configuration: configuration), logger: logger)
    }

    /// Binds and starts accepting; returns the port actually bound (useful with port 0).
    public func start() async throws -> Int {
        let services = self.services
        let configuration = self.configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.idleTimeout),
                        ByteToMessageHandler(LineFramer(maxLength: configuration.maxLineBytes)),
                        RequestHandler(services: services),
                    ])
                }
            }
        let bound = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        channel.withLock { $0 = bound }
        let port = bound.localAddress?.port ?? configuration.port
        services.logger.info("listening", metadata: ["address": "\(configuration.host):\(port)", "workers": "\(configuration.workers)"])
        return port
    }

    /// Stops accepting, lets queries in flight finish (up to `grace`), then closes everything.
    /// Ledger appends are synchronous, so every released result's record is already durable.
    /// Refusal summaries are `RefusalSummaryService`'s, shut down after this.
    /// Idempotent: a second call returns at once.
    public func shutdown(grace: Duration = .seconds(10)) async {
        guard stopped.withLock({ stopped in defer { stopped = true }; return !stopped }) else { return }
        for listening in [channel.withLock { $0 }, postgresChannel.withLock { $0 }] {
            try? await listening?.close().get()
        }
        let seconds = grace.components.seconds, fraction = grace.components.attoseconds / 1_000_000_000
        await services.state.waitUntilIdle(grace: .nanoseconds(seconds * 1_000_000_000 + fraction), on: group.next())
        try? await group.shutdownGracefully()
        try? await services.workers.shutdownGracefully()
        try? await services.decoders.shutdownGracefully()
        // Failed logins counted but not yet summarised in the ledger.
        let interval = Int(configuration.authRecordInterval.nanoseconds / 1_000_000_000)
        for summary in services.state.drainFailureSummaries() {
            services.gateway.recordAuthenticationFailureSummary(source: summary.source, count: summary.count, seconds: interval)
        }
        services.logger.info("stopped")
    }

    /// Starts the PostgreSQL-protocol listener (DESIGN.md §6) on `host`:`port`, sharing this
    /// server's gateway, workers and governance (connection caps, login back-off, in-flight caps);
    /// returns the port bound. Closed by `shutdown`.
    public func startPostgres(host: String, port: Int, tls: PostgresTLS? = nil) async throws -> Int {
        let services = self.services, backends = self.backends, configuration = self.configuration
        let tlsContext = try tls.map { try $0.context() }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.idleTimeout),
                        ByteToMessageHandler(PGFrontendDecoder(maxMessageBytes: Gateway.maxSQLBytes + 64 * 1024)),
                        PGSession(services: services, backends: backends, tls: tlsContext),
                    ])
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        postgresChannel.withLock { $0 = bound }
        let actual = bound.localAddress?.port ?? port
        services.logger.info("listening", metadata: ["address": "\(host):\(actual)", "protocol": "postgresql"])
        return actual
    }

    private let postgresChannel = Mutex<(any Channel)?>(nil)

    /// Open connections and queries in flight (for tests and the `stats` op).
    public var connections: Int { services.state.connections }
}

/// As a service (swift-service-lifecycle): the listeners are bound before the group runs (so the
/// command can print the ports); `run` waits for graceful shutdown (SIGINT/SIGTERM through the
/// ServiceGroup) or cancellation, then stops accepting and lets the queries in flight finish.
/// Last in the serving command's group, so it is shut down first.
extension JSONLinesServer: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// A certificate chain and key (PEM files) for the PostgreSQL listener: SSLRequest is then
/// answered `S` and the session continues over TLS.
public struct PostgresTLS: Sendable {
    public let certificatePath: String
    public let keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    func context() throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: configuration)
    }
}
