import DequeModule
import NIOCore
import Synchronization

/// A connection's bounded queue of outbound frames, drained by exactly one writer task.
///
/// Fan-out only ever calls `push`, which never waits: a client that reads slower than events arrive fills its
/// own outbox and is cut loose (`push` returns false), never waited for — one slow dashboard cannot stall the
/// others. A single writer per connection also keeps frames whole: the WebSocket writer must not be used by
/// several tasks at once (with permessage-deflate it corrupts the stream).
final class Outbox: Sendable {
    enum Ending: Sendable, Equatable {
        case overflowed
        case closed
    }

    private struct State {
        var frames = Deque<ByteBuffer>()
        var ending: Ending?
        var waiter: CheckedContinuation<Void, Never>?
    }

    let capacity: Int
    private let state = Mutex(State())
    /// Told once, outside the lock, when the outbox overflows: the writer may be stuck on a socket that is not
    /// draining, so someone else has to be able to end the connection.
    private let onOverflow: @Sendable () -> Void

    init(capacity: Int, onOverflow: @escaping @Sendable () -> Void = {}) {
        self.capacity = max(1, capacity)
        self.onOverflow = onOverflow
    }

    /// Queues a frame. Returns false when the outbox is full (the connection is then over) or already ended.
    @discardableResult
    func push(_ frame: ByteBuffer) -> Bool {
        let (accepted, waiter, overflowed) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?, Bool) in
            guard state.ending == nil else { return (false, nil, false) }
            guard state.frames.count < capacity else {
                return (false, Self.overflow(&state), true)
            }
            state.frames.append(frame)
            return (true, state.waiter.take(), false)
        }
        waiter?.resume()
        if overflowed { onOverflow() }
        return accepted
    }

    /// Ends the outbox as overflowed: what is queued is dropped, the writer closes the connection with 4001.
    func overflow() {
        let (waiter, first) = state.withLock { state in
            let first = state.ending == nil
            return (first ? Self.overflow(&state) : nil, first)
        }
        waiter?.resume()
        if first { onOverflow() }
    }

    private static func overflow(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        state.ending = .overflowed
        state.frames.removeAll()
        return state.waiter.take()
    }

    /// Ends the outbox; the writer gets what is queued (unless it overflowed), then the ending.
    func close() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.ending == nil { state.ending = .closed }
            return state.waiter.take()
        }
        waiter?.resume()
    }

    var count: Int { state.withLock { $0.frames.count } }

    /// Everything queued so far, waiting if there is nothing; `.ended` once the outbox is over and drained.
    func next() async -> Next {
        while true {
            let result: Next? = state.withLock { state in
                if state.ending == .overflowed { return .ended(.overflowed) }
                if !state.frames.isEmpty {
                    defer { state.frames.removeAll(keepingCapacity: true) }
                    return .frames(Array(state.frames))
                }
                if let ending = state.ending { return .ended(ending) }
                return nil
            }
            if let result { return result }
            if Task.isCancelled { return .ended(.closed) }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if !state.frames.isEmpty || state.ending != nil { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                close()
            }
        }
    }

    enum Next: Sendable {
        case frames([ByteBuffer])
        case ended(Ending)
    }
}
