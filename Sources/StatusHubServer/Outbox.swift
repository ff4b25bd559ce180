import DequeModule
import NIOCore
import Synchronization

/// A connection's bounded queue of outbound frames, drained by exactly one writer (a task, or flush passes on the
/// connection's event loop).
///
/// Fan-out only ever calls `push`, which never waits. A reader that falls behind (more than `conflateAbove`
/// frames queued) gets *conflation*: a queued state frame for an entity is dropped when a newer one for the same
/// entity arrives, so the backlog holds one pending state per entity, and frames keep their id order (the newer
/// one goes to the back). A reader that keeps up never loses an event to conflation. Frames without
/// a conflation key (alerts, replies) are never dropped. Only if the queue still fills is the connection over
/// (`push` returns `.overflowed`) — one slow dashboard can never stall the others. A single writer per
/// connection also keeps frames whole: the WebSocket writer must not be used by several tasks at once.
final class Outbox: Sendable {
    enum Ending: Sendable, Equatable {
        /// The queue filled: close with 4001.
        case overflowed
        /// The session ended.
        case closed
        /// The node is shutting down: what is queued is sent, then the socket closes with 1001.
        case goingAway
    }

    enum PushResult: Sendable, Equatable {
        case queued
        /// Queued, and an older frame of the same entity was dropped in its favour.
        case conflated
        case overflowed
        case ended
    }

    enum Next: Sendable {
        case frames([WireFrame])
        case ended(Ending)
    }

    private struct Slot {
        var frame: WireFrame?  // nil once conflated away
        var conflationKey: String?
        /// A live event's, for the writer to time its delivery (`DeliveryTally`).
        var stamp: DeliveryStamp?
    }

    private struct State {
        var slots = Deque<Slot>()
        var live = 0
        /// Sequence number of `slots[0]`, so `queuedByKey` survives the writer taking slots off the front.
        var headSequence: UInt64 = 0
        /// Where each entity's newest queued frame is; kept only while the reader is behind (`keysIndexed`), so a
        /// reader that keeps up costs no dictionary update per frame.
        var queuedByKey: [String: UInt64] = [:]
        var keysIndexed = false
        var ending: Ending?
        var waiter: CheckedContinuation<Void, Never>?
        /// Push mode (`onReady`): whether the reader was told about frames it has not taken yet.
        var readySignalled = false
        var onReady: (@Sendable () -> Void)?
        /// Push mode: told the ending once, when it is set.
        var onEnd: (@Sendable (Ending) -> Void)?
        /// A producer waiting for room (`untilCount(atMost:)`): woken when the writer takes the queue, which empties it.
        var roomWaiter: CheckedContinuation<Void, Never>?
    }

    let capacity: Int
    let conflateAbove: Int
    /// Most frames a take may have held for the queue's storage to stay for the next batch (see `takeAll`).
    static let keptSlots = 8
    private let state = Mutex(State())
    /// Told once, outside the lock, when the outbox overflows: the writer may be stuck on a socket that is not
    /// draining, so someone else has to be able to end the connection.
    private let onOverflow: @Sendable () -> Void

    init(capacity: Int, conflateAbove: Int = 0, onOverflow: @escaping @Sendable () -> Void = {}) {
        self.capacity = max(1, capacity)
        self.conflateAbove = max(0, conflateAbove)
        self.onOverflow = onOverflow
    }

    /// Switches to push mode: `ready` runs (outside the lock) when frames arrive and the reader has not been told
    /// since it last took them, so a reader on an event loop drains with `take()` — once per batch, not per
    /// frame — instead of a task waiting in `next()`; the end arrives through `whenEnded`. Frames already queued
    /// are signalled at once.
    func setOnReady(_ ready: @escaping @Sendable () -> Void) {
        let signal = state.withLock { state -> Bool in
            // An ended outbox keeps no callback (see `end`).
            if state.ending == nil { state.onReady = ready }
            guard state.live > 0, !state.readySignalled else { return false }
            state.readySignalled = true
            return true
        }
        if signal { ready() }
    }

    /// Everything queued (push mode), or nil; the next push signals `onReady` again. `forEachStamp` is told the
    /// stamp of each event frame taken, for a writer that times its deliveries.
    func take(forEachStamp: (DeliveryStamp) -> Void = { _ in }) -> [WireFrame]? {
        let (frames, roomWaiter) = state.withLock { state -> ([WireFrame]?, CheckedContinuation<Void, Never>?) in
            state.readySignalled = false
            guard state.live > 0, state.ending != .overflowed else { return (nil, nil) }
            return (Self.takeAll(&state, forEachStamp), state.roomWaiter.take())
        }
        roomWaiter?.resume()
        return frames
    }

    /// Returns once at most `limit` frames are queued (the writer took them), the outbox ended, or the task was
    /// cancelled: for a producer of many frames (a replay, a snapshot's parts) that must not fill the outbox. Woken
    /// by the writer, not by polling: 19,000 resuming subscribers polling every millisecond kept a node's timers busy
    /// for minutes (loadtest/RESULTS.md, restart storm). One waiter at a time: a connection answers one subscribe
    /// at once.
    func untilCount(atMost limit: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let (now, replaced) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                    if state.live <= limit || state.ending != nil || Task.isCancelled { return (true, nil) }
                    let replaced = state.roomWaiter.take()
                    state.roomWaiter = continuation
                    return (false, replaced)
                }
                replaced?.resume()
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.roomWaiter.take() }?.resume()
        }
    }

    /// Removes and returns every frame still queued (conflated ones are gone already).
    private static func takeAll(_ state: inout State, _ forEachStamp: (DeliveryStamp) -> Void) -> [WireFrame] {
        var frames: [WireFrame] = []
        frames.reserveCapacity(state.live)
        for slot in state.slots {
            guard let frame = slot.frame else { continue }
            frames.append(frame)
            if let stamp = slot.stamp { forEachStamp(stamp) }
        }
        state.headSequence += UInt64(state.slots.count)
        // A reader taking one frame at a time is idle or nearly so: its queue's storage goes (an idle dashboard kept
        // it for its whole life after the `subscribed` reply, ~100 bytes), and the next frame allocates it again,
        // which is little beside the frame's write. A reader taking a few keeps it for the next batch. A reader
        // taking many has just had a burst — a replay on `since`, a snapshot, a backlog — and lets it go too: the
        // storage grown for it (64 slots, ~5 KiB, after a restart's replay) would otherwise stay with the idle
        // dashboard for its whole life; the next burst grows it again, an allocation or two beside its writes.
        state.slots.removeAll(keepingCapacity: (2...Self.keptSlots).contains(state.slots.count))
        // The conflation index exists only for a reader that fell behind; it is not kept for the next batch either.
        if state.keysIndexed { state.queuedByKey = [:] }
        state.keysIndexed = false
        state.live = 0
        return frames
    }

    /// Indexes the queued frames' keys, the first time the backlog is deep enough for conflation.
    private static func indexKeys(_ state: inout State) {
        state.queuedByKey.removeAll(keepingCapacity: true)
        for (offset, slot) in state.slots.enumerated() where slot.frame != nil {
            if let key = slot.conflationKey { state.queuedByKey[key] = state.headSequence + UInt64(offset) }
        }
        state.keysIndexed = true
    }

    /// Push mode: `ended` runs once (outside the lock) when the outbox ends, at once if it has; frames still
    /// queued are for `take()`. A callback rather than a task waiting for the end, because an idle connection
    /// should hold no suspended task (each costs memory; loadtest/RESULTS.md).
    func whenEnded(_ ended: @escaping @Sendable (Ending) -> Void) {
        let ending = state.withLock { state -> Ending? in
            guard let ending = state.ending else {
                state.onEnd = ended
                return nil
            }
            return ending
        }
        if let ending { ended(ending) }
    }

    /// Suspends until a push or an ending resumes the waiter, or at once when there is either already. Cancelling
    /// the waiting task closes the outbox (the session is over).
    private func waitForFramesOrEnd() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.live > 0 || state.ending != nil { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            close()
        }
    }

    /// Queues a frame; `conflationKey` (an entity key) lets a newer frame of the same entity replace it while
    /// both are still queued; `stamp` (a live event's) goes to the writer with the frame.
    @discardableResult
    func push(_ frame: WireFrame, conflationKey: String? = nil, stamp: DeliveryStamp? = nil) -> PushResult {
        let (result, waiter, ready) = state.withLock {
            state -> (PushResult, Wake?, (@Sendable () -> Void)?) in
            guard state.ending == nil else { return (.ended, nil, nil) }
            var conflated = false
            if state.live >= conflateAbove, let key = conflationKey {
                if !state.keysIndexed { Self.indexKeys(&state) }
                if let sequence = state.queuedByKey[key], sequence >= state.headSequence {
                    state.slots[Int(sequence - state.headSequence)].frame = nil
                    state.live -= 1
                    conflated = true
                }
            }
            guard state.live < capacity else { return (.overflowed, Self.overflow(&state), nil) }
            state.slots.append(Slot(frame: frame, conflationKey: conflationKey, stamp: stamp))
            state.live += 1
            if state.keysIndexed, let key = conflationKey {
                state.queuedByKey[key] = state.headSequence + UInt64(state.slots.count - 1)
            }
            // Dropped slots stay until the writer takes the queue; a writer stuck on a slow socket must not let
            // them pile up, so compact once they outnumber the live ones.
            if state.slots.count > 2 * capacity + 64 { Self.compact(&state) }
            if let onReady = state.onReady {
                let first = !state.readySignalled
                state.readySignalled = true
                return (conflated ? .conflated : .queued, nil, first ? onReady : nil)
            }
            return (conflated ? .conflated : .queued, Wake(waiter: state.waiter.take()), nil)
        }
        waiter?.run()
        ready?()
        if result == .overflowed { onOverflow() }
        return result
    }

    /// Ends the outbox as overflowed: what is queued is dropped, the writer closes the connection with 4001.
    func overflow() {
        let (wake, first) = state.withLock { state in
            let first = state.ending == nil
            return (first ? Self.overflow(&state) : nil, first)
        }
        wake?.run()
        if first { onOverflow() }
    }

    /// Returns what tells the writer, to run outside the lock.
    private static func overflow(_ state: inout State) -> Wake {
        state.slots.removeAll()
        state.queuedByKey.removeAll()
        state.keysIndexed = false
        state.live = 0
        return end(&state, as: .overflowed)
    }

    /// Sets the ending and returns what tells the writer of it (a waiting task or the push-mode callback), to run
    /// outside the lock.
    private static func end(_ state: inout State, as ending: Ending) -> Wake {
        state.ending = ending
        // Nothing is pushed after the end, so the reader's signal is done with. It must go: it holds the reader,
        // which holds this outbox (a flush pass drains it) and the channel, and that cycle kept every closed
        // connection's channel, buffers and logger alive — ~4.8 KB a connection (loadtest/RESULTS.md, churn).
        state.onReady = nil
        return Wake(
            waiter: state.waiter.take(), onEnd: state.onEnd.take().map { onEnd in (onEnd, ending) },
            roomWaiter: state.roomWaiter.take())
    }

    /// Who to tell, once the lock is released: the task waiting in `next()`, and the push-mode end callback.
    private struct Wake {
        var waiter: CheckedContinuation<Void, Never>?
        var onEnd: (@Sendable (Ending) -> Void, Ending)?
        var roomWaiter: CheckedContinuation<Void, Never>? = nil

        func run() {
            waiter?.resume()
            roomWaiter?.resume()
            if let (callback, ending) = onEnd { callback(ending) }
        }
    }

    private static func compact(_ state: inout State) {
        state.headSequence += UInt64(state.slots.count)
        let kept = state.slots.filter { $0.frame != nil }
        state.slots = Deque(kept)
        state.headSequence -= UInt64(kept.count)
        indexKeys(&state)
    }

    /// Ends the outbox; the writer gets what is queued, then the ending.
    func close(_ ending: Ending = .closed) {
        let wake = state.withLock { state -> Wake in
            guard state.ending == nil else { return Wake(waiter: state.waiter.take()) }
            return Self.end(&state, as: ending)
        }
        wake.run()
    }

    var count: Int { state.withLock { $0.live } }

    /// Everything queued so far, waiting if there is nothing; `.ended` once the outbox is over and drained.
    /// `forEachStamp` as for `take`.
    func next(forEachStamp: (DeliveryStamp) -> Void = { _ in }) async -> Next {
        while true {
            let (result, roomWaiter) = state.withLock { state -> (Next?, CheckedContinuation<Void, Never>?) in
                if state.ending == .overflowed { return (.ended(.overflowed), nil) }
                if state.live > 0 { return (.frames(Self.takeAll(&state, forEachStamp)), state.roomWaiter.take()) }
                if let ending = state.ending { return (.ended(ending), nil) }
                return (nil, nil)
            }
            roomWaiter?.resume()
            if let result { return result }
            if Task.isCancelled { return .ended(.closed) }
            await waitForFramesOrEnd()
        }
    }
}
