import CHiredis
import NIOCore

/// Commands already encoded as RESP, and the promise that receives their `count` replies in order.
struct RESPRequest: Sendable {
    var payload: ByteBuffer
    var count: Int
    var promise: EventLoopPromise<[RedisReply]>
}

/// The RESP2 protocol on one channel: writes encoded commands, decodes replies with a hiredis reader, and hands
/// each request its replies in FIFO order, which is what lets many requests be in flight at once (pipelining).
///
/// The hiredis reader is not thread-safe; it lives and dies with this handler, which NIO only ever calls on the
/// channel's event loop.
///
/// With `onPush`, the channel is a pub/sub subscriber: `message`, `pmessage` and `smessage` arrays are server pushes, not
/// replies, and go to `onPush` — batched per read, so a burst costs one hand-off instead of one per message.
final class RESPHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = RESPRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let count: Int
        let promise: EventLoopPromise<[RedisReply]>
        let deadline: NIODeadline
    }

    private let commandTimeout: TimeAmount
    private let onPush: (@Sendable ([RedisReply]) -> Void)?
    private let onMoved: (@Sendable (ClusterRedirect) -> Void)?

    private var reader: UnsafeMutablePointer<redisReader>?
    private var pending = CircularBuffer<Pending>()
    /// Replies received so far for `pending.first`, which may expect many.
    private var headReplies: [RedisReply] = []
    private var pushes: [RedisReply] = []
    private var timer: Scheduled<Void>?
    /// Set once the connection is unusable; every later request fails with it.
    private var failure: RedisError?

    /// - Parameter onMoved: hears every `MOVED` reply (a Redis Cluster slot that has moved) before the command's
    ///   caller does, so the connection's owner can re-locate before the caller retries.
    init(
        commandTimeout: TimeAmount, onPush: (@Sendable ([RedisReply]) -> Void)? = nil,
        onMoved: (@Sendable (ClusterRedirect) -> Void)? = nil
    ) {
        self.commandTimeout = commandTimeout
        self.onPush = onPush
        self.onMoved = onMoved
    }

    func handlerAdded(context: ChannelHandlerContext) {
        reader = redisReaderCreate()
        if reader == nil { failure = .protocolError("hiredis could not allocate a reader") }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(with: failure ?? .connectionClosed)
        timer?.cancel()
        timer = nil
        if let reader {
            redisReaderFree(reader)
            self.reader = nil
        }
    }

    // MARK: outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(RedisError.notSent("\(failure)"))
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        pending.append(Pending(count: request.count, promise: request.promise, deadline: .now() + commandTimeout))
        armTimer(context: context)
        context.write(wrapOutboundOut(request.payload), promise: promise)
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard failure == nil, let reader else { return }
        let fed = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        guard fed == REDIS_OK else {
            abort(context: context, with: .protocolError(readerError(reader)))
            return
        }
        while failure == nil {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
                abort(context: context, with: .protocolError(readerError(reader)))
                return
            }
            guard let raw else { break }
            let reply = RedisReply(hiredis: raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            route(reply, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliverPushes()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliverPushes()
        if failure == nil { failure = .connectionClosed }
        fail(with: failure ?? .connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An I/O error leaves the byte stream in an unknown state; nothing more can be matched to requests.
        abort(context: context, with: .connectionClosed)
    }

    // MARK: private

    private func route(_ reply: RedisReply, context: ChannelHandlerContext) {
        if onPush != nil, Self.isPush(reply) || (pending.isEmpty && Self.isUnsolicitedUnsubscribe(reply)) {
            pushes.append(reply)
            return
        }
        guard let head = pending.first else {
            abort(context: context, with: .protocolError("a reply arrived that no command was waiting for"))
            return
        }
        if let onMoved, case .error(let message) = reply, message.hasPrefix("MOVED "),
            let redirect = ClusterRedirect(errorMessage: message)
        {
            onMoved(redirect)
        }
        headReplies.append(reply)
        guard headReplies.count == head.count else { return }
        pending.removeFirst()
        let replies = headReplies
        headReplies = []
        head.promise.succeed(replies)
    }

    private static func isPush(_ reply: RedisReply) -> Bool {
        guard case .array(let elements) = reply, elements.count >= 3, case .string(let kind) = elements[0] else {
            return false
        }
        return kind.elementsEqual("message".utf8) || kind.elementsEqual("pmessage".utf8) || kind.elementsEqual("smessage".utf8)
    }

    /// A Redis Cluster node ends a sharded subscription by itself (`sunsubscribe`, no command asked) when the
    /// channel's slot moves to another node: the subscriber must hear that, not take it for a stray reply.
    private static func isUnsolicitedUnsubscribe(_ reply: RedisReply) -> Bool {
        guard case .array(let elements) = reply, elements.count == 3, case .string(let kind) = elements[0] else { return false }
        return kind.elementsEqual("sunsubscribe".utf8)
    }

    private func deliverPushes() {
        guard !pushes.isEmpty, let onPush else { return }
        let batch = pushes
        pushes = []
        onPush(batch)
    }

    /// One timer per connection, aimed at the oldest request: FIFO order means if the oldest is on time, so is
    /// everyone behind it. Ten thousand pipelined commands cost one scheduled task, not ten thousand.
    private func armTimer(context: ChannelHandlerContext) {
        guard timer == nil, let oldest = pending.first else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: oldest.deadline) {
            self.timer = nil
            guard let oldest = self.pending.first else { return }
            if oldest.deadline <= .now() {
                self.abort(context: context, with: .timeout)
            } else {
                self.armTimer(context: context)
            }
        }
    }

    private func abort(context: ChannelHandlerContext, with error: RedisError) {
        guard failure == nil else { return }
        failure = error
        fail(with: error)
        context.close(promise: nil)
    }

    private func fail(with error: RedisError) {
        // Swap first: a failed promise's callback may write again, re-entering this handler.
        let failed = pending
        pending.removeAll()
        headReplies = []
        for request in failed { request.promise.fail(error) }
    }

    private func readerError(_ reader: UnsafeMutablePointer<redisReader>) -> String {
        withUnsafeBytes(of: reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
