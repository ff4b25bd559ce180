import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// `POST /v1/events` served from a channel handler, in front of Hummingbird's request path: the request is admitted
/// from its head and its body gathered on the connection's event loop, then decoded, validated, stored and answered
/// by one task that runs on that same loop. Hummingbird's path hands every request to the connection's task and every
/// response back through `NIOAsyncWriter`: 61–81 µs of CPU a request on the project's VM before a route does
/// anything; this path took the hub's CPU per single-event POST from 87–104 to 72–80 µs (loadtest/RESULTS.md). Every
/// other route, and a POST that arrives while Hummingbird is still answering an earlier request on the connection
/// (HTTP/1 answers in order), goes on to Hummingbird, whose route (`IngestController.handle`) runs the same steps.
///
/// It stands behind `HTTP1ConnectionGuard` and Hummingbird's `HTTPConnectionStateHandler`, so keep-alive, the end
/// of a `Connection: close` request (its body dropped behind the early answer), `100 Continue`, parse errors, the
/// idle timeout and graceful shutdown work for these requests exactly as for the others.
final class IngestHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    static let path = "/v1/events"

    private enum State {
        /// No request of this handler's: parts go on to Hummingbird.
        case passing
        /// An admitted request's body is arriving.
        case reading(IngestController.Admitted, ByteBuffer)
        /// Answered before its body ended (refused at its head, or its body went over the limit); the rest is dropped.
        case dropping
        /// The whole body is in; the answer is being made.
        case answering
    }

    private let controller: IngestController
    private let serverName: String
    private let executor: EventLoopTaskExecutor
    private var state = State.passing
    /// Requests passed to Hummingbird whose responses have not ended.
    private var passedOn = 0
    /// What the client sent behind a request being answered (HTTP/1 pipelining), taken in order once it is answered;
    /// reads wait meanwhile.
    private var held = CircularBuffer<HTTPRequestPart>()
    private var readWaiting = false

    init(controller: IngestController, serverName: String, eventLoop: any EventLoop) {
        self.controller = controller
        self.serverName = serverName
        executor = EventLoopTaskExecutor(eventLoop)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        take(unwrapInboundIn(data), context: context)
    }

    private func take(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .answering:
            held.append(part)
        case .dropping:
            if case .end = part { state = .passing }
        case .reading(let admitted, var body):
            switch part {
            case .head:
                // The parser ends every request before the next begins; if that ever failed, the requests on this
                // connection could no longer be told apart: end it rather than the node.
                context.close(promise: nil)
            case .body(let chunk):
                // Cleared first, so that appending does not copy the buffer.
                state = .dropping
                if body.readableBytes + chunk.readableBytes > controller.limits.maxBodyBytes {
                    write(controller.tooLarge(nil), context: context)
                } else {
                    if body.readableBytes == 0 { body = chunk } else { body.writeImmutableBuffer(chunk) }
                    state = .reading(admitted, body)
                }
            case .end:
                state = .answering
                answer(body, admitted, context: context)
            }
        case .passing:
            if case .head(let head) = part, passedOn == 0, head.method == .post, Self.isIngest(head.path) {
                controller.metrics.ingestRequestsByHandler.increment()
                switch controller.admit(head.headerFields) {
                case .success(let admitted):
                    state = .reading(admitted, ByteBuffer())
                case .failure(let refusal):
                    state = .dropping
                    write(refusal.answer, context: context)
                }
                return
            }
            if case .head = part { passedOn += 1 }
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    /// The path without its query, as Hummingbird's router matches it.
    private static func isIngest(_ target: String?) -> Bool {
        guard let target else { return false }
        guard let query = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return target == path }
        return target.utf8[..<query].elementsEqual(path.utf8)
    }

    private func answer(_ body: ByteBuffer, _ admitted: IngestController.Admitted, context: ChannelHandlerContext) {
        let answered = context.eventLoop.makePromise(of: HTTPAnswer.self)
        Task(executorPreference: executor) { [controller] in
            do {
                answered.succeed(try await controller.ingest(body, admitted))
            } catch {
                answered.fail(error)
            }
        }
        answered.futureResult.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let answer): write(answer, context: context)
            case .failure(let error):
                write(JSONResponse.errorAnswer(.internalServerError, field: "engine", reason: "\(error)"), context: context)
            }
            state = .passing
            if !held.isEmpty {
                while !isAnswering, let next = held.popFirst() { take(next, context: context) }
                // What went on to Hummingbird reaches its request loop with the read's completion.
                context.fireChannelReadComplete()
            }
            if !isAnswering, readWaiting {
                readWaiting = false
                context.read()
            }
        }
    }

    private func write(_ answer: HTTPAnswer, context: ChannelHandlerContext) {
        var head = answer.head
        head.headerFields[.contentLength] = String(answer.body.readableBytes)
        head.headerFields[.date] = HTTPDate.now
        head.headerFields[.server] = serverName
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if answer.body.readableBytes > 0 { context.write(wrapOutboundOut(.body(answer.body)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private var isAnswering: Bool {
        if case .answering = state { return true }
        return false
    }

    func read(context: ChannelHandlerContext) {
        if isAnswering {
            readWaiting = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Hummingbird's answer to a parse error ends a response no head was passed on for.
        if case .end = unwrapOutboundIn(data) { passedOn = max(0, passedOn - 1) }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The body's framing broke while this handler was reading it (`HTTP1ConnectionGuard` has marked the request
        // as ending the connection): answered here, as Hummingbird's route would.
        if case .reading = state, let malformed = error as? HTTPParserError {
            state = .dropping
            write(controller.brokenFraming(malformed), context: context)
            return
        }
        context.fireErrorCaught(error)
    }
}
