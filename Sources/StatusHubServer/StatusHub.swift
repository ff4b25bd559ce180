import Hummingbird
import HummingbirdWSCompression
import HummingbirdWebSocket
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
    private let connectionIDs = ConnectionIDs()

    public init(config: HubConfig, engine: any Engine) {
        self.config = config
        self.engine = engine
        self.fanOut = FanOut(metrics: metrics)
    }

    /// The node as a Hummingbird application whose services include the engine's subscription loop, so one
    /// `ServiceGroup` starts and stops everything. `onServerRunning` receives the bound port (port 0 in tests).
    public func makeApplication(
        logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            server: .http1WebSocketUpgrade(configuration: .init(http1: .init(), ws: webSocketConfiguration)) {
                request, channel, logger in
                guard request.path?.split(separator: "?", maxSplits: 1).first == "/v1/ws" else { return .dontUpgrade }
                return .upgrade([:]) { inbound, outbound, _ in
                    let session = WebSocketSession(
                        connection: Connection(id: connectionIDs.next(), outboxCapacity: config.websocket.outboxCapacity),
                        channel: channel, fanOut: fanOut, engine: engine, limits: config.websocket, metrics: metrics, logger: logger)
                    await session.run(inbound: inbound, outbound: outbound)
                }
            },
            configuration: ApplicationConfiguration(
                address: .hostname(config.server.host, port: config.server.port), serverName: "statushub"),
            services: [EngineService(engine: engine, sink: fanOut, logger: logger)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    var webSocketConfiguration: WebSocketServerConfiguration {
        let limits = config.websocket
        return WebSocketServerConfiguration(
            maxFrameSize: limits.maxFrameBytes,
            extensions: limits.compression ? [.perMessageDeflate(maxDecompressedFrameSize: limits.maxFrameBytes)] : [],
            autoPing: .enabled(timePeriod: .milliseconds(Int64(limits.pingIntervalSeconds * 1000))),
            closeTimeout: .seconds(5),
            validateUTF8: true
        )
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        let ingest = IngestController(engine: engine, limits: config.server, metrics: metrics)
        let state = StateController(engine: engine)
        router.post("/v1/events", use: ingest.handle)
        router.get("/v1/state/:entity_type/:entity_id", use: state.entity)
        router.get("/v1/state", use: state.matching)
        router.get("/health") { _, _ in JSONResponse.bytes(Array(#"{"status":"ok"}"#.utf8)) }
        router.get("/ready") { [engine] _, _ in
            engine.isReady
                ? JSONResponse.bytes(Array(#"{"status":"ready"}"#.utf8))
                : JSONResponse.error(.serviceUnavailable, field: "engine", reason: "not connected; events cannot be accepted yet")
        }
        router.get("/metrics") { [metrics] _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.prometheusText())))
        }
        return router
    }
}

/// Runs the engine's background work (Redis subscription, cache sweeps) as a service of the node.
struct EngineService: Service {
    let engine: any Engine
    let sink: any EventSink
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await engine.run(delivering: sink)
        }
    }
}

final class ConnectionIDs: Sendable {
    private let last = Atomic<UInt64>(0)
    func next() -> UInt64 { last.add(1, ordering: .relaxed).newValue }
}
