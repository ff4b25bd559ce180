import NIOCore
import NIOWebSocket

/// RFC 6455 §5.1: a client masks every frame it sends, and a server closes the connection on a frame that is not
/// masked (1002, protocol error). Neither swift-nio's frame decoder nor the WebSocket library checks the mask bit
/// (they unmask whatever arrives), so the upgrade adds this check (`WebSocketUpgrade`) before the first frame is
/// decoded: a client may send frames in the same packet as its upgrade request, and NIO's upgrade handler replays
/// them only after the new pipeline is installed.
///
/// Right behind the frame decoder: passes masked frames on; answers the first unmasked one with a close frame
/// (1002) and closes the socket once it is written, like swift-nio's `WebSocketProtocolErrorHandler` does for the
/// decoder's own errors (its error type has no case for an unmasked frame). Nothing the client sends after it is
/// read. Without a negotiated extension (`refusesReservedBits`) it refuses frames with RSV bits set the same way
/// (RFC 6455 §5.2): the library checks them on its own path, and swift-nio's frame aggregator would drop them.
final class RequireMaskedFrames: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let refusesReservedBits: Bool
    private var refused = false

    init(refusesReservedBits: Bool) {
        self.refusesReservedBits = refusesReservedBits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let frame = unwrapInboundIn(data)
        let reason: String
        if frame.maskKey == nil {
            reason = "client frames must be masked (RFC 6455 5.1)"
        } else if refusesReservedBits, !frame.reservedBits.isEmpty {
            reason = "reserved bits set without a negotiated extension"
        } else {
            return context.fireChannelRead(data)
        }
        refused = true
        var payload = context.channel.allocator.buffer(capacity: 40)
        payload.write(webSocketErrorCode: .protocolError)
        payload.writeString(reason)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}
