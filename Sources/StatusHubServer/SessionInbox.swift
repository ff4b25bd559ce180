import DequeModule
import NIOCore
import StatusHubCore
import Synchronization

/// The client messages of a WebSocket session served from channel handlers (`WebSocketSessionHandler`), handled in
/// order by a task that exists only while messages wait — a subscribe awaits the engine's snapshot or history — and
/// ends when none is left: an idle connection holds no task. Its first job opens the session: the upgrade's token
/// is verified (jwt-kit's verification is async), then the connection joins fan-out, its outbox is drained by the
/// `DirectFrameWriter`, and the token's expiry becomes a timer; a subscribe the upgrade's URL asked for
/// (`SubscribeQuery`) is answered next, before any message the client sent.
final class SessionInbox: Sendable {
    /// Messages waiting beyond this stop the socket being read until the session has caught up, so a client cannot
    /// queue work faster than the hub does it.
    static let maxWaiting = 16

    /// Verifies the token and makes the session, or says how to close.
    typealias Opening = @Sendable () async -> Result<WebSocketSession, HubAccess.TokenRefusal>

    private enum Job: Sendable {
        case open
        case message(String)
    }

    private struct State {
        var jobs = Deque<Job>()
        /// Whether the task is running.
        var working = false
        /// Nothing more is handled: a close frame went out, or the socket closed.
        var stopped = false
        var ended = false
        var full = false
        var session: WebSocketSession?
        var expiry: ExpiryWatch?
        /// The URL's subscribe, until it is answered once the session is open (not kept for the connection's life).
        var subscribing: URLSubscribe?
        /// Until the session opens: what it captured (the token, the channel, the logger) is not kept for the
        /// connection's life either.
        var opening: Opening?
    }

    /// Boxed: inline, the query's 64 bytes were in every inbox for the connection's life, asked for or not.
    private indirect enum URLSubscribe {
        case query(SubscribeQuery)
    }

    private let state: Mutex<State>
    private let channel: any Channel
    private let executor: EventLoopTaskExecutor
    /// Gives back the connection's place under the connection limits, once.
    private let release: @Sendable () -> Void

    init(channel: any Channel, opening: @escaping Opening, subscribing: SubscribeQuery? = nil, release: @escaping @Sendable () -> Void) {
        self.channel = channel
        self.executor = EventLoopTaskExecutor(channel.eventLoop)
        self.state = Mutex(State(subscribing: subscribing.map(URLSubscribe.query), opening: opening))
        self.release = release
    }

    func open() { enqueue(.open) }

    func push(_ text: String) { enqueue(.message(text)) }

    /// Whether the socket should not be read for now.
    var isFull: Bool { state.withLock { $0.full } }

    /// Handles nothing more (a close frame went out): waiting messages are dropped and fan-out stops queuing.
    func stop() {
        let session = state.withLock { state in
            state.stopped = true
            state.jobs.removeAll()
            return state.session
        }
        session?.connection.outbox.close()
    }

    /// The node is going away: an open session sends what is queued, then closes with 1001. False when no session is
    /// open (yet).
    func goAway() -> Bool {
        guard let session = state.withLock({ $0.session }) else { return false }
        session.connection.goAway()
        return true
    }

    /// The socket closed: the session leaves fan-out and the connection limits.
    func end() {
        let (first, session, expiry) = state.withLock { state in
            defer {
                state.ended = true
                state.stopped = true
                state.jobs.removeAll()
            }
            return (!state.ended, state.session.take(), state.expiry.take())
        }
        guard first else { return }
        expiry?.cancel()
        session?.close()
        release()
    }

    private func enqueue(_ job: Job) {
        let start = state.withLock { state in
            guard !state.stopped else { return false }
            state.jobs.append(job)
            if state.jobs.count >= Self.maxWaiting { state.full = true }
            guard !state.working else { return false }
            state.working = true
            return true
        }
        // On the connection's event loop, like everything else the connection does.
        if start { Task(executorPreference: executor) { await self.work() } }
    }

    private func work() async {
        while let job = next() {
            switch job {
            case .open:
                await openSession()
            case .message(let text):
                guard let session = state.withLock({ $0.session }) else { continue }
                if let code = await session.receive(text) { close(code) }
            }
        }
    }

    /// The next job, or nil (and the task ends) when none waits.
    private func next() -> Job? {
        let (job, resume) = state.withLock { state -> (Job?, Bool) in
            guard !state.stopped, let job = state.jobs.popFirst() else {
                state.working = false
                // An idle connection keeps no queue storage (it had one for its first messages).
                state.jobs = Deque()
                return (nil, false)
            }
            let resume = state.full && state.jobs.count < Self.maxWaiting / 2
            if resume { state.full = false }
            return (job, resume)
        }
        if resume { onHandler { $0.resumeReading() } }
        return job
    }

    private func openSession() async {
        guard let opening = state.withLock({ $0.opening.take() }) else { return }
        let session: WebSocketSession
        switch await opening() {
        case .failure(let refusal): return close(refusal.code, reason: refusal.reason)
        case .success(let made): session = made
        }
        // Open under the lock, so that `end` finds either no session or an open one.
        let opened = state.withLock { state in
            guard !state.stopped else { return false }
            session.open()
            state.session = session
            return true
        }
        guard opened else { return }
        let connection = session.connection
        session.direct.start(draining: connection.outbox, flusher: session.flushers.flusher(for: channel.eventLoop))
        // Kept for the connection's life: it captures the parts it uses, not the whole session (~130 bytes more).
        let (direct, flushers, logger) = (session.direct, session.flushers, session.logger)
        connection.outbox.whenEnded { [self] ending in
            guard ending != .closed else { return }
            onHandler { handler in
                // Still queued when the node goes away: sent before the 1001 (through the loop's flusher, which
                // times these deliveries too).
                if ending == .goingAway {
                    let flusher = flushers.flusher(for: direct.channel.eventLoop)
                    let frames = flusher.takeForWriting(connection.outbox)
                    flusher.commitWritten()
                    if let frames { direct.writeNow(frames) }
                }
                if ending == .overflowed { logger.notice("closing slow consumer", metadata: ["connection": "\(connection.id)"]) }
                handler.close(ending == .overflowed ? .slowConsumer : .goingAway)
            }
        }
        // A token's `exp` closes the socket (4003) unless `{"op":"auth"}` brought a fresh one in time.
        let expiry = session.access.watchExpiry(on: channel.eventLoop) { [self] in close(.tokenExpired) }
        let (ended, subscribing) = state.withLock { state in
            if !state.ended { state.expiry = expiry }
            return (state.ended, state.subscribing.take())
        }
        if ended {
            expiry?.cancel()
            return
        }
        if case .query(let query)? = subscribing { await session.subscribe(query) }
    }

    private func close(_ code: CloseCode, reason: String? = nil) {
        onHandler { $0.close(code, reason: reason) }
    }

    /// Runs `body` with the connection's handler, on its event loop (nothing, once the channel is gone).
    private func onHandler(_ body: @escaping @Sendable (WebSocketSessionHandler) -> Void) {
        let channel = channel
        channel.eventLoop.execute {
            guard let handler = try? channel.pipeline.syncOperations.handler(type: WebSocketSessionHandler.self) else { return }
            body(handler)
        }
    }
}
