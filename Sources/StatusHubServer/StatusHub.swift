import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import StatusHubCore
import Synchronization

/// One hub node: the engine, the fan-out that engine feeds, and the HTTP/WebSocket application in front.
public struct StatusHub: Sendable {
    public let config: HubConfig
    public let engine: any Engine
    public let metrics = HubMetrics()
    let fanOut: FanOut
    let latency: LatencyTelemetry
    let connectionIDs = ConnectionIDs()
    let draining = DrainFlag()
    let access: HubAccess
    /// Connections of every kind, held below the open-files limit.
    let acceptCeiling: AcceptCeiling
    /// Sources of events besides HTTP ingest (the MQTT bridge), run beside the engine and reported by `/ready`.
    public var bridges: [any IngestBridge] = []

    /// Throws `ConfigError` when a file the config names (JWT key, TLS certificate or key) cannot be used, so a
    /// misconfigured node stops at start-up instead of refusing every client later.
    public init(config: HubConfig, engine: any Engine) throws {
        self.config = config
        self.engine = engine
        self.descriptors = DescriptorLimit.current()
        self.latency = LatencyTelemetry(catalog: config.catalog, registry: metrics.registry)
        self.fanOut = FanOut(
            metrics: metrics, catalog: config.catalog, latency: latency,
            recent: RecentFeed(kept: config.websocket.recentFeedKept, catalog: config.catalog))
        self.flushers = LoopFlushers(delay: .microseconds(Int64(config.websocket.writeDelayMs * 1000)), latency: latency)
        self.access = try HubAccess(config: config, descriptors: descriptors)
        self.acceptCeiling = AcceptCeiling(descriptors: descriptors, metrics: metrics)
        metrics.connectionsLimit.set(Double(access.connections.maxTotal))
        self.servedCertificate = try ServedCertificate(config.server)
    }

    /// When the process's open-files limit holds the node below `server.max_connections` (`ConnectionLimiter`): the
    /// limit, and the connections it leaves room for; nil when the config's limit is the one in force.
    public var connectionsHeldByDescriptors: (limit: DescriptorLimit, connections: Int)? {
        access.connections.totalSetBy.map { ($0, access.connections.maxTotal) }
    }

    /// The `Server` header of every answer.
    static let serverName = "statushub"

    /// The open-files limit as the node started, which both of its connection ceilings leave room in: the
    /// subscribers' (`ConnectionLimiter`) and every connection's (`AcceptCeiling`).
    let descriptors: DescriptorLimit

    /// The TLS certificate and key, when the node serves TLS.
    private let servedCertificate: ServedCertificate?

    /// Loads the TLS certificate and key files again (SIGHUP): new connections get the new pair, open ones keep
    /// theirs. nil when the node serves plain HTTP; throws `ConfigError`, and keeps the pair in use, when the files
    /// cannot be used.
    /// - Returns: the certificate now served, described.
    public func reloadCertificate() throws -> String? {
        try servedCertificate?.reload()
    }
    let flushers: LoopFlushers

    /// Everything a node runs, in start order, for one `ServiceGroup`: the application (with the engine's
    /// subscription loop inside it) and the drain that a graceful shutdown (SIGTERM) runs first — services stop
    /// in reverse order — so sockets are drained and closed with 1001 before the server goes away.
    public func makeServices(
        logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> [any Service] {
        [makeApplication(logger: logger, onServerRunning: onServerRunning), ShutdownDrain(hub: self, logger: logger)]
    }

    /// Stops taking events and connections; waits until the fan-out has passed every event this node acknowledged
    /// (they come back through the engine's subscription after the acknowledgement); then asks every connection to
    /// send what it has queued and close with 1001, and waits for them. All of it within
    /// `server.shutdown_grace_seconds`.
    func drain(logger: Logger) async {
        draining.set()
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(config.server.shutdownGraceSeconds * 1000)))
        while !fanOut.watermark.closeIfCaughtUp(force: ContinuousClock.now >= deadline) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let connections = fanOut.openConnections
        logger.notice("draining \(connections.count) WebSocket connections")
        for connection in connections { connection.goAway() }
        while !fanOut.openConnections.isEmpty, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The node as a Hummingbird application whose services include the engine's subscription loop.
    /// `onServerRunning` receives the bound port (port 0 in tests).
    public func makeApplication(
        logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(config.server.host, port: config.server.port), serverName: Self.serverName,
                backlog: config.server.listenBacklog),
            services: [EngineService(engine: engine, sink: fanOut, recent: fanOut.recent, logger: logger)] + bridges.map { BridgeService(bridge: $0) },
            onServerRunning: { [acceptCeiling] channel in
                // On the listening socket before anyone is told the port; what connected in between is counted as its
                // pipeline is set up.
                do {
                    try await acceptCeiling.holdAccepts(of: channel, logger: logger)
                } catch {
                    logger.error("cannot hold accepts at the open-files limit", metadata: ["error": "\(error)"])
                }
                await onServerRunning(channel.localAddress?.port ?? 0)
            },
            logger: logger
        )
    }

    /// HTTP/1.1 with the upgrade to `/v1/ws` (`HubHTTP1Channel`, decided by `WebSocketUpgrade`), behind TLS when the
    /// config names a certificate. `idle_timeout_seconds` bounds the wait for a first complete request head
    /// (`RequestHeadDeadline`: slowloris, silent or half-open sockets, stalled TLS handshakes), idle keep-alive
    /// between requests (Hummingbird's idle timeout), and the dropped body after a closing answer
    /// (`HTTP1ConnectionGuard`). Upgraded connections are watched by the WebSocket ping instead.
    private var server: HTTPServerBuilder {
        let timeout = TimeAmount.milliseconds(Int64(config.server.idleTimeoutSeconds * 1000))
        let http1 = HTTP1Channel.Configuration(idleTimeout: timeout)
        let maxBodyBytes = config.server.maxBodyBytes
        let maxFrameBytes = config.websocket.maxFrameBytes
        let upgrade = WebSocketUpgrade(hub: self)
        let decide: HubHTTP1Channel.Decide = { head, channel, logger in upgrade.decide(head, channel: channel, logger: logger) }
        let ingest = makeIngestController()
        return HTTPServerBuilder { [servedCertificate, acceptCeiling] responder in
            let channel = GuardedHTTP1Channel(
                base: HubHTTP1Channel(
                    responder: responder, configuration: http1, maxFrameSize: maxFrameBytes, decide: decide,
                    takesUpgrade: { upgrade.takesUpgrade($0) }, ingest: ingest, ceiling: acceptCeiling),
                deadline: timeout, maxBodyBytes: maxBodyBytes, decoderLimits: http1.httpDecoder, ceiling: acceptCeiling)
            return try servedCertificate.map { try TLSChannel(channel, tlsConfiguration: $0.configuration) } ?? channel
        }
    }

    /// `POST /v1/events`, for both request paths (`IngestHandler` and the router's route).
    func makeIngestController() -> IngestController {
        IngestController(
            engine: engine, limits: config.server, metrics: metrics, draining: draining, watermark: fanOut.watermark, keys: access.publisherKeys,
            rateLimiter: access.ingestRate, validator: EventValidator(catalog: config.catalog, maxClockAheadSeconds: config.server.maxClockAheadSeconds))
    }

    func makeRouter() -> Router<HubRequestContext> {
        let router = Router(context: HubRequestContext.self)
        let state = StateController(
            engine: engine, tokens: access.subscriberTokens, catalog: config.catalog, maxPatterns: config.websocket.maxSubscriptions)
        router.post("/v1/events", use: makeIngestController().handle)
        router.get("/v1/state/:entity_type/:entity_id", use: state.entity)
        router.get("/v1/state", use: state.matching)
        router.get("/v1/lines", use: state.lines)
        let tallies = TallyController(engine: engine, tokens: access.subscriberTokens, catalog: config.catalog)
        router.get("/v1/counters", use: tallies.counters)
        router.get("/v1/allocations/active", use: tallies.activeAllocations)
        let sessions = SessionController(
            engine: engine, tokens: access.subscriberTokens, maxBytes: config.server.maxSessionBytes,
            expirySeconds: config.server.sessionExpirySeconds)
        router.get("/v1/session", use: sessions.read)
        router.put("/v1/session", use: sessions.store)
        router.delete("/v1/session", use: sessions.delete)
        let catalog = CatalogController(catalog: config.catalog, cacheTTL: config.cacheTTL, tokens: access.subscriberTokens)
        router.get("/v1/catalog", use: catalog.handle)
        router.get("/v1/sse", use: ServerSentEvents(hub: self, logger: Logger(label: "statushub.sse")).handle)
        router.get("/v1/slo") { [latency, access] request, _ in
            // The hub's figures are node-wide, the clients' the token's tenant's: any valid subscriber token while auth is on.
            let subscriber: Subscriber
            switch await access.authenticate(
                token: SubscriberTokens.token(authorization: request.headers[.authorization], path: request.uri.string))
            {
            case .success(let authenticated): subscriber = authenticated
            case .failure(let refusal): return JSONResponse.error(.unauthorized, field: "Authorization", reason: refusal.reason)
            }
            var body: [UInt8] = []
            latency.sloJSON(tenant: subscriber.tenant).write(into: &body)
            return JSONResponse.bytes(body)
        }
        Dashboard.register(on: router)
        router.get("/health") { _, _ in JSONResponse.bytes(Array(#"{"status":"ok"}"#.utf8)) }
        router.get("/ready") { [engine, draining, bridges] _, _ in
            if draining.isSet {
                return JSONResponse.error(.serviceUnavailable, field: "node", reason: "shutting down", headers: [.retryAfter: "1"])
            }
            guard engine.isReady else {
                let cause = engine.unreadyReason.map { " (last attempt: \($0))" } ?? ""
                return JSONResponse.error(.serviceUnavailable, field: "engine", reason: "not connected\(cause); events cannot be accepted yet")
            }
            // Connected is not enough: a full Redis (maxmemory, noeviction) refuses every event.
            if let probe = engine as? any WriteProbe, let refusal = await probe.writeRefusal() {
                return JSONResponse.error(.serviceUnavailable, field: "engine", reason: "\(refusal); events cannot be accepted", headers: [.retryAfter: "1"])
            }
            // A bridge that lost its broker does not stop the node serving dashboards and HTTP ingest: still 200,
            // with the bridge named under "degraded".
            var degraded = bridges.compactMap { bridge in
                bridge.problem.map { JSONValue.object(["field": .string(bridge.name), "reason": .string($0)]) }
            }
            if let missing = (engine as? any PartialAvailability)?.unavailableParts {
                degraded.insert(.object(["field": .string("engine"), "reason": .string(missing)]), at: 0)
            }
            guard !degraded.isEmpty else { return JSONResponse.bytes(Array(#"{"status":"ready"}"#.utf8)) }
            var body: [UInt8] = []
            JSONValue.object(["status": .string("ready"), "degraded": .array(degraded)]).write(into: &body)
            return JSONResponse.bytes(body)
        }
        // Reached only when a request for /v1/ws was not upgraded. Its query is judged as a handshake's would be, so a
        // browser, which cannot read the 400 that refused its handshake, learns why by asking again without Upgrade.
        router.get("/v1/ws") { [draining, maxPatterns = config.websocket.maxSubscriptions] request, _ in
            if draining.isSet {
                return JSONResponse.error(.serviceUnavailable, field: "node", reason: "shutting down; connect to another node", headers: [.retryAfter: "1"])
            }
            do throws(SubscribeQuery.Refusal) {
                _ = try SubscribeQuery(parsing: request.uri.query ?? "", channelsOptional: true, maxPatterns: maxPatterns)
            } catch {
                return JSONResponse.error(.badRequest, field: error.field, reason: error.reason)
            }
            return JSONResponse.error(.upgradeRequired, field: "Upgrade", reason: "GET /v1/ws is a WebSocket endpoint; send Upgrade: websocket")
        }
        router.get("/metrics") { [metrics, latency, scrapeKey = access.scrapeKey] request, _ in
            if let refusal = scrapeKey.refusal(authorization: request.headers[.authorization]) {
                return JSONResponse.error(.unauthorized, field: "Authorization", reason: refusal, headers: [.wwwAuthenticate: "Bearer"])
            }
            var text = metrics.prometheusText()
            latency.writeDeliveryHistogram(into: &text)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        // Last: it must wrap only the not-found responder, and it needs every route to name what a path allows.
        router.add(middleware: UnknownRouteAnswer(routes: router.routes))
        return router
    }
}

/// Runs the engine's background work (Redis subscription, cache sweeps) as a service of the node, and fills the
/// node's recent feed from the engine's history once its delivery began.
struct EngineService: Service, CustomStringConvertible {
    let engine: any Engine
    let sink: any EventSink
    let recent: RecentFeed
    let logger: Logger
    var description: String { "EngineService" }

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { [recent, engine, logger] in await recent.keepFilled(from: engine, logger: logger) }
                try await engine.run(delivering: sink)
                group.cancelAll()
            }
        }
    }
}

/// Runs a bridge (MQTT) as a service of the node; it stops first on shutdown (services stop in reverse order).
struct BridgeService: Service, CustomStringConvertible {
    let bridge: any IngestBridge
    var description: String { "BridgeService(\(bridge.name))" }

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await bridge.run()
        }
    }
}

/// Runs nothing until a graceful shutdown, then drains the node's sockets before the server stops.
struct ShutdownDrain: Service, CustomStringConvertible {
    let hub: StatusHub
    let logger: Logger
    /// ServiceGroup logs its services at debug: by name, not as a dump of the config (Redis password, secrets).
    var description: String { "ShutdownDrain" }

    func run() async throws {
        try? await gracefulShutdown()
        await hub.drain(logger: logger)
    }
}

/// Set once, when the node starts shutting down.
final class DrainFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

final class ConnectionIDs: Sendable {
    private let last = Atomic<UInt64>(0)
    func next() -> UInt64 { last.add(1, ordering: .relaxed).newValue }
}
