import StatusHubCore

/// What a client already holds once a subscribe has been answered, so that live events it already has are not
/// delivered again.
///
/// A replay sent every matching event up to `replayedThrough`; a snapshot holds, per entity, its state as of the
/// id it contains. A live event can still arrive *after* the answer: on Redis, pub/sub lags behind the reads that
/// built the replay or snapshot, so an event the snapshot already reflects may reach the node's subscriber only
/// later. Delivering it would be a duplicate, or — when the snapshot holds a newer state of the entity — a
/// regression. Live events arrive in id order, so the first one past `through` proves nothing older can follow,
/// and the filter is done.
struct SeamFilter: Sendable {
    private var replayedThrough: EventID?
    /// Entity key → the newest id of that entity the client holds from a snapshot.
    private var contained: [String: EventID]
    /// Every event the client may already hold is at or before this id.
    private(set) var through: EventID?

    init(replayedThrough: EventID?, snapshot: [StoredEvent], position: EventID?) {
        self.replayedThrough = replayedThrough
        var contained: [String: EventID] = [:]
        var through = Self.later(replayedThrough, position)
        for event in snapshot where event.carriesState {
            contained[event.entityKey] = Self.later(contained[event.entityKey], event.id)
            through = Self.later(through, event.id)
        }
        self.contained = contained
        self.through = through
    }

    /// A second subscribe answered while the first one's filter is still waiting for the live stream to pass it.
    mutating func merge(_ other: SeamFilter) {
        replayedThrough = Self.later(replayedThrough, other.replayedThrough)
        contained.merge(other.contained) { Self.later($0, $1)! }
        through = Self.later(through, other.through)
    }

    /// Whether no live event can be a copy of what the client holds any more once `event` has arrived.
    func isPassed(by event: StoredEvent) -> Bool {
        guard let through else { return true }
        return event.id > through
    }

    /// Whether `event` is news to the client: not in the replay, and not older than (or equal to) the state of its
    /// entity in the snapshot.
    func admits(_ event: StoredEvent) -> Bool {
        if let replayedThrough, event.id <= replayedThrough { return false }
        if event.carriesState, let held = contained[event.entityKey], event.id <= held { return false }
        return true
    }

    private static func later(_ a: EventID?, _ b: EventID?) -> EventID? {
        guard let a else { return b }
        guard let b else { return a }
        return max(a, b)
    }
}
