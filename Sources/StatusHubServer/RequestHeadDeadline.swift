import NIOCore

/// Closes the connection unless its first request head is complete within `deadline`.
///
/// Written here because neither library bounds that phase: Hummingbird's idle timeout
/// (`HTTP1Channel.Configuration.idleTimeout`) is installed only after a first request head has been parsed, and
/// NIO's `IdleStateHandler` restarts on every byte. So a client that connects and sends nothing, never finishes
/// its TLS handshake, or trickles header bytes (slowloris) would hold a socket and a connection slot for ever.
/// Installed by `GuardedHTTP1Channel`.
///
/// It watches the bytes for the blank line that ends the first request head; closes the channel if it has not come
/// by the deadline, and takes itself out of the pipeline once it has.
final class RequestHeadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let endOfHead: [UInt8] = Array("\r\n\r\n".utf8)
    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?
    /// How much of `endOfHead` the bytes seen so far end with.
    private var matched = 0
    private var done = false

    init(deadline: TimeAmount) { self.deadline = deadline }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            for byte in unwrapInboundIn(data).readableBytesView {
                if byte == Self.endOfHead[matched] {
                    matched += 1
                    if matched == Self.endOfHead.count {
                        done = true
                        break
                    }
                } else {
                    matched = byte == Self.endOfHead[0] ? 1 : 0
                }
            }
        }
        context.fireChannelRead(data)
        if done {
            timer?.cancel()
            timer = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil, !done else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) {
            context.close(promise: nil)
        }
    }
}
