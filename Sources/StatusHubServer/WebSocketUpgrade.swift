import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import StatusHubCore
import WSCore

/// The node's WebSocket upgrades (`GET /v1/ws`): decides each one and installs its session.
///
/// Every session is served by channel handlers (`WebSocketSessionHandler` reads, `SessionInbox` handles messages,
/// `DirectFrameWriter` writes), so an idle connection holds no task, compressed or not: permessage-deflate is
/// negotiated here (`PerMessageDeflate`), outgoing messages are compressed once per event (`WireFrame`), client
/// messages inflated per connection (`MessageInflater`). (Until issue 14 compressed sessions ran through the
/// WebSocket library, a task and a zlib compressor per connection; nothing here uses the library's session any
/// more, only its extension-header parser.)
///
/// One per node: what a connection keeps (its inbox's closures) holds a reference to it, not a copy of the node's
/// `StatusHub`, whose configuration alone is over a kilobyte.
final class WebSocketUpgrade: Sendable {
    /// How long a client has to answer the hub's close frame before the socket is closed.
    static let closeTimeout = TimeAmount.seconds(5)

    private let access: HubAccess
    private let ceiling: AcceptCeiling
    private let draining: DrainFlag
    private let connectionIDs: ConnectionIDs
    /// The node's ping timers, one per event loop: only WebSocket sessions are pinged.
    private let pingWheels: PingWheels
    private let sessions: WebSocketSession.Services
    private var limits: HubConfig.WebSocket { sessions.limits }
    private var metrics: HubMetrics { sessions.metrics }

    init(hub: StatusHub) {
        access = hub.access
        ceiling = hub.acceptCeiling
        draining = hub.draining
        connectionIDs = hub.connectionIDs
        pingWheels = PingWheels(
            interval: .nanoseconds(Int64(hub.config.websocket.pingIntervalSeconds * 1_000_000_000)), closeTimeout: Self.closeTimeout)
        sessions = WebSocketSession.Services(
            fanOut: hub.fanOut, flushers: hub.flushers, engine: hub.engine, limits: hub.config.websocket, metrics: hub.metrics,
            latency: hub.latency)
    }

    /// Whether this node takes a WebSocket upgrade of `target` now (`HubHTTP1Channel.TakesUpgrade`): `/v1/ws`, while
    /// the node is not draining. Any other request's `Upgrade` is ignored, so a draining node answers the handshake
    /// as `GET /v1/ws`'s route does, 503 naming `node`.
    func takesUpgrade(_ target: String) -> Bool {
        target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first == "/v1/ws" && !draining.isSet
    }

    /// Decides an upgrade request (`HubHTTP1Channel.Decide`), on the connection's event loop: `GET /v1/ws` while the
    /// node is not draining, counted against the connection limits; a refused client is upgraded only to be closed
    /// with a code saying why (`HubAccess.Decision`), the token is verified right after the handshake. A query that
    /// subscribes (`SubscribeQuery`) is checked before anything else: a malformed one gets a JSON 400 and no upgrade.
    func decide(_ head: HTTPRequestHead, channel: any Channel, logger: Logger) -> HubHTTP1Channel.Decision {
        guard takesUpgrade(head.uri) else { return .decline }
        let target = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let asked: SubscribeQuery
        do {
            asked = try SubscribeQuery(
                parsing: target.count > 1 ? String(target[1]) : "", channelsOptional: true, maxPatterns: limits.maxSubscriptions)
        } catch {
            return .refuse(HubHTTP1Channel.Refusal(field: error.field, reason: error.reason))
        }
        // The address the connection is counted under, kept by the release below for the connection's life.
        let address: String?
        let refusal: (code: CloseCode, reason: String)?
        switch access.admitConnection(
            channel: channel, forwardedFor: head.headers["X-Forwarded-For"], forwarded: head.headers["Forwarded"]) {
        case .admitted(let admitted): (address, refusal) = (admitted, nil)
        case .refused(let code, let reason): (address, refusal) = (nil, (code, reason))
        }
        let abandon: @Sendable () -> Void = { [self] in giveBack(address) }
        // Once the session is installed it ends the connection's count against the open-files limit too (the HTTP
        // path that would have is over).
        let release: @Sendable () -> Void = { [self] in
            giveBack(address)
            ceiling.closed()
        }
        var offers = HTTPFields()
        for (name, value) in head.headers where name.lowercased() == "sec-websocket-extensions" {
            // Several offers may share one header, comma-separated (RFC 6455 §9.1); the library's parser takes a
            // header as one.
            for offer in value.split(separator: ",") { offers.append(HTTPField(name: .secWebSocketExtensions, value: String(offer))) }
        }
        // The header's, else the query's (read with the rest of the query above).
        let token = SubscriberTokens.token(authorization: head.headers.first(name: "Authorization"), path: nil) ?? asked.token
        let deflate = limits.compression ? PerMessageDeflate.negotiate(WebSocketExtensionHTTPParameters.parseHeaders(offers)) : nil
        var answer = HTTPHeaders()
        if let deflate { answer.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
        return .upgrade(HubHTTP1Channel.Upgrade(headers: answer, abandon: abandon) { [self] channel in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
            let inflater = deflate.map { _ in MessageInflater() }
            try pipeline.addHandler(RequireMaskedFrames(inflater: inflater), position: .after(decoder))
            // Behind the decoder, so its close frame passes the direct writer's close watch (behind the encoder).
            try Heartbeat.add(to: channel, wheels: pingWheels)
            let direct = try DirectFrameWriter.add(to: channel, deflateWindowBits: deflate?.serverWindowBits, compressions: metrics.messagesDeflated)
            let inbox = SessionInbox(
                channel: channel,
                opening: { [self] in
                    await access.authenticate(token: token).map { makeSession(for: $0, channel: channel, direct: direct, logger: logger) }
                },
                subscribing: asked.subscribes ? asked : nil, release: release)
            try WebSocketSessionHandler.add(
                to: channel, maxMessageBytes: limits.maxFrameBytes, inbox: inbox, refusal: refusal, inflater: inflater)
        })
    }

    /// Gives back the place `admitConnection` counted under `address` (nil: it counted none, the connection was refused).
    private func giveBack(_ address: String?) {
        address.map { access.connections.release($0) }
    }

    func makeSession(for subscriber: Subscriber, channel: any Channel, direct: DirectFrameWriter, logger: Logger) -> WebSocketSession {
        var session = WebSocketSession(
            connection: Connection(
                id: connectionIDs.next(), outboxCapacity: limits.outboxCapacity,
                conflateAbove: limits.conflateAbove, claims: subscriber.claims),
            channel: channel, direct: direct, services: sessions, logger: logger)
        session.access = access.session(for: subscriber)
        return session
    }
}
