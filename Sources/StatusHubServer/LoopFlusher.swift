import NIOCore
import NIOPosix
import Synchronization

/// The flush passes of one event loop's connections, run together: the first connection with frames ready
/// schedules one batch for the loop, and every connection that becomes ready before it runs joins it. So frames
/// that arrive meanwhile share a connection's system call, and there is one wake-up per loop rather than per
/// connection.
///
/// When the batch runs is adaptive, the way TCP autocorking decides (`delay` zero, the default): at once while the
/// loop is idle, after the work in progress while it is busy. A fan-out wakes each other loop once, when it has
/// offered the event to every receiver (`holdWakeUps`), not at its first frame (a wake-up per push let the other
/// loop take the frames one by one meanwhile); the pushing loop's own connections are flushed when its current
/// job is done. A loop still busy writing the last batch when the next event comes gathers it with
/// whatever else arrives meanwhile, so latency is minimal at low load and system calls per delivery fall as load
/// rises. With a delay (`websocket.write_delay_ms`) a batch runs that long after its first pass at the earliest:
/// one timer per loop (a timer per connection, tried first, spread the writes out and cost more CPU than it saved
/// at low rates: loadtest/RESULTS.md).
///
/// The passes time the deliveries they write (`takeForWriting`) into one tally for the loop, handed to the latency
/// telemetry when the batch ends: one lock per batch for the shared histogram, not one per frame.
final class LoopFlusher: Sendable {
    typealias Pass = @Sendable () -> Void
    let loop: any EventLoop
    let delay: TimeAmount
    private let ready = Mutex<[Pass]>([])
    /// The deliveries written since the last commit; nil when the hub keeps no latency figures.
    private let written: NIOLoopBoundBox<DeliveryTally>?

    init(loop: any EventLoop, delay: TimeAmount, latency: LatencyTelemetry? = nil) {
        self.loop = loop
        self.delay = delay
        written = latency.map { NIOLoopBoundBox.makeBoxSendingValue(DeliveryTally(for: $0), eventLoop: loop) }
    }

    /// For a pass about to write what it takes: `outbox`'s frames, each event frame's delivery timed now (one clock
    /// reading for the pass). On the loop; anywhere else the frames are taken untimed.
    func takeForWriting(_ outbox: Outbox) -> [WireFrame]? {
        guard let written, loop.inEventLoop else { return outbox.take() }
        return written.withValue { tally in
            tally.beginWrite()
            return outbox.take(forEachStamp: { tally.add($0) })
        }
    }

    /// Hands the deliveries timed since the last commit to the telemetry. A batch does it when it ends; a pass run
    /// outside a batch (a channel writable again) after itself.
    func commitWritten() {
        guard let written, loop.inEventLoop else { return }
        written.withValue { $0.commit() }
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
        } else if loop.inEventLoop || !PendingWakeUps.onCurrentThread.defer(self) {
            // On its own loop this runs behind whatever the loop is doing now, which may push more.
            wakeUp()
        }
    }

    /// Holds this thread's wake-ups of other loops until `release()`: a fan-out pushing frames to many connections
    /// wakes each loop it made ready once, at the end. For synchronous code: release on the same thread.
    static func holdWakeUps() -> WakeUpHold {
        let pending = PendingWakeUps.onCurrentThread
        pending.depth += 1
        return WakeUpHold(pending: pending)
    }

    struct WakeUpHold {
        fileprivate let pending: PendingWakeUps

        func release() {
            pending.depth -= 1
            if pending.depth == 0 { pending.wakeAll() }
        }
    }

    fileprivate func wakeUp() {
        loop.execute { self.runBatch() }
    }

    private func runBatch() {
        var batch: [Pass] = []
        ready.withLock { swap(&batch, &$0) }
        for pass in batch { pass() }
        commitWritten()
    }
}

/// The loops a fan-out in progress on this thread has made ready, woken when it ends. Touched only by its own
/// thread (so unchecked `Sendable`: a thread-specific variable needs a `Sendable` value).
private final class PendingWakeUps: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<PendingWakeUps>()
    /// Fan-outs in progress on this thread (`holdWakeUps`).
    var depth = 0
    private var flushers: [LoopFlusher] = []

    static var onCurrentThread: PendingWakeUps {
        if let pending = perThread.currentValue { return pending }
        let pending = PendingWakeUps()
        perThread.currentValue = pending
        return pending
    }

    /// Holds `flusher`'s wake-up until the fan-out ends; false outside a fan-out. A flusher is held at its batch's
    /// first pass; if another thread ran that batch meanwhile and it is held again, the second wake-up finds little
    /// or nothing to do.
    func `defer`(_ flusher: LoopFlusher) -> Bool {
        guard depth > 0 else { return false }
        flushers.append(flusher)
        return true
    }

    func wakeAll() {
        guard !flushers.isEmpty else { return }
        let woken = flushers
        flushers.removeAll(keepingCapacity: true)
        for flusher in woken { flusher.wakeUp() }
    }
}

/// One `LoopFlusher` per event loop, made on first use.
final class LoopFlushers: Sendable {
    private let delay: TimeAmount
    private let latency: LatencyTelemetry?
    private let flushers = Mutex<[ObjectIdentifier: LoopFlusher]>([:])

    init(delay: TimeAmount, latency: LatencyTelemetry? = nil) {
        self.delay = delay
        self.latency = latency
    }

    func flusher(for loop: any EventLoop) -> LoopFlusher {
        flushers.withLock { known in
            if let flusher = known[ObjectIdentifier(loop)] { return flusher }
            let flusher = LoopFlusher(loop: loop, delay: delay, latency: latency)
            known[ObjectIdentifier(loop)] = flusher
            return flusher
        }
    }
}
