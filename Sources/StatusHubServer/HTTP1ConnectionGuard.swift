import HummingbirdCore
import NIOCore
import NIOHTTP1

/// Keeps HTTP/1's promises about how a connection ends, from right behind NIO's request decoder, for the whole
/// HTTP life of a connection, its first request included:
/// - a request the parser refuses (a bad `Content-Length`, `Transfer-Encoding` with `Content-Length`, headers
///   over the limits, a space before a colon, …) is answered with the JSON error — 400, or 431 for headers too
///   large — and the connection is closed; one pipelined behind others is answered after them;
/// - a request that does not keep the connection alive (`Connection: close`, HTTP/1.0 without keep-alive) ends
///   it once its response is written. A body still arriving then is read and dropped (for at most `linger`)
///   behind a closed output, so a client that sends its whole body before it reads (Python's urllib) gets the
///   early answer (413) instead of a stalled send or a reset;
/// - a `CONNECT` (after which the parser reads no more requests) is answered 405 and the connection closed, like a
///   request the parser refuses;
/// - `Expect: 100-continue` is answered with `100 Continue`, unless the request was answered from its head (a
///   declared body over `maxBodyBytes`, an unknown key, an unsupported media type: that answer is the answer);
/// - a request whose body has not ended `linger` after the read that brought its head is answered 408 (JSON, naming
///   `body`) and the connection ended as after any closing answer — or only closed, when an answer to it or to an
///   earlier request is under way.
///   Hummingbird's idle timeout restarts on every body part and `RequestHeadDeadline` sees only a first head, so a
///   body trickled a byte at a time held its connection and request for ever (a slow POST), on both ingest paths.
///   A body that simply stalls is overdue for both timers at once, and Hummingbird's closes the connection without
///   a word: so while a body is unfinished this handler owns the deadline, and a close from behind it that comes
///   when the body is already overdue is answered with the 408 first, whichever timer fired first.
///
/// Written here because the libraries leave these open: hummingbird-websocket's upgrade channel sets NIO's
/// pipeline up with error handling off, so a parse error in the first request reached nobody and the connection
/// waited for ever for a head that never came; Hummingbird answers later parse errors with an empty 400, ends a
/// connection only for `Connection: close` (and then stops reading a body it did not want), and has no
/// `100 Continue`. NIO's `HTTPServerProtocolErrorHandler` answers parse errors with an empty 400 and cannot be
/// added to that pipeline by configuration.
final class HTTP1ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let maxBodyBytes: Int
    private let linger: TimeAmount
    private let decoderLimits: HTTP1Channel.Configuration.DecoderConfiguration
    /// Per request whose response has not ended, oldest first: whether it keeps the connection alive.
    private var unanswered = CircularBuffer<Bool>()
    /// A request head has passed and its end has not.
    private var readingBody = false
    private var sawFirstHead = false
    /// The response being written says `Connection: close`.
    private var responseCloses = false
    /// A final response head is out and its end is not.
    private var responding = false
    /// Runs out `linger` after the read that left a body unfinished; cancelled when the body ends.
    private var bodyDeadline: Scheduled<Void>?
    /// When the head of the request whose body is being read arrived. Hummingbird's idle timer counts from its last
    /// read of the same request, never earlier, on the same clock.
    private var headArrived = ContinuousClock.now
    private var state = State.open

    /// The answer to a request refused before anything behind this handler saw it.
    private struct Refusal {
        var status: HTTPResponseStatus
        var field: String
        var reason: String
    }

    private enum State {
        case open
        /// The parser refused a request pipelined behind ones still being answered; answered after them.
        case refusing(Refusal)
        /// The last response is written and the output closed; what the client still sends is dropped.
        case draining(Scheduled<Void>)
        case closing
    }

    init(maxBodyBytes: Int, linger: TimeAmount, decoderLimits: HTTP1Channel.Configuration.DecoderConfiguration) {
        self.maxBodyBytes = maxBodyBytes
        self.linger = linger
        self.decoderLimits = decoderLimits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .open: break
        case .draining:
            if case .end = part { close(context) }
            return
        case .refusing, .closing:
            if case .end = part { readingBody = false }
            return
        }
        switch part {
        case .head(let head):
            if head.method == .CONNECT {
                // The parser takes whatever follows a CONNECT for a tunnel's bytes and reads no request after it: the
                // router's 405 went out without its body or length, and the connection hung. This node is no proxy:
                // refused as a request the parser refuses, after the answers to those before it.
                sawFirstHead = true
                let refusal = Refusal(status: .methodNotAllowed, field: "method", reason: "CONNECT: this node is not a proxy")
                if unanswered.isEmpty { return answerAndEnd(refusal, context: context) }
                state = .refusing(refusal)
                return
            }
            unanswered.append(head.isKeepAlive)
            readingBody = true
            headArrived = .now
            let first = !sawFirstHead
            sawFirstHead = true
            context.fireChannelRead(data)
            // Only when no earlier response is being written, so that the 100 cannot land inside one (a pipelined
            // request's client falls back on its own wait), and after the head has passed: a request refused from its
            // head alone (`IngestHandler`: 401, 413, 415) has its answer already, and a 100 would invite the body
            // the answer refuses.
            if head.expectsContinue, unanswered.count == 1, !responding, case .open = state, head.version.major == 1,
                head.version.minor >= 1, head.declaredLength.map({ $0 <= maxBodyBytes }) ?? true
            {
                let continueHead = HTTPResponseHead(version: .http1_1, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(continueHead)), promise: nil)
            }
            if first, head.asksForWebSocket {
                // NIO's upgrade handler behind takes this connection over and removes the decoder, whose leftover
                // bytes would reach this handler as raw bytes; if it refuses, it answers and closes itself.
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            }
        case .body:
            context.fireChannelRead(data)
        case .end:
            readingBody = false
            bodyDeadline?.cancel()
            bodyDeadline = nil
            context.fireChannelRead(data)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Nothing behind reads a dropped body, so keep its bytes coming.
        if case .draining = state { context.read() }
        // A body that arrived whole with its head (most do) never costs a timer.
        if readingBody, bodyDeadline == nil, case .open = state {
            let remaining = Duration(linger) - (ContinuousClock.now - headArrived)
            bodyDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(max(remaining, .zero))) { [self] in
                bodyTimedOut(context)
            }
        }
        context.fireChannelReadComplete()
    }

    private func bodyTimedOut(_ context: ChannelHandlerContext) {
        bodyDeadline = nil
        guard readingBody, case .open = state, context.channel.isActive else { return }
        guard unanswered.count == 1, !responding else { return close(context) }
        unanswered[unanswered.startIndex] = false
        let milliseconds = linger.nanoseconds / 1_000_000
        let after = milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
        // Ended as any closing answer is, the body's bytes dropped for a while behind a closed output: closed at once,
        // a client still sending would get a reset, which can discard the answer before the client reads it.
        answerAndEnd(
            .requestTimeout, field: "body", reason: "not complete \(after) after the request head (server.idle_timeout_seconds)",
            context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case .open = state else {
            // The decoder has failed for good; it reports each later read too. Nothing more to say about it.
            if !(error is HTTPParserError || error is ByteToMessageDecoderError) { context.fireErrorCaught(error) }
            return
        }
        guard let refusal = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        switch (readingBody, unanswered.isEmpty) {
        case (true, false):
            // In the body of the request being answered: its handler sees its body fail and answers
            // (`IngestController`); the connection ends after that answer.
            unanswered[unanswered.index(before: unanswered.endIndex)] = false
            context.fireErrorCaught(error)
        case (true, true):
            // In a body whose request was answered already: nothing left to say.
            close(context)
        case (false, false):
            state = .refusing(answer(to: refusal))
        case (false, true):
            answerAndEnd(answer(to: refusal), context: context)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.status.code >= 200 {
                responseCloses = !head.isKeepAlive
                responding = true
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responding = false
            let keptAlive = unanswered.popFirst() ?? true
            let ends = !keptAlive || responseCloses
            responseCloses = false
            if ends {
                afterWriting(data, context: context, promise: promise) { $0.finish($1) }
            } else if unanswered.isEmpty, case .refusing(let refusal) = state {
                context.write(data, promise: promise)
                state = .open
                answerAndEnd(refusal, context: context)
            } else {
                context.write(data, promise: promise)
            }
        }
    }

    /// A close from the handlers behind (Hummingbird's idle timeout) while a body is overdue: the 408 goes out first.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, bodyIsOverdue, unanswered.count == 1, !responding, context.channel.isActive else {
            return context.close(mode: mode, promise: promise)
        }
        bodyTimedOut(context)
        context.channel.closeFuture.cascade(to: promise)
    }

    /// A body is unfinished `linger` after its head arrived, and nothing has answered that yet.
    private var bodyIsOverdue: Bool {
        guard readingBody, case .open = state else { return false }
        return ContinuousClock.now - headArrived >= Duration(linger)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        state = .closing
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    private func cancelTimers() {
        bodyDeadline?.cancel()
        bodyDeadline = nil
        if case .draining(let timer) = state { timer.cancel() }
    }

    /// Answers a request the parser refused, and ends the connection.
    private func answer(to refusal: HTTPParserError) -> Refusal {
        let (status, field, reason) = refusal.answer(limits: decoderLimits)
        return Refusal(status: status, field: field, reason: reason)
    }

    private func answerAndEnd(_ refusal: Refusal, context: ChannelHandlerContext) {
        answerAndEnd(refusal.status, field: refusal.field, reason: refusal.reason, context: context)
    }

    /// Writes the JSON error with `Connection: close`, then ends the connection (`finish`).
    private func answerAndEnd(_ status: HTTPResponseStatus, field: String, reason: String, context: ChannelHandlerContext) {
        let (head, body) = JSONResponse.closingError(status, field: field, reason: reason)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        afterWriting(wrapOutboundOut(.end(nil)), context: context, promise: nil) { $0.finish($1) }
    }

    /// Writes and flushes `data`, then runs `next`: closing before a write has reached the socket would drop it.
    private func afterWriting(
        _ data: NIOAny, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?,
        _ next: @escaping (HTTP1ConnectionGuard, ChannelHandlerContext) -> Void
    ) {
        state = .closing
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(data, promise: written)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in
            state = .open
            next(self, context)
        }
        written.futureResult.cascade(to: promise)
    }

    /// Ends the connection after its last response: at once when the client has sent all it meant to; else
    /// once the rest of its body has arrived (and been dropped) or `linger` has passed, with the output closed
    /// meanwhile so the client sees the answer is complete.
    private func finish(_ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        guard readingBody else { return close(context) }
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: linger) { [self] in close(context) }
        state = .draining(timer)
        context.close(mode: .output, promise: nil)
        context.read()
    }

    private func close(_ context: ChannelHandlerContext) {
        cancelTimers()
        state = .closing
        if !sawFirstHead {
            // NIO's upgrade handler behind still waits for a first head. Told that no input will come, it closes
            // the connection and reports "input closed", which hummingbird-websocket logs at trace; a plain close
            // would make it report an error for every refused request.
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        context.close(promise: nil)
    }
}

extension HTTPRequestHead {
    fileprivate var expectsContinue: Bool {
        headers["expect"].contains { $0.lowercased() == "100-continue" }
    }

    fileprivate var declaredLength: Int? {
        headers["content-length"].first.flatMap { Int($0) }
    }

    /// What makes NIO's upgrade handler try the WebSocket upgrader.
    fileprivate var asksForWebSocket: Bool {
        headers["upgrade"].contains { $0.lowercased().contains("websocket") }
    }
}
