import NIOCore
import NIOWebSocket

/// RFC 6455 §5.1: a client masks every frame it sends, and a server closes the connection on a frame that is not
/// masked (1002, protocol error). Neither swift-nio's frame decoder nor the WebSocket library checks the mask bit
/// (they unmask whatever arrives), so the upgrade adds this check (`WebSocketUpgrade`) before the first frame is
/// decoded: a client may send frames in the same packet as its upgrade request, and NIO's upgrade handler replays
/// them only after the new pipeline is installed.
///
/// Right behind the frame decoder: passes masked frames on; answers the first unmasked one with a close frame
/// (1002) and closes the socket once it is written. The decoder's own errors (a frame over `websocket.max_frame_bytes`,
/// a fragmented or long control frame) are answered the same way, with their code and a reason, in place of
/// swift-nio's `WebSocketProtocolErrorHandler` (the upgrade leaves it out: one handler and its context less in every
/// connection, loadtest/RESULTS.md). Nothing the client sends after it is read. It refuses frames with RSV bits the
/// session did not negotiate the same way (RFC 6455 §5.2; swift-nio's frame aggregator would drop them): with
/// permessage-deflate, RSV1 is allowed on the first frame of a data message and nowhere else (RFC 7692 §6), and it
/// is noted for the session's `MessageInflater`, since the aggregated message loses it.
final class RequireMaskedFrames: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Where RSV1 of each data message goes, with permessage-deflate.
    private let inflater: MessageInflater?
    private var refused = false

    init(inflater: MessageInflater?) {
        self.inflater = inflater
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let frame = unwrapInboundIn(data)
        let reason: String
        if frame.maskKey == nil {
            reason = "client frames must be masked (RFC 6455 5.1)"
        } else if let refusal = reservedBitsRefusal(frame) {
            reason = refusal
        } else {
            return context.fireChannelRead(data)
        }
        refuse(.protocolError, reason: reason, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError, !refused {
            // The decoder stops at its error: nothing after it can be read, the client's answer to the close included.
            let (code, reason) = Self.answer(error)
            refuse(code, reason: reason, context: context)
        }
        context.fireErrorCaught(error)
    }

    private func refuse(_ code: WebSocketErrorCode, reason: String, context: ChannelHandlerContext) {
        refused = true
        let payload = CloseFramePayload.make(code, reason: reason, allocator: context.channel.allocator)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    /// The codes swift-nio's handler sends for them (its mapping is internal to the library), with a reason.
    private static func answer(_ error: NIOWebSocketError) -> (WebSocketErrorCode, String) {
        switch error {
        case .invalidFrameLength: (.messageTooLarge, "frame longer than websocket.max_frame_bytes")
        case .fragmentedControlFrame: (.protocolError, "control frames must not be fragmented (RFC 6455 5.5)")
        case .multiByteControlFrameLength: (.protocolError, "control frame payloads are at most 125 bytes (RFC 6455 5.5)")
        }
    }

    private func reservedBitsRefusal(_ frame: WebSocketFrame) -> String? {
        guard let inflater else {
            return frame.reservedBits.isEmpty ? nil : "reserved bits set without a negotiated extension"
        }
        if frame.rsv2 || frame.rsv3 { return "RSV2 and RSV3 are not used by permessage-deflate" }
        switch frame.opcode {
        case .text, .binary:
            inflater.nextMessageCompressed = frame.rsv1
            return nil
        default:
            return frame.rsv1 ? "RSV1 is only set on the first frame of a compressed message (RFC 7692 6)" : nil
        }
    }
}
