import NIOCore
import StatusHubCore
import Synchronization

/// One WebSocket subscriber as fan-out sees it: its patterns, its outbox, and the seam: the buffer that holds live
/// events back while a subscribe is being answered (so `subscribed`, a replay or a snapshot come before them), then
/// the `SeamFilter` that drops live events the answer already contained until the live stream has passed it.
final class Connection: Hashable, Sendable {
    struct Held: Sendable {
        var event: StoredEvent
        var frame: WireFrame
        var conflationKey: String?
        /// Its ingest instant and category, for the writer to time the delivery; nil when the hub keeps no
        /// latency figures.
        var stamp: DeliveryStamp? = nil
    }

    private struct State {
        var patterns: Set<ChannelPattern> = []
        /// Non-nil while a subscribe is in flight: live events wait here instead of the outbox.
        var seam: [Held]?
        /// Non-nil after a subscribe was answered, until a live event newer than everything the answer held arrives.
        var filter: SeamFilter?
    }

    let id: UInt64
    let outbox: Outbox
    /// The `filter`s its patterns were subscribed with; fan-out asks them before `offer`.
    let filters = SubscriptionFilters()
    private let state = Mutex(State())
    /// Whether `state.seam` or `state.filter` is set, readable without the lock.
    private let seamOpen = Atomic<Bool>(false)
    /// Run once, by whoever pushed, if the outbox overflows (see `whenOverflowing`).
    private let overflowAction: OverflowAction
    /// The restriction claims of its token (`Restriction`); nil: every claim (no token on a hub without auth).
    private let readerClaims: Mutex<Set<String>?>

    private final class OverflowAction: Sendable {
        let action = Mutex<(@Sendable () -> Void)?>(nil)
        func run() { action.withLock { $0.take() }?() }
    }

    init(id: UInt64, outboxCapacity: Int, conflateAbove: Int, claims: Set<String>?) {
        self.id = id
        self.readerClaims = Mutex(claims)
        let overflowAction = OverflowAction()
        self.overflowAction = overflowAction
        self.outbox = Outbox(capacity: outboxCapacity, conflateAbove: conflateAbove) { overflowAction.run() }
    }

    /// `action` runs once if the outbox overflows, on the thread that pushed the frame that did not fit: the
    /// writer may be stuck on a socket that is not draining, so it cannot be the one to notice. Set it before the
    /// connection is open to fan-out.
    func whenOverflowing(_ action: @escaping @Sendable () -> Void) {
        overflowAction.action.withLock { $0 = action }
    }

    static func == (lhs: Connection, rhs: Connection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    var patterns: Set<ChannelPattern> { state.withLock { $0.patterns } }

    /// Read only for events something restricts (`Redaction`), so not once per delivery.
    var claims: Set<String>? { readerClaims.withLock { $0 } }

    /// A renewed token's claims (`auth`).
    func see(_ claims: Set<String>?) { readerClaims.withLock { $0 = claims } }

    func record(added: [ChannelPattern]) { state.withLock { $0.patterns.formUnion(added) } }
    func record(removed: [ChannelPattern]) { state.withLock { $0.patterns.subtract(removed) } }

    /// Fan-out's entry point. Never waits.
    @discardableResult
    func offer(_ held: Held) -> Outbox.PushResult {
        // Without a subscribe in flight or a filter left, straight into the outbox: no second lock per delivery. An
        // offer that races `beginSeam` is one that came just before it.
        guard seamOpen.load(ordering: .acquiring) else { return outbox.push(held.frame, conflationKey: held.conflationKey, stamp: held.stamp) }
        return state.withLock { state in
            if state.seam != nil {
                guard state.seam!.count < outbox.capacity else {
                    state.seam = nil
                    state.filter = nil
                    seamOpen.store(false, ordering: .releasing)
                    outbox.overflow()
                    return .overflowed
                }
                state.seam!.append(held)
                return .queued
            }
            guard Self.admits(held.event, through: &state.filter) else { return .queued }
            if state.filter == nil { seamOpen.store(false, ordering: .releasing) }
            return outbox.push(held.frame, conflationKey: held.conflationKey, stamp: held.stamp)
        }
    }

    /// Holds live events back until `endSeam`.
    func beginSeam() {
        state.withLock { state in
            state.seam = state.seam ?? []
            seamOpen.store(true, ordering: .releasing)
        }
    }

    /// Releases held-back events into the outbox, minus those the client already has from the answer (`answered`:
    /// a replay, a snapshot). Live events that are still to come and the client already has are dropped the same
    /// way, until the live stream has passed the answer. So there is no gap and no duplicate at the seam.
    /// - Returns: how many held events the outbox conflated (a reader already behind), for the metric.
    @discardableResult
    func endSeam(_ answered: SeamFilter = SeamFilter()) -> Int64 {
        state.withLock { state in
            guard let held = state.seam else { return 0 }
            state.seam = nil
            if answered.holdsAnything {
                if state.filter == nil { state.filter = answered } else { state.filter!.merge(answered) }
            }
            // Only once the held events are in the outbox may offers skip the lock, or one could overtake them.
            defer { if state.filter == nil { seamOpen.store(false, ordering: .releasing) } }
            var conflated: Int64 = 0
            for item in held where Self.admits(item.event, through: &state.filter) {
                switch outbox.push(item.frame, conflationKey: item.conflationKey, stamp: item.stamp) {
                case .overflowed, .ended:
                    state.filter = nil
                    return conflated
                case .conflated: conflated += 1
                case .queued: continue
                }
            }
            return conflated
        }
    }

    /// Whether `event` goes to the client past the seam's filter; the first event past the answer ends the filter.
    private static func admits(_ event: StoredEvent, through filter: inout SeamFilter?) -> Bool {
        guard filter != nil else { return true }
        if filter!.isPassed(by: event) {
            filter = nil
            return true
        }
        return filter!.admits(event)
    }

    /// The node is going away: send what is queued, then close with 1001.
    func goAway() { outbox.close(.goingAway) }

    func finish() {
        outbox.close()
    }
}
