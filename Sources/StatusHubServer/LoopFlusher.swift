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
/// One more rule holds frames under load, as Nagle's and autocorking's do while the wire is busy: when writing
/// took more than three quarters of the loop's time since the previous batch (not counting a hold), the next batch
/// runs no sooner after this one ended than this one took, and never more than `maxHold` later. At low load, or
/// with room to spare (1,000 subscribers at 50 events/s on one core), nothing waits; when a fan-out's writes fill
/// the loop (the same at 100–300 events/s), the next batch waits a few milliseconds and carries two or more frames per
/// connection in one `write`, which costs less CPU per delivery than a `write` each, instead of the loop falling
/// behind until every latency is a second (loadtest/RESULTS.md). A loop's CPU is shared with everything else on
/// it, so wall time, not CPU time, is what shows how full the loop is.
///
/// A held batch starts the moment its hold ends and so seems to fill the loop however light the load: by the rule
/// above alone, one burst (two events close together) kept every later batch held, at 50 events/s too, where the
/// holds gathered little and raised the median delivery from ~6 to ~18 ms (loadtest/RESULTS.md, 2026-12-02). So a
/// hold lasts only while it pays: a held batch that wrote fewer than `framesWorthHolding` frames a `write` lets the
/// next batch run as soon as it is ready.
///
/// A batch writes in slices of at most `slice`, letting the loop serve its sockets in between: a batch to 1,000
/// subscribers takes 10 ms or more where a `write` costs 10 µs, and the next event's request, its script's reply and
/// its pub/sub message each waited behind it, one hop after another (loadtest/RESULTS.md, 2026-12-01). One batch runs
/// at a time: passes scheduled meanwhile form the next, which starts when this one ends.
///
/// The passes time the deliveries they write (`takeForWriting`) into one tally for the loop, handed to the latency
/// telemetry when the batch ends: one lock per batch for the shared histogram, not one per frame.
final class LoopFlusher: Sendable {
    typealias Pass = @Sendable () -> Void
    /// Writing took more than this share of the loop's time since the previous batch: hold the next one.
    static let busyShare = 0.75
    /// The longest a frame is held for that rule: well inside the catalog's tightest budget (100 ms), with room for
    /// the batch itself.
    static let maxHold = TimeAmount.milliseconds(20)
    /// The longest a batch writes before the loop's sockets are served; the batch goes on after them.
    static let slice = TimeAmount.milliseconds(2)
    /// A held batch that wrote fewer frames than this a `write` ends the hold: holding a batch's duration is worth
    /// it when it at least halves the system calls a delivery.
    static let framesWorthHolding = 2.0

    let loop: any EventLoop
    let delay: TimeAmount
    private struct Ready {
        var passes: [Pass] = []
        /// The last batch's end, and the hold it imposed on the next (`busyShare`).
        var lastEnd = NIODeadline.uptimeNanoseconds(0)
        var hold = TimeAmount.zero
        /// A batch is between its first and last slice: passes scheduled now wait for its end.
        var running = false
        /// When the next batch may run.
        var notBefore: NIODeadline { lastEnd + hold }
    }
    private let ready = Mutex(Ready())
    /// The deliveries written since the last commit; nil when the hub keeps no latency figures.
    private let written: NIOLoopBoundBox<DeliveryTally>?
    /// What the passes of the batch in progress wrote: how much its hold gathered.
    private struct Gathered {
        var writes = 0
        var frames = 0
    }
    private let gathered: NIOLoopBoundBox<Gathered>

    init(loop: any EventLoop, delay: TimeAmount, latency: LatencyTelemetry? = nil) {
        self.loop = loop
        self.delay = delay
        written = latency.map { NIOLoopBoundBox.makeBoxSendingValue(DeliveryTally(for: $0), eventLoop: loop) }
        gathered = NIOLoopBoundBox.makeBoxSendingValue(Gathered(), eventLoop: loop)
    }

    /// For a pass about to write what it takes: `outbox`'s frames, each event frame's delivery timed now (one clock
    /// reading for the pass), and the write counted for the hold rule. On the loop; anywhere else the frames are taken
    /// untimed and uncounted.
    func takeForWriting(_ outbox: Outbox) -> [WireFrame]? {
        guard loop.inEventLoop else { return outbox.take() }
        let frames = written.map { written in
            written.withValue { tally in
                tally.beginWrite()
                return outbox.take(forEachStamp: { tally.add($0) })
            }
        } ?? outbox.take()
        if let count = frames?.count, count > 0 {
            gathered.withValue { gathered in
                gathered.writes += 1
                gathered.frames += count
            }
        }
        return frames
    }

    /// Hands the deliveries timed since the last commit to the telemetry. A batch does it when it ends; a pass run
    /// outside a batch (a channel writable again) after itself.
    func commitWritten() {
        guard let written, loop.inEventLoop else { return }
        written.withValue { $0.commit() }
    }

    /// Runs `pass` on the loop with the next batch.
    func schedule(_ pass: @escaping Pass) {
        let (first, notBefore) = ready.withLock { ready in
            ready.passes.append(pass)
            return (ready.passes.count == 1 && !ready.running, ready.notBefore)
        }
        guard first else { return }
        let now = NIODeadline.now()
        let runAt = max(now + delay, notBefore)
        if runAt > now {
            loop.scheduleTask(deadline: runAt) { self.runBatch() }
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
        let start = NIODeadline.now()
        var batch: [Pass] = []
        // A batch woken before the last one's hold ends (a wake-up deferred by a fan-out while that batch ran and
        // set it) waits for the hold too; one woken while a batch is between slices leaves its passes to that
        // batch's end.
        let (notBefore, started) = ready.withLock { ready in
            guard !ready.running else { return (ready.notBefore, false) }
            if ready.notBefore <= start { swap(&batch, &ready.passes) }
            ready.running = !batch.isEmpty
            return (ready.notBefore, true)
        }
        // A batch in progress runs what was scheduled meanwhile when it ends.
        guard started else { return }
        guard notBefore <= start else {
            loop.scheduleTask(deadline: notBefore) { self.runBatch() }
            return
        }
        guard !batch.isEmpty else { return }
        runSlice(batch[...], busy: .zero)
    }

    /// Runs passes until `slice` has passed, then lets the loop serve its sockets and goes on with the rest;
    /// `busy` is the batch's time in its earlier slices.
    private func runSlice(_ passes: ArraySlice<Pass>, busy: TimeAmount) {
        let sliceStart = NIODeadline.now()
        var rest = passes
        while let pass = rest.popFirst() {
            pass()
            if !rest.isEmpty, NIODeadline.now() - sliceStart >= Self.slice {
                commitWritten()
                let spent = busy + (NIODeadline.now() - sliceStart)
                loop.execute { [rest] in self.runSlice(rest, busy: spent) }
                return
            }
        }
        commitWritten()
        let end = NIODeadline.now()
        let busy = busy + (end - sliceStart)
        let wrote = gathered.withValue { gathered in
            defer { gathered = Gathered() }
            return gathered
        }
        let (pending, notBefore) = ready.withLock { ready in
            // The loop's time since the last batch ended, this batch included and the hold it served not: a loop
            // that is held is not busy.
            let available = max(busy, end - ready.notBefore)
            let filled = Double(busy.nanoseconds) > Self.busyShare * Double(available.nanoseconds)
            let holdPays = ready.hold == .zero
                || (wrote.writes > 0 && Double(wrote.frames) >= Self.framesWorthHolding * Double(wrote.writes))
            ready.hold = filled && holdPays ? min(busy, Self.maxHold) : .zero
            ready.lastEnd = end
            ready.running = false
            return (!ready.passes.isEmpty, ready.notBefore)
        }
        guard pending else { return }
        if notBefore > end {
            loop.scheduleTask(deadline: notBefore) { self.runBatch() }
        } else {
            loop.execute { self.runBatch() }
        }
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
