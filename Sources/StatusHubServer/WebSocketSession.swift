import Logging
import NIOCore
import NIOWebSocket
import StatusHubCore

/// One dashboard's WebSocket session: what it does with client messages, and the bookkeeping of its connection.
///
/// Served from channel handlers (`WebSocketUpgrade`: `WebSocketSessionHandler` reads, `SessionInbox` calls
/// `receive` in order, `DirectFrameWriter` writes; no task while idle), compressed or not. Every reply goes
/// through the outbox, so one writer touches the socket.
struct WebSocketSession: Sendable {
    /// What every session of the node uses, shared: held inline, the node's limits, engine, fan-out and the rest
    /// were ~120 bytes of every connection.
    final class Services: Sendable {
        let fanOut: FanOut
        /// The node's per-event-loop flushers, for the direct writer.
        let flushers: LoopFlushers
        let engine: any Engine
        let limits: HubConfig.WebSocket
        let metrics: HubMetrics
        /// Where `{"op":"report"}` samples go.
        let latency: LatencyTelemetry

        init(
            fanOut: FanOut, flushers: LoopFlushers, engine: any Engine, limits: HubConfig.WebSocket, metrics: HubMetrics,
            latency: LatencyTelemetry
        ) {
            self.fanOut = fanOut
            self.flushers = flushers
            self.engine = engine
            self.limits = limits
            self.metrics = metrics
            self.latency = latency
        }
    }

    let connection: Connection
    /// The socket underneath, to cut a client loose when even the close frame cannot reach it.
    let channel: any Channel
    /// Writes batches of frames below the WebSocket encoder.
    let direct: DirectFrameWriter
    let services: Services
    let logger: Logger
    /// Tenant, allowed patterns, token expiry and message rate (`SessionAccess`).
    var access: SessionAccess = .open

    var fanOut: FanOut { services.fanOut }
    var flushers: LoopFlushers { services.flushers }
    var engine: any Engine { services.engine }
    var limits: HubConfig.WebSocket { services.limits }
    var metrics: HubMetrics { services.metrics }
    var latency: LatencyTelemetry { services.latency }

    /// The connection joins fan-out.
    func open() {
        cutLooseWhenOverflowing()
        metrics.connections.increment()
        fanOut.opened(connection)
    }

    /// The connection leaves fan-out; its outbox ends.
    func close() {
        fanOut.closed(connection)
        connection.finish()
        metrics.connections.decrement()
    }

    /// One client text message, in order with the others. Returns the code to close the connection with, if the
    /// client keeps sending over its rate (1008).
    func receive(_ text: String) async -> CloseCode? {
        switch access.screenMessage() {
        case .pass:
            await handle(ClientMessage.decode(text.utf8))
        case .limited:
            reply(ServerMessage.error(
                id: nil, code: .rateLimited,
                message: "more than \(limits.maxMessagesPerSecond) messages per second (websocket.max_messages_per_second); message ignored"))
        case .close:
            return .policyViolation
        }
        return nil
    }

    /// A client that stopped reading leaves the writer blocked on a full socket, where it cannot even send the
    /// 4001 close frame. After an overflow, give the close frame a moment, then drop the TCP connection. A timer
    /// on the channel's loop rather than a task per connection waiting for an overflow that rarely comes.
    private func cutLooseWhenOverflowing() {
        connection.whenOverflowing { [metrics, logger, channel, id = connection.id] in
            metrics.slowConsumerCloses.increment()
            channel.eventLoop.scheduleTask(in: .seconds(1)) {
                guard channel.isActive else { return }
                logger.notice("dropping slow consumer that does not read", metadata: ["connection": "\(id)"])
                channel.close(promise: nil)
            }
        }
    }

    private func reply(_ bytes: [UInt8]) {
        connection.outbox.push(WireFrame.text(bytes))
    }

    private func handle(_ decoded: Result<ClientMessage, ClientMessage.Refusal>) async {
        switch decoded {
        case .failure(let refusal):
            reply(ServerMessage.error(id: refusal.id, code: refusal.code, message: refusal.message))
        case .success(.ping(let id)):
            reply(ServerMessage.pong(id: id))
        case .success(.unsubscribe(let id, let patterns)):
            fanOut.remove(connection, patterns: access.scoped(patterns))
            reply(ServerMessage.unsubscribed(id: id, patterns: patterns))
        case .success(.subscribe(let id, let patterns, let wantsSnapshot, let since, let filter, let recent)):
            await subscribe(id: id, patterns: patterns, wantsSnapshot: wantsSnapshot, since: since, filter: filter, recent: recent)
        case .success(.report(let id, let samples)):
            if let unknown = samples.keys.sorted().first(where: { !latency.knows(category: $0) }) {
                return reply(ServerMessage.error(
                    id: id, code: .invalidMessage,
                    message: "'samples_ms' names an unknown category '\(unknown.prefix(64))'; categories: \(latency.budgets.map(\.category).joined(separator: ", "))"))
            }
            reply(ServerMessage.reported(id: id, samples: latency.report(samples, tenant: access.subscriber.tenant)))
        case .success(.auth(let id, let token)):
            switch await access.refresh(token: token, held: connection.patterns) {
            case .success(let dropped):
                connection.see(access.subscriber.claims)
                if !dropped.isEmpty {
                    fanOut.remove(connection, patterns: dropped)
                    reply(ServerMessage.unsubscribed(id: id, patterns: dropped))
                }
                reply(ServerMessage.authenticated(id: id, expires: access.subscriber.expires))
            case .failure(let refusal):
                reply(ServerMessage.error(id: id, code: .forbidden, message: refusal.reason))
            }
        }
    }

    /// The subscribe of the upgrade's URL (`SubscribeQuery`), answered as a `subscribe` message without an id would
    /// be; it does not count against the message rate.
    func subscribe(_ asked: SubscribeQuery) async {
        await subscribe(
            id: nil, patterns: asked.patterns, wantsSnapshot: asked.snapshot, since: asked.since, filter: asked.filter, recent: asked.recent)
    }

    private func subscribe(
        id: MessageID?, patterns: [ChannelPattern], wantsSnapshot: Bool, since: ResumePoint?, filter: EventFilter?, recent: Int
    ) async {
        // Each pattern outside the token's is refused on its own; the others subscribe.
        let (allowed, forbidden) = access.partition(patterns)
        for pattern in forbidden {
            reply(ServerMessage.error(id: id, code: .forbidden, message: "pattern '\(pattern.text)' is outside this token's patterns"))
        }
        guard !allowed.isEmpty else { return }
        await subscriptions.subscribe(id: id, patterns: allowed, wantsSnapshot: wantsSnapshot, since: since, filter: filter, recent: recent)
    }

    private var subscriptions: Subscriptions {
        Subscriptions(connection: connection, fanOut: fanOut, engine: engine, maxSubscriptions: limits.maxSubscriptions, metrics: metrics)
    }
}
