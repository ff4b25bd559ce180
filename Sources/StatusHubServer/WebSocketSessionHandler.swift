import NIOCore
import NIOWebSocket
import StatusHubCore

/// The reading side of a WebSocket session served from the channel pipeline (`HubHTTP1Channel`), at its tail behind
/// `NIOWebSocketFrameAggregator` (whole messages, held to `websocket.max_frame_bytes`): it inflates a compressed
/// message (`MessageInflater`: over the limit 1009, not DEFLATE 1007), checks each message (invalid UTF-8: 1007,
/// binary: 1003), answers the client's pings, runs the close handshake, and hands text messages to the session's
/// `SessionInbox`. Writing is the `DirectFrameWriter`'s, pinging the `Heartbeat`'s: an
/// idle connection is these handlers and timers, and no task.
///
/// The close handshake is the WebSocket library's (WSCore): a close frame from the hub is followed by closing the
/// socket's output, and the socket closes when the client answers (or after `Heartbeat`'s close timeout); a close
/// from the client is answered with 1000 (1002 for a malformed one) and the socket closed.
final class WebSocketSessionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = Never
    typealias OutboundOut = WebSocketFrame

    private let inbox: SessionInbox
    private let refusal: (code: CloseCode, reason: String)?
    /// With permessage-deflate: inflates the messages that came compressed, held to `maxMessageBytes`.
    private let inflater: MessageInflater?
    private let maxMessageBytes: Int
    private var context: ChannelHandlerContext?
    private var closing = false
    /// A read held back while the inbox is full.
    private var readPending = false

    /// `refusal`: closes with it as soon as the connection is upgraded (a connection limit said no).
    init(inbox: SessionInbox, refusal: (code: CloseCode, reason: String)?, inflater: MessageInflater?, maxMessageBytes: Int) {
        self.inbox = inbox
        self.refusal = refusal
        self.inflater = inflater
        self.maxMessageBytes = maxMessageBytes
    }

    /// The aggregator and this handler, at the pipeline's tail. Call on the channel's event loop once the WebSocket
    /// pipeline is set up.
    static func add(
        to channel: any Channel, maxMessageBytes: Int, inbox: SessionInbox, refusal: (code: CloseCode, reason: String)?,
        inflater: MessageInflater?
    ) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: maxFragments, maxAccumulatedFrameSize: maxMessageBytes))
        try pipeline.addHandler(WebSocketSessionHandler(inbox: inbox, refusal: refusal, inflater: inflater, maxMessageBytes: maxMessageBytes))
    }

    /// Fragments one message may come in (each costs a little memory until the last arrives): more close with 1009.
    static let maxFragments = 1024

    /// Close reasons that say which limit or rule a message broke, where the code alone is shared by several.
    static let tooManyFragments = "message in more than \(maxFragments) fragments"
    static let inflatesTooLarge = "compressed message inflates past websocket.max_frame_bytes"
    /// Corrupt DEFLATE data, or a message that refers back to an earlier one: the hub answered every offer with
    /// `client_no_context_takeover`, so each message must be a DEFLATE stream of its own.
    static let notDeflate = "compressed message is not DEFLATE of its own (corrupt, or uses an earlier message's context: client_no_context_takeover)"

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let refusal { return close(refusal.code, reason: refusal.reason) }
        inbox.open()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // Added to a connection that had already closed (the client left as the upgrade finished), it never sees
        // `channelInactive`; the pipeline's teardown still removes it. `end` acts once.
        inbox.end()
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.end()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !closing else {
            // After the hub's close frame only the client's answer matters.
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        }
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            if let inflater, inflater.nextMessageCompressed {
                do {
                    payload = try inflater.inflate(payload, limit: maxMessageBytes)
                } catch .tooBig {
                    return close(.messageTooBig, reason: Self.inflatesTooLarge)
                } catch {
                    return close(.invalidPayload, reason: Self.notDeflate)
                }
            }
            guard let text = String(validating: payload.readableBytesView, as: UTF8.self) else {
                return close(.invalidPayload)
            }
            inbox.push(text)
        case .binary:
            close(.unsupportedData)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break  // the Heartbeat's business
        case .connectionClose:
            answerClose(frame, context: context)
        default:
            // Reserved opcodes (continuations never get past the aggregator).
            close(.protocolError)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is stopping, after the node's drain (`StatusHub.drain`): a connection still open (it was being
        // opened when the drain began) goes away like a drained one, so the server's shutdown, which waits for every
        // connection to close, does not wait on it.
        if event is ChannelShouldQuiesceEvent, !inbox.goAway() { close(.goingAway) }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        guard inbox.isFull else { return context.read() }
        readPending = true
    }

    /// The inbox has room again.
    func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            close(.messageTooBig, reason: "message larger than websocket.max_frame_bytes")
        case NIOWebSocketFrameAggregator.Error.tooManyFragments:
            close(.messageTooBig, reason: Self.tooManyFragments)
        case is NIOWebSocketFrameAggregator.Error:
            // A continuation without a start, a new message before the last one ended.
            close(.protocolError)
        case is NIOWebSocketError:
            // The decoder's: `RequireMaskedFrames`, in front, sent the close frame and closes.
            closing = true
            inbox.stop()
        default:
            context.close(promise: nil)
        }
    }

    /// Sends the close frame (once) and stops handling messages. The socket stays open for the client's answer
    /// (then `channelRead` closes it) or until the `Heartbeat`'s close timeout, as RFC 6455 §7.1.1 has the server
    /// close the TCP connection after the close handshake. Shutting its output at once looked tidier but loses
    /// the close for clients still finishing their upgrade: swift-nio's typed client upgrader buffers the frame yet
    /// lets the end of input pass before the WebSocket handler is added, so `statushub tail`, refused with 4401,
    /// waited forever for an end it had already missed (in about half the runs).
    func close(_ code: CloseCode, reason: String? = nil) {
        guard !closing, let context else { return }
        closing = true
        inbox.stop()
        let payload = CloseFramePayload.make(
            WebSocketErrorCode(codeNumber: Int(code.rawValue)), reason: reason ?? code.reason, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)), promise: nil)
    }

    /// Codes outside swift-nio's named ones that a client may close with: 1012–1014 (service restart, try again
    /// later, bad gateway), registered with IANA after RFC 6455, and 3000–4999 (libraries', applications').
    /// 1004–1006 and 1015 are never sent; 1016–2999 are reserved.
    static let receivableCloseCodes: [ClosedRange<UInt16>] = [1012...1014, 3000...4999]

    /// RFC 6455 §5.5.1 and §7.4, as the WebSocket library answers: 1000, or 1002 for a close frame with a one-byte
    /// body, a reason that is not UTF-8, or a code no endpoint may send.
    private func answerClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        closing = true
        inbox.stop()
        var data = frame.unmaskedData
        let size = data.readableBytes
        let code = data.readWebSocketErrorCode()
        var answer = WebSocketErrorCode.normalClosure
        if (size > 0 && code == nil) || String(validating: data.readableBytesView, as: UTF8.self) == nil {
            answer = .protocolError
        } else if case .unknown(let number) = code, !Self.receivableCloseCodes.contains(where: { $0.contains(number) }) {
            answer = .protocolError
        }
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: answer)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}
