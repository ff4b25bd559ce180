import CompressNIO
import NIOCore
import NIOWebSocket

/// The harness's side of permessage-deflate (`run --compression`), as a browser does it: it offers what browsers
/// offer, compresses its own messages (RSV1) with the window the server answered, and inflates the server's
/// compressed messages, keeping the server's context between messages unless the server answered
/// `server_no_context_takeover`. Each of its own messages is compressed on its own (a sender may always leave the
/// context unused, and the hub asks for it with `client_no_context_takeover`), so the harness holds no compressor
/// per connection. Sits between the frame aggregator and the handler that counts the messages.
final class ClientDeflate: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    static let browserOffer = "permessage-deflate; client_max_window_bits"

    private let inflater: ZlibDecompressor
    private let serverKeepsContext: Bool
    private let clientWindowBits: Int32

    /// Nil when the server's answer (`Sec-WebSocket-Extensions` of the 101) did not accept permessage-deflate.
    init?(answer: String?) throws {
        guard let answer, answer.lowercased().hasPrefix("permessage-deflate") else { return nil }
        let parameters = answer.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        func bits(_ name: String) -> Int32? {
            parameters.first { $0.hasPrefix(name + "=") }.flatMap { Int32($0.split(separator: "=")[1]) }
        }
        serverKeepsContext = !parameters.contains("server_no_context_takeover")
        // zlib's raw deflate has no 256-byte window (an answer of 8): 9 is its smallest.
        clientWindowBits = max(9, bits("client_max_window_bits") ?? 15)
        inflater = try ZlibDecompressor(algorithm: .deflate, windowSize: bits("server_max_window_bits") ?? 15)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard frame.rsv1 else { return context.fireChannelRead(data) }
        var input = frame.unmaskedData
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        var output = context.channel.allocator.buffer(capacity: max(1024, input.readableBytes * 8))
        do {
            while true {
                do {
                    try inflater.inflate(from: &input, to: &output)
                    break
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    output.reserveCapacity(minimumWritableBytes: output.readableBytes)
                } catch let error as CompressNIOError where error == .inputBufferOverflow {
                    break
                }
            }
            if !serverKeepsContext { try inflater.reset() }
        } catch {
            context.fireErrorCaught(error)
            return
        }
        frame.data = output
        frame.maskKey = nil
        frame.rsv1 = false
        context.fireChannelRead(wrapInboundOut(frame))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var frame = unwrapOutboundIn(data)
        guard frame.opcode == .text, frame.fin else { return context.write(data, promise: promise) }
        do {
            let compressor = try ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: clientWindowBits))
            var input = frame.data
            var output = context.channel.allocator.buffer(capacity: compressor.maxSize(from: input))
            try compressor.deflate(from: &input, to: &output, flush: .sync)
            output.moveWriterIndex(to: output.writerIndex - 4)  // the 00 00 FF FF tail (RFC 7692 §7.2.1)
            frame.data = output
            frame.rsv1 = true
        } catch {
            return promise?.fail(error) ?? ()
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }
}
