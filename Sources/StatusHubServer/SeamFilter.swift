import StatusHubCore

/// What a client already holds once a subscribe has been answered, so that live events it already has are not
/// delivered again.
///
/// A replay sent every matching event up to `replayedThrough`. A snapshot reflects every state event up to its
/// position: the cache was read after the position was taken, so each entity's state in it is at least as new as
/// any state event of that entity up to the position (and an entity missing from it has expired or left the
/// patterns since) — so every state event up to the position is old news; beyond it, what the snapshot holds of an
/// entity that changed while it was being read. A live event can still arrive *after* the answer: on Redis,
/// pub/sub lags behind the reads that built the replay or snapshot, so an event the snapshot already reflects may
/// reach the node's subscriber only later. Delivering it would be a duplicate, or a regression. Live events arrive
/// in id order, so the first one past `through` proves nothing older can follow, and the filter is done.
struct SeamFilter: Sendable {
    private var replayedThrough: EventID?
    /// State events up to here are reflected by a snapshot.
    private var snapshotPosition: EventID?
    /// Entity key → the id of its state in a snapshot, for states newer than the snapshot's position only (those
    /// written while it was read): few, so a large snapshot costs no large map.
    private var newerThanPosition: [String: EventID] = [:]
    /// Every event the client may already hold is at or before this id.
    private(set) var through: EventID?

    init(replayedThrough: EventID? = nil) {
        self.replayedThrough = replayedThrough
        through = replayedThrough
    }

    /// A snapshot taken at `position` is being sent.
    mutating func snapshot(at position: EventID?) {
        snapshotPosition = Self.later(snapshotPosition, position)
        through = Self.later(through, position)
    }

    /// These states of the snapshot were sent.
    mutating func sent(_ events: [StoredEvent]) {
        for event in events where event.carriesState {
            if let position = snapshotPosition, event.id <= position { continue }
            newerThanPosition[event.entityKey] = Self.later(newerThanPosition[event.entityKey], event.id)
            through = Self.later(through, event.id)
        }
    }

    /// A second subscribe answered while the first one's filter is still waiting for the live stream to pass it.
    mutating func merge(_ other: SeamFilter) {
        replayedThrough = Self.later(replayedThrough, other.replayedThrough)
        snapshotPosition = Self.later(snapshotPosition, other.snapshotPosition)
        newerThanPosition.merge(other.newerThanPosition) { Self.later($0, $1)! }
        through = Self.later(through, other.through)
    }

    /// Whether no live event can be a copy of what the client holds any more once `event` has arrived.
    func isPassed(by event: StoredEvent) -> Bool {
        guard let through else { return true }
        return event.id > through
    }

    /// Whether `event` is news to the client: not in the replay, and not a state the snapshot already reflects.
    func admits(_ event: StoredEvent) -> Bool {
        if let replayedThrough, event.id <= replayedThrough { return false }
        guard event.carriesState else { return true }
        if let snapshotPosition, event.id <= snapshotPosition { return false }
        if let held = newerThanPosition[event.entityKey], event.id <= held { return false }
        return true
    }

    private static func later(_ a: EventID?, _ b: EventID?) -> EventID? {
        guard let a else { return b }
        guard let b else { return a }
        return max(a, b)
    }
}
