import NIOCore
import Synchronization

/// `websocket.write_delay_ms`: the flush passes of one event loop's connections, delayed and run together. The
/// first connection with frames ready schedules one timer for the loop; every connection that becomes ready before
/// it fires joins that batch. So frames that arrive meanwhile share a connection's system call, and there is one
/// timer and one wake-up per loop rather than per connection (a timer per connection, tried first, spread the
/// writes out and cost more CPU than it saved at low rates: loadtest/RESULTS.md).
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
        loop.scheduleTask(in: delay) { self.runBatch() }
    }

    private func runBatch() {
        var batch: [Pass] = []
        ready.withLock { swap(&batch, &$0) }
        for pass in batch { pass() }
    }
}

/// One `LoopFlusher` per event loop, made on first use; none when the delay is 0 (frames are written at once).
final class LoopFlushers: Sendable {
    private let delay: TimeAmount
    private let flushers = Mutex<[ObjectIdentifier: LoopFlusher]>([:])

    init(delay: TimeAmount) { self.delay = delay }

    func flusher(for loop: any EventLoop) -> LoopFlusher? {
        guard delay > .zero else { return nil }
        return flushers.withLock { known in
            if let flusher = known[ObjectIdentifier(loop)] { return flusher }
            let flusher = LoopFlusher(loop: loop, delay: delay)
            known[ObjectIdentifier(loop)] = flusher
            return flusher
        }
    }
}
