import NIOCore
import NIOWebSocket

/// `websocket.ping_interval_seconds`: pings the client every interval; a client whose pong to the previous ping has
/// not arrived by the next one is closed with 1001 ("ping timeout"). Once a close frame went out (from anyone), the
/// client has the wheel's `closeTimeout` to answer it before the socket is closed.
///
/// The WebSocket library can do this itself (`autoPing`), but it runs a task per connection for it, sleeping
/// between pings: on an idle node those suspended tasks are much of the memory a connection costs
/// (loadtest/RESULTS.md, heaptrack). The pings' timer is the loop's instead (`PingWheel`), one for all of its
/// connections; only a close in progress has a timer of its own. It sits just behind the frame decoder, so every
/// inbound frame passes it on its way to the library (which answers the client's own pings as before) and its pings
/// are encoded like any frame.
final class Heartbeat: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Where the wheel keeps it (its bucket and index there); nil while it is not in the wheel.
    struct Place {
        var slot: Int32
        var index: Int32
    }

    private let wheel: PingWheel
    /// Set while it is in the wheel, for the wheel's beats.
    private var context: ChannelHandlerContext?
    var place: Place?
    /// After a close frame went out: closes the socket if the client has not by then.
    private var closeTimer: Scheduled<Void>?
    /// The last ping's payload (its number, 8 bytes big-endian); a pong carrying it answers the ping.
    private var sequence: UInt64 = 0
    /// A ping went out and its pong has not come back.
    private var awaitingPong = false
    private var closing = false

    init(wheel: PingWheel) {
        self.wheel = wheel
    }

    /// Adds the heartbeat behind the frame decoder (which NIO puts behind the encoder), pinged by `wheels`' wheel of
    /// the channel's loop. Call on the channel's event loop once the WebSocket pipeline is set up.
    static func add(to channel: any Channel, wheels: PingWheels) throws {
        let pipeline = channel.pipeline.syncOperations
        let decoder = try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        let heartbeat = Heartbeat(wheel: wheels.wheel(for: channel.eventLoop))
        try pipeline.addHandler(heartbeat, position: .after(decoder))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        wheel.add(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) { stop() }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if awaitingPong, frame.opcode == .pong, frame.fin {
            let payload = frame.unmaskedData
            if payload.readableBytes == 8, payload.getInteger(at: payload.readerIndex, as: UInt64.self) == sequence {
                awaitingPong = false
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // A close frame is the last frame sent: no more pings, and the client's answer is awaited for so long.
        if unwrapOutboundIn(data).opcode == .connectionClose, !closing { beginClosing(context) }
        context.write(data, promise: promise)
    }

    /// Out of the wheel, its close timer cancelled: the connection is over.
    private func stop() {
        wheel.remove(self)
        context = nil
        closeTimer?.cancel()
        closeTimer = nil
    }

    /// No more pings; the socket closes the wheel's `closeTimeout` from now unless it did before.
    private func beginClosing(_ context: ChannelHandlerContext) {
        closing = true
        wheel.remove(self)
        self.context = nil
        let channel = context.channel
        closeTimer = context.eventLoop.scheduleTask(in: wheel.closeTimeout) { channel.close(promise: nil) }
    }

    /// The wheel's turn: a ping, or the end of a client that did not answer the last one.
    func beat() {
        guard let context, context.channel.isActive, !closing else { return }
        if awaitingPong {
            let reason = CloseFramePayload.make(.goingAway, reason: "ping timeout", allocator: context.channel.allocator)
            // Closed once the frame is out, or after the close timeout if a full socket holds it back.
            beginClosing(context)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reason)))
                .whenComplete { _ in channel.close(promise: nil) }
            return
        }
        sequence &+= 1
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(sequence)
        awaitingPong = true
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
    }
}
