import NIOCore
import NIOPosix
import Synchronization

/// The flush passes of one event loop's connections, run together: the first connection with frames ready
/// schedules one batch for the loop, and every connection that becomes ready before it runs joins it. So frames
/// that arrive meanwhile share a connection's system call, and there is one wake-up per loop rather than per
/// connection.
///
/// When the batch runs is adaptive, the way TCP autocorking decides (`delay` zero, the default): at once when the
/// loop is idle, but never in the middle of the work that made the frames — a push from code running on an event
/// loop (fan-out of a Redis read, an ingest request on the memory engine) has the batch wait until that loop's
/// current job is done, so one fan-out of one read gathers into one batch, and a node that falls behind gathers
/// more (the events that arrive while a batch is writing are read together and written together). So latency is
/// minimal at low load and system calls per delivery fall as load rises. With a delay
/// (`websocket.write_delay_ms`), the batch runs that long after its first pass at the earliest: one timer per
/// loop (a timer per connection, tried first, spread the writes out and cost more CPU than it saved at low rates:
/// loadtest/RESULTS.md).
final class LoopFlusher: Sendable {
    typealias Pass = @Sendable () -> Void
    let loop: any EventLoop
    let delay: TimeAmount
    private let ready = Mutex<[Pass]>([])

    init(loop: any EventLoop, delay: TimeAmount) {
        self.loop = loop
        self.delay = delay
    }

    /// Runs `pass` on the loop with the next batch.
    func schedule(_ pass: @escaping Pass) {
        let first = ready.withLock { passes in
            passes.append(pass)
            return passes.count == 1
        }
        guard first else { return }
        if delay > .zero {
            loop.scheduleTask(in: delay) { self.runBatch() }
        } else if loop.inEventLoop {
            // Behind whatever this loop is doing now, which may push more.
            loop.execute { self.runBatch() }
        } else if let current = MultiThreadedEventLoopGroup.currentEventLoop {
            // Pushed from another loop's work: wake this loop once that work is done, not for its first frame (a
            // wake-up per push let this loop take the frames one by one while the other was still pushing).
            DeferredWakeUps.onCurrentThread.add(self, after: current)
        } else {
            loop.execute { self.runBatch() }
        }
    }

    fileprivate func wakeUp() {
        loop.execute { self.runBatch() }
    }

    private func runBatch() {
        var batch: [Pass] = []
        ready.withLock { swap(&batch, &$0) }
        for pass in batch { pass() }
    }
}

/// The flushers of other loops that the current loop's job made ready, woken together when that job is done.
/// Touched only by its own thread (so unchecked `Sendable`: a thread-specific variable needs a `Sendable` value).
private final class DeferredWakeUps: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<DeferredWakeUps>()
    private var flushers: [LoopFlusher] = []

    static var onCurrentThread: DeferredWakeUps {
        if let wakeUps = perThread.currentValue { return wakeUps }
        let wakeUps = DeferredWakeUps()
        perThread.currentValue = wakeUps
        return wakeUps
    }

    /// `current` is the loop running on this thread.
    /// `current` is the loop running on this thread. A flusher is added at its batch's first pass; if another
    /// thread ran that batch meanwhile and it is added again, the second wake-up finds little or nothing to do.
    func add(_ flusher: LoopFlusher, after current: any EventLoop) {
        flushers.append(flusher)
        guard flushers.count == 1 else { return }
        current.execute {
            let woken = self.flushers
            self.flushers.removeAll(keepingCapacity: true)
            for flusher in woken { flusher.wakeUp() }
        }
    }
}

/// One `LoopFlusher` per event loop, made on first use.
final class LoopFlushers: Sendable {
    private let delay: TimeAmount
    private let flushers = Mutex<[ObjectIdentifier: LoopFlusher]>([:])

    init(delay: TimeAmount) { self.delay = delay }

    func flusher(for loop: any EventLoop) -> LoopFlusher {
        flushers.withLock { known in
            if let flusher = known[ObjectIdentifier(loop)] { return flusher }
            let flusher = LoopFlusher(loop: loop, delay: delay)
            known[ObjectIdentifier(loop)] = flusher
            return flusher
        }
    }
}
