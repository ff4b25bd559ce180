import Foundation
import Synchronization

/// Messages from libmosquitto's network thread to the bridge's task, bounded: `put` waits while `capacity`
/// messages are held, so a slow or unavailable engine stops the client reading from the broker (back-pressure)
/// instead of growing memory. Waiting there blocks only that dedicated thread, never an event loop or a pool thread.
final class MessageHandoff: Sendable {
    private struct State {
        var queue: [MQTTMessage] = []
        var waiter: CheckedContinuation<Void, Never>?
        var closed = false
    }

    private let state = Mutex(State())
    /// Free places; `put` takes one, `release` gives them back once the messages are stored.
    private let space: DispatchSemaphore
    private let heldCount = Atomic<Int>(0)
    /// Messages put and not yet released: received from the broker and not yet stored.
    var held: Int { heldCount.load(ordering: .relaxed) }
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        // Created at 0 and raised to `capacity`: libdispatch traps when a semaphore is freed below the value it was
        // created with, and a stopping bridge may leave places taken.
        space = DispatchSemaphore(value: 0)
        for _ in 0..<capacity { space.signal() }
    }

    /// Called on the network thread. False once closed (the message is dropped: the node is stopping).
    @discardableResult
    func put(_ message: MQTTMessage) -> Bool {
        while space.wait(timeout: .now() + .milliseconds(200)) == .timedOut {
            if state.withLock({ $0.closed }) { return false }
        }
        heldCount.add(1, ordering: .relaxed)
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            guard !state.closed else { return nil }
            state.queue.append(message)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
        return true
    }

    private enum Taken {
        case batch([MQTTMessage])
        case empty
        case closed
    }

    /// Everything queued (at most `limit`), waiting for at least one; nil once closed.
    func take(limit: Int) async -> [MQTTMessage]? {
        while true {
            let taken = state.withLock { state -> Taken in
                if state.closed { return .closed }
                if state.queue.isEmpty { return .empty }
                let batch = Array(state.queue.prefix(limit))
                state.queue.removeFirst(batch.count)
                return .batch(batch)
            }
            switch taken {
            case .closed: return nil
            case .batch(let batch): return batch
            case .empty:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state in
                        if state.closed || !state.queue.isEmpty { return true }
                        state.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
                // Woken by a message, by `close`, or by `wake` (the bridge's clock): an empty batch for the last.
                return state.withLock { state in
                    if state.closed { return nil }
                    let batch = Array(state.queue.prefix(limit))
                    state.queue.removeFirst(batch.count)
                    return batch
                }
            }
        }
    }

    /// Lets a waiting `take` return, with nothing if nothing came (the Sparkplug reorder clock ticks this way).
    func wake() {
        let waiter = state.withLock { state in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Frees the places of messages that are stored (or given up).
    func release(_ count: Int) {
        heldCount.subtract(count, ordering: .relaxed)
        for _ in 0..<count { space.signal() }
    }

    func close() {
        let waiter = state.withLock { state in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    var count: Int { state.withLock { $0.queue.count } }
}
