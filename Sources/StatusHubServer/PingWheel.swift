import NIOCore
import Synchronization

/// When one event loop's WebSocket connections are pinged (`Heartbeat`): one repeating timer for the loop, not one
/// per connection.
///
/// A timer per connection (NIO's `scheduleTask`: its task, promise, future and closures) was ~250 bytes of every idle
/// connection, for its whole life (loadtest/RESULTS.md, heaptrack). Here the loop keeps its heartbeats in `slotCount`
/// buckets covering one ping interval; the timer visits the next bucket every `interval / slotCount` and each
/// heartbeat in it beats. A heartbeat joins the bucket visited last, so it is next visited one interval later (less at
/// most one tick): the first ping comes an interval after the connection opened and the next ones an interval
/// apart, as with a timer each. NIO's timers are a priority queue (O(log n) a ping); a bucket is a walk.
///
/// Only touched on its loop (`PingWheels` hands it out loop-bound). The timer runs while the wheel holds anyone.
final class PingWheel {
    /// Buckets per interval: the first ping is at most a sixteenth of an interval early.
    static let slotCount = 16

    let interval: TimeAmount
    /// How long a connection that sent or was sent a close frame has to close (`Heartbeat`): the same for every one,
    /// so kept here rather than in each.
    let closeTimeout: TimeAmount
    private let loop: any EventLoop
    private var slots: [[Heartbeat]] = Array(repeating: [], count: PingWheel.slotCount)
    /// The bucket visited last, which newcomers join.
    private var cursor = 0
    private var members = 0
    private var ticking: RepeatedTask?

    init(loop: any EventLoop, interval: TimeAmount, closeTimeout: TimeAmount) {
        self.loop = loop
        self.interval = interval
        self.closeTimeout = closeTimeout
    }

    /// Whether its timer is scheduled (only while it holds someone).
    var isTicking: Bool { ticking != nil }

    /// Places `heartbeat` in the wheel; it beats once every interval from now until `remove`.
    func add(_ heartbeat: Heartbeat) {
        loop.preconditionInEventLoop()
        heartbeat.place = Heartbeat.Place(slot: Int32(cursor), index: Int32(slots[cursor].count))
        slots[cursor].append(heartbeat)
        members += 1
        if ticking == nil { startTicking() }
    }

    /// Takes `heartbeat` out (it is not beaten again); nothing if it is not in.
    func remove(_ heartbeat: Heartbeat) {
        loop.preconditionInEventLoop()
        guard let place = heartbeat.place else { return }
        heartbeat.place = nil
        // The last of the bucket takes the leaver's index: O(1), and the order within a bucket means nothing.
        let last = slots[Int(place.slot)].removeLast()
        if last !== heartbeat {
            slots[Int(place.slot)][Int(place.index)] = last
            last.place = place
        }
        members -= 1
        if members == 0 {
            ticking?.cancel()
            ticking = nil
        }
    }

    private func startTicking() {
        let tick = TimeAmount.nanoseconds(max(1_000_000, interval.nanoseconds / Int64(Self.slotCount)))
        let wheel = NIOLoopBound(self, eventLoop: loop)
        ticking = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in wheel.value.tick() }
    }

    private func tick() {
        cursor = (cursor + 1) % Self.slotCount
        // A beat may end its connection, which removes it (and moves another into its index): walk a copy, and let a
        // heartbeat that has left meanwhile skip its beat.
        for heartbeat in slots[cursor] where heartbeat.place != nil { heartbeat.beat() }
    }
}

/// A node's ping wheels, one per event loop, made on first use (as `LoopFlushers` are): each hub in a process has
/// its own, with its own interval.
final class PingWheels: Sendable {
    private let interval: TimeAmount
    private let closeTimeout: TimeAmount
    private let wheels = Mutex<[ObjectIdentifier: NIOLoopBound<PingWheel>]>([:])

    init(interval: TimeAmount, closeTimeout: TimeAmount) {
        self.interval = interval
        self.closeTimeout = closeTimeout
    }

    /// `loop`'s wheel; call on `loop`.
    func wheel(for loop: any EventLoop) -> PingWheel {
        wheels.withLock { known in
            if let wheel = known[ObjectIdentifier(loop)] { return wheel.value }
            let wheel = PingWheel(loop: loop, interval: interval, closeTimeout: closeTimeout)
            known[ObjectIdentifier(loop)] = NIOLoopBound(wheel, eventLoop: loop)
            return wheel
        }
    }
}
