import Logging
import NIOCore
import NIOPosix
import SandgateCore
import SandgatePolicy
import SandgateSQLite

/// The steps the protocol state cannot take itself: the consumer list for SCRAM and the login,
/// the failed-login record, and work on the workers — every query (data and catalog) through
/// `QueryAdmission`, the one admission path.
extension PGSession {
    // MARK: Authentication

    /// The exchange for the claimed name: its verifier, or the decoy (same exchange for names that
    /// do not exist, so the protocol does not tell which do).
    func startSCRAM(user: String, clientFirst: [UInt8]) -> Result<SCRAMExchange, SCRAMFailure> {
        let known = Name.isValid(user) ? services.gateway.consumers.consumers[user] : nil
        return SCRAMExchange.start(clientFirst: clientFirst, verifier: known?.scram, name: user, secret: services.pgSecret)
    }

    /// The proof matched: the consumer must still have a verifier and a grant for the dataset.
    func login(user: String, signature: [UInt8], context: ChannelHandlerContext) -> [PGAction] {
        let gateway = services.gateway
        guard let declared = gateway.consumers.consumers[user], declared.scram != nil else { return protocolState.loginRejected() }
        services.state.authSucceeded(consumer: declared.name)
        services.state.authenticated(context.channel, address: address)
        let dataset = protocolState.session.dataset
        guard declared.grants[dataset] != nil, gateway.runtime(dataset) != nil else {
            return protocolState.datasetRefused(consumer: declared.name, granted: gateway.grantedDatasets(consumer: declared.name))
        }
        let key = backends.register(cancellation: cancellation)
        processID = key.processID
        return protocolState.loginSucceeded(consumer: declared.name, signature: signature, backendKey: key)
    }

    /// Failures are counted and recorded on a worker, then answered after the back-off.
    func recordFailedLogin(user: String, context: ChannelHandlerContext) {
        let loop = context.eventLoop, services = services, address = address
        let recorded = services.workers.runIfActive(eventLoop: loop) { services.loginFailed(address: address, name: user) }
        recorded.flatMap { _ in
            loop.scheduleTask(in: services.state.authDelay(address: address, consumer: Name.isValid(user) ? user : "")) {}.futureResult
        }.hop(to: loop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success: perform(protocolState.failedLoginRecorded(), context: context)
            case .failure: messageDone(context: context)
            }
        }
    }

    // MARK: Statement text

    /// Tokenizes and classifies statement text: short texts on the event loop (microseconds),
    /// longer ones on the decoder threads, as JSON lines decodes long lines, so that one Parse of
    /// 200,000 columns or a Query of 500,000 semicolons cannot hold the loop that answers every
    /// other client. The connection handles one message at a time, so it has at most one text
    /// there, bounded by the message limit, and its later messages wait in order.
    func prepare(_ preparation: PGPreparation, context: ChannelHandlerContext) {
        guard preparation.textBytes > services.state.configuration.inlineDecodeBytes else {
            return perform(protocolState.statementsPrepared(preparation.prepare()), context: context)
        }
        let loop = context.eventLoop
        services.decoders.runIfActive(eventLoop: loop) { preparation.prepare() }.hop(to: loop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let prepared): perform(protocolState.statementsPrepared(prepared), context: context)
            case .failure:
                // The decoder threads stopped (shutdown): nothing to answer, as for work.
                protocolState.workAbandoned()
                messageDone(context: context)
            }
        }
    }

    // MARK: Work

    /// Runs `work` off the event loop and feeds its outcome to the state.
    func run(_ work: PGWork, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let outcome: EventLoopFuture<PGWorkOutcome>
        switch work {
        case .query(let sql, let parameters, let purpose): outcome = query(sql, parameters: parameters, purpose: purpose, on: loop)
        case .catalog(let sql, let parameters, let purpose): outcome = catalogQuery(sql, parameters: parameters, purpose: purpose, on: loop)
        case .columns(let sql, let purpose): outcome = columns(sql, purpose: purpose, on: loop)
        }
        outcome.hop(to: loop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let outcome): perform(protocolState.workFinished(outcome), context: context)
            case .failure:
                // The workers stopped before the work started: nothing to answer, as before.
                protocolState.workAbandoned()
                messageDone(context: context)
            }
        }
    }

    private func request(_ sql: String, parameters: QueryParameters = .none, purpose: String?) -> QueryRequest {
        let session = protocolState.session
        return QueryRequest(consumer: session.consumer, dataset: session.dataset, sql: sql, parameters: parameters,
                            cancellation: cancellation, clientAddress: address, purpose: purpose)
    }

    private func query(_ sql: String, parameters: QueryParameters, purpose: String?, on loop: any EventLoop) -> EventLoopFuture<PGWorkOutcome> {
        cancellation.reset()
        // Overload refusals are recorded like every authenticated request, on a worker.
        return QueryAdmission(services: services).query(request(sql, parameters: parameters, purpose: purpose), on: loop) { $0 }.map { answer in
            switch answer {
            case .answered(let response): .answered(response)
            case .unavailable(let error): .refused(error)
            }
        }
    }

    private func columns(_ sql: String, purpose: String?, on loop: any EventLoop) -> EventLoopFuture<PGWorkOutcome> {
        let request = QueryRequest(consumer: protocolState.session.consumer, dataset: protocolState.session.dataset, sql: sql,
                                   clientAddress: address, purpose: purpose)
        let gateway = services.gateway
        return services.workers.runIfActive(eventLoop: loop) { gateway.columns(request) }.map { outcome in
            switch outcome {
            case .success(let columns): .columns(columns.map { PGColumn(name: $0.name, type: PGType($0.type.kind)) })
            case .failure(let error): .refused(error)
            }
        }
    }

    /// A catalog query: the grant checked, then through the consumer's admission (in-flight cap,
    /// refusals recorded) like its data queries, answered from the session's catalog on a worker.
    private func catalogQuery(_ sql: String, parameters: [SQLValue], purpose: String?, on loop: any EventLoop) -> EventLoopFuture<PGWorkOutcome> {
        let box = catalog, gateway = services.gateway, logger = services.logger
        let consumer = protocolState.session.consumer, dataset = protocolState.session.dataset
        // A consumer or grant revoked since login ends the session here as in a data query.
        guard gateway.consumers.consumers[consumer]?.grants[dataset] != nil, let runtime = gateway.runtime(dataset) else {
            return loop.makeSucceededFuture(.refused(GatewayError(.authFailed, "consumer '\(consumer)' has no grant for dataset '\(dataset)' any more")))
        }
        let version = runtime.policy.version
        var request = QueryRequest(consumer: consumer, dataset: dataset, sql: sql, clientAddress: address, purpose: purpose)
        request.kind = .catalog
        let answer = QueryAdmission(services: services).admit(request, on: loop, refused: { response -> Result<PGCatalog.Answer, GatewayError> in
            .failure(response.error ?? GatewayError(.overloaded, "refused"))
        }) { done in
            let outcome = Self.catalogAnswer(sql, parameters: parameters, box: box, gateway: gateway, runtime: runtime, version: version,
                                             dataset: dataset, consumer: consumer)
            done(outcome, "catalog")
        }
        return answer.map { answer in
            switch answer {
            case .answered(.success(let answer)): return .catalog(answer)
            case .answered(.failure(let error)):
                logger.debug("catalog query refused", metadata: ["sql": "\(sql.prefix(4000))", "error": "\(error.message)"])
                return .refused(error)
            case .unavailable(let error): return .refused(error)
            }
        }
    }

    /// The answer of a catalog query from the session's catalog, rebuilt when a reload changed
    /// the policy (a column hidden since must disappear). Runs on a worker.
    private static func catalogAnswer(_ sql: String, parameters: [SQLValue], box: CatalogBox, gateway: Gateway, runtime: DatasetRuntime,
                                      version: String, dataset: String, consumer: String) -> Result<PGCatalog.Answer, GatewayError> {
        if box.catalog?.policyVersion != version { box.catalog = nil }
        if box.catalog == nil {
            guard case .success(let description) = gateway.describe(dataset: dataset, consumer: consumer) else {
                return .failure(GatewayError(.unavailable, "the dataset's description is not available"))
            }
            do {
                box.catalog = try PGCatalog(description: description, declaredTypes: runtime.facts.declaredTypes, consumer: consumer)
                box.catalog?.policyVersion = version
            } catch {
                return .failure(GatewayError(.internal, "cannot build the catalog"))
            }
        }
        return box.catalog?.run(sql, parameters: parameters) ?? .failure(GatewayError(.internal, "no catalog"))
    }
}
