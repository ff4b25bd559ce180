import Foundation
import NIOCore
import Synchronization

/// Fired once; every waiter (present and future) resumes. A cancelled waiter resumes too.
final class StopSignal: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var isFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { state in
            state.fired = true
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume() }
    }

    func wait() async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Bounds how many subscribers connect at once (a thousand simultaneous SYNs overflow a listen backlog).
final class AsyncSemaphore: Sendable {
    private struct State {
        var permits: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(permits: Int) { state = Mutex(State(permits: permits)) }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state in
                if state.permits > 0 {
                    state.permits -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.permits += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// How many subscribers have subscribed, or failed to.
final class Readiness: Sendable {
    private let counts = Mutex((ready: 0, failed: 0))

    func ready() { counts.withLock { $0.ready += 1 } }
    func failed() { counts.withLock { $0.failed += 1 } }
    var snapshot: (ready: Int, failed: Int) { counts.withLock { $0 } }
}

// MARK: - Running subscribers on their channel's event loop

/// Runs a task's nonisolated async code on a NIO event loop (`withTaskExecutorPreference` /
/// `addTask(executorPreference:)`). A subscriber's WebSocket channel and the task that reads it then share one
/// thread: a frame no longer costs a wake-up of a Swift concurrency thread and a hop back, which is most of
/// what a delivery costs the harness (measured with perf: futex wake-ups and task switches dominated).
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

