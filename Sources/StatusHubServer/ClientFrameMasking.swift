import HummingbirdCore
import Logging
import NIOCore
import NIOWebSocket

/// RFC 6455 §5.1: a client masks every frame it sends, and a server closes the connection on a frame that is not
/// masked (1002, protocol error). Neither swift-nio's frame decoder nor the WebSocket library checks the mask bit
/// (they unmask whatever arrives), so this child channel adds the check.
///
/// The check has to be in the pipeline before the first frame is decoded: a client may send frames in the same
/// packet as its upgrade request, and the library buffers decoded frames before the session starts. So a watch
/// sits behind the HTTP upgrade handler from the start; the upgrade handler announces a finished upgrade to the
/// handlers behind it before it replays the bytes that came with the request, and at that moment the watch puts
/// `RequireMaskedFrames` right behind the new frame decoder and leaves.
struct MaskedClientFramesChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try channel.pipeline.syncOperations.addHandler(UpgradeWatch())
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Behind the HTTP upgrade handler until the connection is upgraded (then it installs the mask check) or turns out
/// to be plain HTTP (its first request passes through here; the upgrade handler has stepped aside by then).
final class UpgradeWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The upgrade handler's `upgradeComplete` event: the only event that finds a frame decoder in the pipeline
        // this handler is still in (NIOHTTP1, which names the event, is not a dependency of this target).
        let pipeline = context.pipeline.syncOperations
        if let decoder = try? pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self) {
            do {
                try pipeline.addHandler(RequireMaskedFrames(), position: .after(decoder))
            } catch {
                context.close(promise: nil)
            }
            pipeline.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Right behind the frame decoder: passes masked frames on; answers the first unmasked one with a close frame
/// (1002) and closes the socket once it is written, like swift-nio's `WebSocketProtocolErrorHandler` does for the
/// decoder's own errors (its error type has no case for an unmasked frame). Nothing the client sends after it is
/// read.
final class RequireMaskedFrames: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var refused = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        guard unwrapInboundIn(data).maskKey == nil else {
            context.fireChannelRead(data)
            return
        }
        refused = true
        var payload = context.channel.allocator.buffer(capacity: 40)
        payload.write(webSocketErrorCode: .protocolError)
        payload.writeString("client frames must be masked (RFC 6455 5.1)")
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}
