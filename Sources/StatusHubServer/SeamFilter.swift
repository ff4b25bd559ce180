import StatusHubCore

/// What a client already holds once a subscribe has been answered, so that live events it already has are not
/// delivered again.
///
/// A replay sent every event of the subscribe's patterns up to `replayedThrough`. A snapshot reflects every state
/// event of its patterns up to its position: the cache was read after the position was taken, so each entity's
/// state in it is at least as new as any state event of that entity up to the position (and an entity missing from
/// it has expired or left the patterns since) — every such state event is old news; beyond the position, so is
/// what the snapshot holds of an entity that changed while it was being read. A live event can still arrive
/// *after* the answer: on Redis, pub/sub lags behind the reads that built the replay or snapshot, so an event the
/// answer already reflects may reach the node's subscriber only later. Delivering it would be a duplicate, or a
/// regression. Events of the connection's other patterns are not covered by the answer and always pass. Live
/// events arrive in id order, so the first one past `through` proves nothing older can follow, and the filter is
/// done.
struct SeamFilter: Sendable {
    private struct Answer: Sendable {
        var patterns: [ChannelPattern]
        var replayedThrough: EventID?
        /// State events up to here are reflected by a snapshot.
        var snapshotPosition: EventID?
        /// Entity key → the id of its state in the snapshot, for states newer than its position only (those written
        /// while it was read): few, so a large snapshot costs no large map.
        var newerThanPosition: [String: EventID] = [:]

        func holds(_ event: StoredEvent) -> Bool {
            guard event.matches(any: patterns) else { return false }
            if let replayedThrough, event.id <= replayedThrough { return true }
            guard event.carriesState else { return false }
            if let snapshotPosition, event.id <= snapshotPosition { return true }
            if let held = newerThanPosition[event.entityKey], event.id <= held { return true }
            return false
        }
    }

    private var answers: [Answer]
    /// Every event the client may already hold is at or before this id.
    private(set) var through: EventID?

    /// The answer to a subscribe of `patterns`, which replayed every matching event up to `replayedThrough` if any.
    init(patterns: [ChannelPattern], replayedThrough: EventID? = nil) {
        answers = [Answer(patterns: patterns, replayedThrough: replayedThrough)]
        through = replayedThrough
    }

    /// An answer that holds nothing.
    init() {
        answers = []
    }

    /// A snapshot taken at `position` is being sent.
    mutating func snapshot(at position: EventID?) {
        answers[answers.count - 1].snapshotPosition = position
        through = Self.later(through, position)
    }

    /// These states of the snapshot were sent.
    mutating func sent(_ events: [StoredEvent]) {
        let position = answers[answers.count - 1].snapshotPosition
        for event in events where event.carriesState {
            if let position, event.id <= position { continue }
            answers[answers.count - 1].newerThanPosition[event.entityKey] =
                Self.later(answers[answers.count - 1].newerThanPosition[event.entityKey], event.id)
            through = Self.later(through, event.id)
        }
    }

    /// A second subscribe answered while the first one's filter is still waiting for the live stream to pass it.
    mutating func merge(_ other: SeamFilter) {
        answers += other.answers
        through = Self.later(through, other.through)
    }

    /// Whether no live event can be a copy of what the client holds any more once `event` has arrived.
    func isPassed(by event: StoredEvent) -> Bool {
        guard let through else { return true }
        return event.id > through
    }

    /// Whether `event` is news to the client: no answer already held it.
    func admits(_ event: StoredEvent) -> Bool {
        !answers.contains { $0.holds(event) }
    }

    private static func later(_ a: EventID?, _ b: EventID?) -> EventID? {
        guard let a else { return b }
        guard let b else { return a }
        return max(a, b)
    }
}
