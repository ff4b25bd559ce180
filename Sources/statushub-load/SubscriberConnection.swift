import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// One subscriber's WebSocket at the NIO level: swift-nio's client upgrader, frame decoder and aggregator, and
/// a channel handler that looks at each frame on the event loop as it is read.
///
/// Why not HummingbirdWSClient (which the command-line `tail` uses): its per-frame path (an async iterator, a
/// task hop and an actor per message) cost the harness ~20 µs of CPU per frame, so at 1,000 subscribers × 50
/// events/s the client's core was saturated (98.6 %) while the hub still had room — the numbers measured the
/// client. Here a frame costs a decode, the byte search of `FrameTracker`, and a histogram record.
enum SubscriberConnection {
    /// What the connection ended with.
    struct Ending: Sendable {
        var closeCode: WebSocketErrorCode?
        var closeReason: String?
        var counted: SubscriberResult
    }

    /// Called on the event loop: `subscribed` once the hub confirms (or at once for another server, where the
    /// URL is the subscription), `failed` with the text of an error reply.
    struct Callbacks: Sendable {
        var upgraded: @Sendable () -> Void
        var subscribed: @Sendable () -> Void
        var failed: @Sendable (String) -> Void
    }

    struct BadURL: Error, CustomStringConvertible {
        var url: String
        var description: String { "not a ws:// URL: \(url)" }
    }

    /// How a subscriber subscribes.
    enum Subscribing: Sendable {
        /// A message sent once upgraded; subscribed when the hub's reply comes.
        case message(String)
        /// In the hub's URL (`?channels=`); subscribed when the hub's reply comes.
        case inURLWithReply
        /// By the URL of another server, which sends no reply: subscribed once upgraded.
        case byURL
    }

    /// Connects and upgrades; returns the channel and a future for the ending (the channel closing).
    static func open(
        url: String, subscribing: Subscribing, tracker: FrameTracker, loop: any EventLoop, callbacks: Callbacks,
        source: SocketAddress? = nil, compression: Bool = false
    ) async throws -> (channel: any Channel, ending: EventLoopFuture<Ending>) {
        let ending = loop.makePromise(of: Ending.self)
        let channel: any Channel
        do {
            channel = try await upgrade(url: url, source: source, loop: loop, compression: compression) { channel in
                try channel.pipeline.syncOperations.addHandler(FrameHandler(tracker: tracker, callbacks: callbacks, ending: ending))
            }
        } catch {
            ending.fail(error)  // never left unfulfilled (NIO reports a leaked promise)
            throw error
        }
        // Only now: while the upgrade is being completed, the HTTP handlers are still in the pipeline.
        callbacks.upgraded()
        switch subscribing {
        case .message(let subscribe):
            let data = channel.allocator.buffer(string: subscribe)
            try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: data))
        case .inURLWithReply:
            break
        case .byURL:
            callbacks.subscribed()
        }
        return (channel, ending.futureResult)
    }

    /// Connects (from `source`, when given) and upgrades to WebSocket; `install` adds the handlers that read the
    /// aggregated frames. Throws `UpgradeRefused` when the server answers without upgrading. With `compression`
    /// it offers permessage-deflate as a browser does and, if the server accepts, compresses its messages and inflates compressed ones
    /// (`ClientDeflate`) before `install`'s handlers see them.
    static func upgrade(
        url: String, source: SocketAddress?, loop: any EventLoop, connectTimeout: TimeAmount = .seconds(10), compression: Bool = false,
        install: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel {
        guard let parsed = URL(string: url), parsed.scheme == "ws", let host = parsed.host else { throw BadURL(url: url) }
        let port = parsed.port ?? 80
        let target = (parsed.path.isEmpty ? "/" : parsed.path) + (parsed.query.map { "?" + $0 } ?? "")
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let source { bootstrap = bootstrap.bind(to: source) }
        let upgraded = try await bootstrap
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(maxFrameSize: 1 << 24) { channel, response in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(NIOWebSocketFrameAggregator(
                                minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16, maxAccumulatedFrameSize: 1 << 24))
                            if let deflate = try ClientDeflate(answer: response.headers["Sec-WebSocket-Extensions"].first) {
                                try channel.pipeline.syncOperations.addHandler(deflate)
                            }
                            try install(channel)
                            return true
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    if compression { headers.add(name: "Sec-WebSocket-Extensions", value: ClientDeflate.browserOffer) }
                    let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                        upgradeRequestHead: request, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
                    // A server may write right behind its 101 (the hub's `subscribed` for a subscribe in the URL): those
                    // bytes are the first frames, not to be dropped with the HTTP decoder (NIO's default for clients).
                    var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                    pipeline.leftOverBytesStrategy = .forwardBytes
                    let result = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
                    return result.map { (channel, $0) }
                }
            }
            .get()
        guard upgraded.1 else {
            upgraded.0.close(promise: nil)
            throw UpgradeRefused()
        }
        return upgraded.0
    }

    struct UpgradeRefused: Error, CustomStringConvertible {
        var description: String { "the server did not upgrade to WebSocket" }
    }

    /// Sends a close frame (1000) and closes the socket once the server answers, or after `timeout`.
    static func close(_ channel: any Channel, timeout: TimeAmount = .seconds(2)) {
        channel.eventLoop.execute {
            var reason = channel.allocator.buffer(capacity: 2)
            reason.write(webSocketErrorCode: .normalClosure)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reason), promise: nil)
            channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        }
    }

    /// Counts every text message through `FrameTracker`; answers pings; ends on the server's close frame.
    final class FrameHandler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        private var tracker: FrameTracker
        private let callbacks: Callbacks
        private let ending: EventLoopPromise<Ending>
        private var closeCode: WebSocketErrorCode?
        private var closeReason: String?
        private var ended = false

        init(tracker: FrameTracker, callbacks: Callbacks, ending: EventLoopPromise<Ending>) {
            self.tracker = tracker
            self.callbacks = callbacks
            self.ending = ending
        }


        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text:
                switch tracker.process(frame.unmaskedData, now: monotonicNanos()) {
                case .subscribed: callbacks.subscribed()
                case .error: callbacks.failed(String(buffer: frame.unmaskedData))
                case .event, .other: break
                }
            case .ping:
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
            case .connectionClose:
                var payload = frame.unmaskedData
                closeCode = payload.readWebSocketErrorCode()
                closeReason = payload.readString(length: payload.readableBytes)
                context.close(promise: nil)
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            end()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        func handlerRemoved(context: ChannelHandlerContext) { end() }

        private func end() {
            guard !ended else { return }
            ended = true
            ending.succeed(Ending(closeCode: closeCode, closeReason: closeReason, counted: tracker.result))
        }
    }
}
