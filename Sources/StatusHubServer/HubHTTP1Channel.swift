import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The node's HTTP/1 channel: Hummingbird's request path for plain requests, and the WebSocket upgrade of `/v1/ws`
/// served from channel handlers, so an upgraded connection holds no task (a suspended task is most of what an idle
/// connection cost, loadtest/RESULTS.md).
///
/// Hummingbird's `HTTP1WebSocketUpgradeChannel` hands every upgraded connection to a task for its whole life (its
/// `handle` runs the session). This is the same pipeline — swift-nio's typed upgrade (`NIOTypedHTTPServerUpgradeHandler`
/// with `NIOTypedWebSocketServerUpgrader`), the not-upgraded branch set up exactly as Hummingbird sets up HTTP/1 —
/// but the upgrade installs the session's handlers and `handle` returns, compressed sessions included.
struct HubHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    enum Outcome: Sendable {
        /// Served by channel handlers from now on: `handle` has nothing left to do.
        case upgraded
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade was asked for and declined: a 400, naming the field and reason when the decision gave them (a
        /// bare one, as Hummingbird answers it, otherwise).
        case declinedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, Refusal?)
    }

    struct Value: ServerChildChannelValue {
        let outcome: EventLoopFuture<Outcome>
        let channel: any Channel
        /// An upgrade decided on but not installed, when the upgrade failed (the 101 could not be written: the client
        /// left): its places under the connection limits are given back.
        let decided: NIOLoopBoundBox<Decision?>
    }

    /// The answer to an upgrade request: the 101's extra headers, and what installs the session once it is out.
    struct Upgrade {
        var headers: HTTPHeaders
        /// Gives back what the decision took under the connection limits, when the upgrade failed before `install`
        /// returned.
        var abandon: @Sendable () -> Void
        /// Called on the channel's event loop after the WebSocket frame encoder and decoder were added; the bytes the
        /// client sent behind its request are read only after it returns. From then on the session gives back what
        /// the decision took under the connection limits.
        var install: (any Channel) throws -> Void
    }

    /// Why an upgrade request was refused before any upgrade: the 400's field and reason.
    struct Refusal: Sendable {
        var field: String
        var reason: String
    }

    enum Decision {
        case upgrade(Upgrade)
        /// Not an upgrade this node serves (another path, or the node is draining): a bare 400.
        case decline
        /// An upgrade of a path this node serves, with a request it cannot take: a JSON 400.
        case refuse(Refusal)
    }

    /// Decides an upgrade request on the channel's event loop.
    typealias Decide = @Sendable (HTTPRequestHead, any Channel, Logger) -> Decision
    /// Whether the node takes a WebSocket upgrade of this request target (`/v1/ws?…`) now: `Upgrade` is taken off any
    /// other (`UpgradeOfferScreen`).
    typealias TakesUpgrade = @Sendable (String) -> Bool

    let responder: HTTPChannelHandler.Responder
    let configuration: HTTP1Channel.Configuration
    let maxFrameSize: Int
    let decide: Decide
    let takesUpgrade: TakesUpgrade
    /// `POST /v1/events` below Hummingbird (`IngestHandler`).
    let ingest: IngestController
    /// Uncounted here when the connection ends as HTTP; an upgraded one is uncounted when its session ends.
    let ceiling: AcceptCeiling

    init(
        responder: @escaping HTTPChannelHandler.Responder, configuration: HTTP1Channel.Configuration, maxFrameSize: Int,
        decide: @escaping Decide, takesUpgrade: @escaping TakesUpgrade, ingest: IngestController, ceiling: AcceptCeiling
    ) {
        self.responder = Self.redirectingLateUpgrades(responder, takesUpgrade: takesUpgrade)
        self.configuration = configuration
        self.maxFrameSize = maxFrameSize
        self.decide = decide
        self.takesUpgrade = takesUpgrade
        self.ingest = ingest
        self.ceiling = ceiling
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // The socket's receive buffer is kept between reads and sized by the largest recent one: NIO's default
            // starts at 2 KiB, a fifth of what an idle WebSocket cost, for upgrade requests of a few hundred bytes.
            // 256 bytes: what an idle dashboard then sends (a subscribe, a pong) fits; a larger upgrade request takes
            // a second read once per connection, and the buffer grows at once when a read fills it (request bodies).
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
            // The typed upgrader passes nothing from its decision to its pipeline step but the request head: the
            // decision waits here in between (both run on this loop). Nil: no upgrade was asked for.
            let decided = NIOLoopBoundBox<Decision?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Outcome>(
                maxFrameSize: maxFrameSize,
                // The decoder's errors are answered by `RequireMaskedFrames`, which stands right behind it anyway.
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { [decide] channel, head in
                    let decision = decide(head, channel, logger)
                    decided.value = decision
                    guard case .upgrade(let upgrade) = decision else { return channel.eventLoop.makeSucceededFuture(nil) }
                    return channel.eventLoop.makeSucceededFuture(upgrade.headers)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard case .upgrade(let upgrade)? = decided.value else { preconditionFailure("upgraded without a decision") }
                        try upgrade.install(channel)
                        decided.value = nil
                        return .upgraded
                    }
                }
            )
            let http = configuration
            let ingest = ingest
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // As Hummingbird's HTTP1Channel sets up its pipeline.
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(http.additionalChannelHandlers())
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: http.idleTimeout.map { .init($0) }, logger: logger))
                        try channel.pipeline.syncOperations.addHandler(
                            IngestHandler(controller: ingest, serverName: StatusHub.serverName, eventLoop: channel.eventLoop))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        switch decided.value {
                        case nil: return .notUpgraded(asyncChannel)
                        case .refuse(let refusal)?: return .declinedUpgrade(asyncChannel, refusal)
                        case .decline?, .upgrade?: return .declinedUpgrade(asyncChannel, nil)
                        }
                    }
                }
            )
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<Outcome>(upgradeConfiguration: upgrades)
            pipeline.enablePipelining = false  // HTTP is pipelined by NIOAsyncChannel
            pipeline.enableErrorHandling = false  // HTTP1ConnectionGuard answers what the parser refuses
            pipeline.enableResponseHeaderValidation = false  // Swift HTTP Types validate them
            pipeline.decoderConfiguration.maxHeaderFieldSize = http.httpDecoder.maxHeaderFieldSize
            pipeline.decoderConfiguration.maxHeaderListSize = http.httpDecoder.maxHeaderListSize
            pipeline.decoderConfiguration.maxHeaderFieldCount = http.httpDecoder.maxHeaderFieldCount
            let outcome = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            let upgradeHandler = try channel.pipeline.syncOperations.handler(type: NIOTypedHTTPServerUpgradeHandler<Outcome>.self)
            try channel.pipeline.syncOperations.addHandler(UpgradeOfferScreen(takesUpgrade: takesUpgrade), position: .before(upgradeHandler))
            return Value(outcome: outcome, channel: channel, decided: decided)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.outcome.get() {
            case .upgraded:
                return  // uncounted when its session ends
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .declinedUpgrade(let http, let refusal):
                let body = refusal.map { JSONResponse.errorBytes(status: 400, field: $0.field, reason: $0.reason) } ?? []
                var headers: HTTPFields = [.connection: "close", .contentLength: String(body.count)]
                if refusal != nil { headers[.contentType] = "application/json" }
                var answer: [HTTPResponsePart] = [.head(HTTPResponse(status: .badRequest, headerFields: headers))]
                if !body.isEmpty { answer.append(.body(ByteBuffer(bytes: body))) }
                answer.append(.end(nil))
                try await http.executeThenClose { [answer] _, outbound in try await outbound.write(contentsOf: answer) }
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("upgrade not finished: input closed")
            await unserved(value)
        } catch let error as ChannelError where error == .inappropriateOperationForState && !value.channel.isActive {
            // What swift-nio's typed upgrade handler fails its result with when the connection closes before an upgrade
            // was decided: `UpgradeOfferScreen` answered a handshake it refused (a 426 for another WebSocket version, a
            // 405 for a POST) and closed, or the client left. The client's fault, answered already: logged as an
            // error, every such client put an error in the node's log.
            logger.debug("connection closed before its upgrade was decided")
            await unserved(value)
        } catch {
            logger.error("Error handling upgrade result", metadata: ["error.type": .string("\(error)")])
            await unserved(value)
        }
        // Counted down once its descriptor is closed: HTTP closes the connection as it ends, but over TLS the close
        // waits for the client's close_notify first.
        try? await value.channel.closeFuture.get()
        ceiling.closed()
    }

    /// Nothing serves the connection any more (its upgrade failed, or its client left before deciding): it is closed
    /// — one whose client half-closed would stay open until the request-head deadline — and an upgrade that was
    /// decided on gives back its places under the connection limits.
    private func unserved(_ value: Value) async {
        value.channel.close(promise: nil)
        let decided = value.decided
        try? await value.channel.eventLoop.submit {
            guard case .upgrade(let upgrade)? = decided.value else { return }
            decided.value = nil
            upgrade.abandon()
        }.get()
    }

    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536)

    /// NIO reads an upgrade only as a connection's first request. A later request asking for one the node takes is
    /// sent to a new connection (307 to itself, then close), as Hummingbird does; any other is served as it is.
    private static func redirectingLateUpgrades(
        _ responder: @escaping HTTPChannelHandler.Responder, takesUpgrade: @escaping TakesUpgrade
    ) -> HTTPChannelHandler.Responder {
        struct RedirectedUpgrade: Error {}
        return { (request: Request, writer: consuming ResponseWriter, channel: any Channel) in
            guard request.headers[.upgrade]?.lowercased().contains("websocket") == true,
                takesUpgrade(request.uri.description)
            else { return try await responder(request, writer, channel) }
            let location = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw RedirectedUpgrade()
        }
    }
}
