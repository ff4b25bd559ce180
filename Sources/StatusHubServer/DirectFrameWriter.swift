import NIOCore
import NIOWebSocket
import Prometheus

/// Writes a connection's queued frames straight to the socket, below the WebSocket frame encoder: a batch costs
/// one flush (one `writev`) instead of an actor hop, an encoder pass, a header allocation and a flush per frame.
///
/// With permessage-deflate the frames go out compressed, each message's compressed form made once and shared by
/// every connection with the same window size (`WireFrame`). Ping, pong and close frames (never compressed) go
/// through the session's handler (`WebSocketSessionHandler`) and `Heartbeat`; `CloseWatch` sees the close frame pass, after
/// which no data frame is written (frames are whole on the wire either way: each is one buffer written on the
/// channel's event loop). The flush passes are the only writer of data frames.
final class DirectFrameWriter: Sendable {
    /// Lives on the channel's event loop, shared by the two handlers and the writer.
    final class State {
        var outlet: ChannelHandlerContext?
        var closeSent = false
        /// Set while frames wait for the channel to become writable again.
        var onWritable: (() -> Void)?
    }

    struct Closed: Error {}

    let channel: any Channel
    private let state: NIOLoopBound<State>
    /// The server window of a negotiated permessage-deflate; nil: frames go out plain.
    private let deflateWindowBits: Int?
    private let compressions: Counter?

    private init(channel: any Channel, state: NIOLoopBound<State>, deflateWindowBits: Int?, compressions: Counter?) {
        self.channel = channel
        self.state = state
        self.deflateWindowBits = deflateWindowBits
        self.compressions = compressions
    }

    /// Adds the outlet (just in front of the frame encoder, so its bytes still pass TLS when the node serves
    /// `wss://`) and the close watch (just behind the encoder, so every frame the library writes passes it).
    /// Call on the channel's event loop once the WebSocket pipeline is set up.
    static func add(to channel: any Channel, deflateWindowBits: Int? = nil, compressions: Counter? = nil) throws -> DirectFrameWriter {
        let state = State()
        let pipeline = channel.pipeline.syncOperations
        let encoder = try pipeline.handler(type: WebSocketFrameEncoder.self)
        try pipeline.addHandler(CloseWatch(state: state), position: .after(encoder))
        try pipeline.addHandler(Outlet(state: state), position: .before(encoder))
        return DirectFrameWriter(
            channel: channel, state: NIOLoopBound(state, eventLoop: channel.eventLoop), deflateWindowBits: deflateWindowBits,
            compressions: compressions)
    }

    /// Drains `outbox` on the channel's event loop from now on: a push into an empty outbox puts a flush pass in
    /// the loop's next batch (`LoopFlusher`: at once while the loop is idle, after the work in progress while it is
    /// busy, or after `websocket.write_delay_ms`), which takes everything queued by the time it runs and writes it
    /// with one flush. So a busy node writes bigger batches rather than more of them. While the channel is not
    /// writable (a flush still in flight), frames stay in the outbox, where conflation and the overflow limit apply.
    func start(draining outbox: Outbox, flusher: LoopFlusher) {
        precondition(flusher.loop === channel.eventLoop, "a connection is flushed by its own event loop's flusher")
        // One closure for the connection's life, not one per batch.
        let pass: LoopFlusher.Pass = { [self] in flushPass(outbox, flusher) }
        outbox.setOnReady { flusher.schedule(pass) }
    }

    /// Takes what is queued and writes it; the flusher times each event frame's delivery as it is taken, right
    /// before the write (frames dropped here are never written, so not timed).
    private func flushPass(_ outbox: Outbox, _ flusher: LoopFlusher) {
        let state = self.state.value
        guard !state.closeSent, let outlet = state.outlet else {
            _ = outbox.take()
            return
        }
        guard channel.isWritable else {
            state.onWritable = { [self] in
                flushPass(outbox, flusher)
                flusher.commitWritten()
            }
            return
        }
        guard let frames = flusher.takeForWriting(outbox), !frames.isEmpty else { return }
        outlet.writeAndFlush(NIOAny(joined(frames)), promise: nil)
    }

    /// Several frames as one buffer: copying a few hundred bytes each costs less than a write per frame through
    /// the pipeline and NIO's pending-write queue (one `writev` either way).
    private func joined(_ frames: [WireFrame]) -> ByteBuffer {
        guard frames.count > 1 else { return frames[0].bytes(deflatingWith: deflateWindowBits, compressions: compressions) }
        // The plain sizes bound the buffer: a compressed form goes out only when it is smaller.
        var buffer = channel.allocator.buffer(capacity: frames.reduce(0) { $0 + $1.framed.readableBytes })
        for frame in frames { buffer.writeImmutableBuffer(frame.bytes(deflatingWith: deflateWindowBits, compressions: compressions)) }
        return buffer
    }

    /// Writes `frames` (made by `WireFrame`) in order, as one buffer with one flush: the frames still queued when
    /// the node goes away, before its 1001. Returns at once while the channel stays writable, otherwise once they
    /// are handed to the socket. Throws once the close frame went out or the channel closed.
    func write(_ frames: [WireFrame]) async throws {
        guard !frames.isEmpty else { return }
        if channel.eventLoop.inEventLoop {
            if let written = try writeOnLoop(frames) { try await written.get() }
        } else {
            try await channel.eventLoop.flatSubmit { [self] in
                do {
                    return try writeOnLoop(frames) ?? channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }.get()
        }
    }

    /// `write` on the channel's event loop without waiting: for the frames still queued when the node goes away,
    /// written just before the 1001 (which follows them through the pipeline).
    func writeNow(_ frames: [WireFrame]) {
        guard !frames.isEmpty else { return }
        _ = try? writeOnLoop(frames)
    }

    private func writeOnLoop(_ frames: [WireFrame]) throws -> EventLoopFuture<Void>? {
        let state = self.state.value
        guard !state.closeSent, let outlet = state.outlet, channel.isActive else { throw Closed() }
        let written = channel.eventLoop.makePromise(of: Void.self)
        outlet.writeAndFlush(NIOAny(joined(frames)), promise: written)
        return channel.isWritable ? nil : written.futureResult
    }

    /// In front of the encoder: its context writes frame bytes on toward the socket (through TLS, if any), past the
    /// encoder. Passes everything else through.
    private final class Outlet: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let state: State
        init(state: State) { self.state = state }
        func handlerAdded(context: ChannelHandlerContext) { state.outlet = context }
        func handlerRemoved(context: ChannelHandlerContext) {
            state.outlet = nil
            state.onWritable = nil
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            context.fireChannelWritabilityChanged()
            if context.channel.isWritable, let resume = state.onWritable {
                state.onWritable = nil
                resume()
            }
        }
    }

    /// Behind the encoder: notes the close frame the library sends, so no data frame follows it.
    private final class CloseWatch: ChannelOutboundHandler, RemovableChannelHandler {
        typealias OutboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame
        let state: State
        init(state: State) { self.state = state }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if unwrapOutboundIn(data).opcode == .connectionClose { state.closeSent = true }
            context.write(data, promise: promise)
        }
    }
}

/// Runs a task's code on a NIO event loop (`addTask(executorPreference:)`): a connection's writer then writes to
/// its channel without a thread hop per batch.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
