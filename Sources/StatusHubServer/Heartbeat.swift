import NIOCore
import NIOWebSocket

/// `websocket.ping_interval_seconds`: pings the client every interval; a client whose pong to the previous ping has
/// not arrived by the next one is closed with 1001 ("ping timeout"). Once a close frame went out (from anyone), the
/// client has `closeTimeout` to answer it before the socket is closed.
///
/// The WebSocket library can do this itself (`autoPing`), but it runs a task per connection for it, sleeping
/// between pings: on an idle node those suspended tasks are much of the memory a connection costs
/// (loadtest/RESULTS.md, heaptrack). This is a timer on the connection's event loop instead. It sits just behind
/// the frame decoder, so every inbound frame passes it on its way to the library (which answers the client's own
/// pings as before) and its pings are encoded like any frame.
final class Heartbeat: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let interval: TimeAmount
    private let closeTimeout: TimeAmount
    private var timer: Scheduled<Void>?
    /// The payload of the ping still waiting for its pong; nil when answered.
    private var awaiting: ByteBuffer?
    private var sequence: UInt64 = 0
    private var closing = false

    init(interval: TimeAmount, closeTimeout: TimeAmount) {
        self.interval = interval
        self.closeTimeout = closeTimeout
    }

    /// Adds the heartbeat behind the frame decoder (which NIO puts behind the encoder). Call on the channel's event
    /// loop once the WebSocket pipeline is set up.
    static func add(to channel: any Channel, interval: TimeAmount, closeTimeout: TimeAmount) throws {
        let pipeline = channel.pipeline.syncOperations
        let decoder = try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        try pipeline.addHandler(Heartbeat(interval: interval, closeTimeout: closeTimeout), position: .after(decoder))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        schedule(context, in: interval) { heartbeat, context in heartbeat.beat(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { stop() }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if frame.opcode == .pong, frame.fin, let awaiting, frame.unmaskedData == awaiting { self.awaiting = nil }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // A close frame is the last frame sent: no more pings, and the client's answer is awaited for so long.
        if unwrapOutboundIn(data).opcode == .connectionClose, !closing {
            closing = true
            schedule(context, in: closeTimeout) { _, context in context.close(promise: nil) }
        }
        context.write(data, promise: promise)
    }

    private func stop() {
        timer?.cancel()
        timer = nil
    }

    /// Replaces the pending timer.
    private func schedule(
        _ context: ChannelHandlerContext, in delay: TimeAmount, _ fire: @escaping (Heartbeat, ChannelHandlerContext) -> Void
    ) {
        timer?.cancel()
        let loopBound = NIOLoopBound((self, context, fire), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (heartbeat, context, fire) = loopBound.value
            fire(heartbeat, context)
        }
    }

    private func beat(_ context: ChannelHandlerContext) {
        guard context.channel.isActive, !closing else { return }
        if awaiting != nil {
            var reason = context.channel.allocator.buffer(capacity: 16)
            reason.write(webSocketErrorCode: .goingAway)
            reason.writeString("ping timeout")
            closing = true
            // Closed once the frame is out, or after the close timeout if a full socket holds it back.
            schedule(context, in: closeTimeout) { _, context in context.close(promise: nil) }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reason)))
                .whenComplete { _ in channel.close(promise: nil) }
            return
        }
        sequence &+= 1
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(sequence)
        awaiting = payload
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
        schedule(context, in: interval) { heartbeat, context in heartbeat.beat(context) }
    }
}
