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
/// events arrive in id order within a partition, so the first one of a partition past its `through` proves nothing
/// older of it can follow; once every partition is passed, the filter is done.
struct SeamFilter: Sendable {
    private struct Answer: Sendable {
        var patterns: [ChannelPattern]
        /// Partition → the last event the replay sent from it (a replay from an id: partition 0, up to there).
        var replayedThrough: [Int: EventID] = [:]
        /// State events up to here are reflected by a snapshot.
        var snapshotPosition: EventID?
        /// Partition → entity key → the id of its state (or kept stale notice) in the snapshot, for those newer than
        /// its position only (written while it was read): few, so a large snapshot costs no large map. Per partition, as ids order
        /// only within one and a counter's state is announced by every partition (each with its share, summed).
        var newerThanPosition: [Int: [String: EventID]] = [:]
        /// Partition → the feed events sent in answer to `recent` (`RecentFeed`): at most a hundred.
        var sentRecent: [Int: Set<EventID>] = [:]

        func holds(_ event: StoredEvent) -> Bool {
            guard event.matches(any: patterns) else { return false }
            if let replayed = replayedThrough[event.partition], event.id <= replayed { return true }
            if sentRecent[event.partition]?.contains(event.id) == true { return true }
            // A `status_stale` notice the snapshot held in its expired state's place (`server.stale_kept_seconds`),
            // claimed while the snapshot was read: this very event, not news of the entity that followed it.
            guard event.carriesState else { return newerThanPosition[event.partition]?[event.entityKey] == event.id }
            if let snapshotPosition, event.id <= snapshotPosition { return true }
            if let held = newerThanPosition[event.partition]?[event.entityKey], event.id <= held { return true }
            return false
        }
    }

    private var answers: [Answer]
    /// Partition → every event of it the client may already hold is at or before this id. Ids order only within a
    /// partition (one partition: everything is partition 0), so the live stream passes the answer partition by
    /// partition.
    private(set) var through: [Int: EventID] = [:]

    /// The answer to a subscribe of `patterns`, which replayed every matching event up to `replayedThrough` if any.
    init(patterns: [ChannelPattern], replayedThrough: EventID? = nil) {
        self.init(patterns: patterns, replayedThroughPartitions: replayedThrough.map { [0: $0] } ?? [:])
    }

    /// The answer to a subscribe of `patterns` resumed from a token on a hub with several partitions, which
    /// replayed every matching event after it, ending with these in their partitions.
    init(patterns: [ChannelPattern], replayedThroughPartitions replayed: [Int: EventID]) {
        answers = [Answer(patterns: patterns, replayedThrough: replayed)]
        through = replayed
    }

    /// An answer that holds nothing.
    init() {
        answers = []
    }

    /// Whether the client may hold some live event still to come (a filter without one has nothing to do).
    var holdsAnything: Bool { !through.isEmpty }

    /// A snapshot taken at `position` is being sent (one partition; with several, a snapshot has no position).
    mutating func snapshot(at position: EventID?) {
        answers[answers.count - 1].snapshotPosition = position
        if let position { through[0] = Self.later(through[0], position) }
    }

    /// These states of the snapshot (and kept stale notices, which stand in for expired ones) were sent.
    mutating func sent(_ events: [StoredEvent]) {
        let position = answers[answers.count - 1].snapshotPosition
        for event in events {
            if let position, event.id <= position { continue }
            answers[answers.count - 1].newerThanPosition[event.partition, default: [:]][event.entityKey] =
                Self.later(answers[answers.count - 1].newerThanPosition[event.partition]?[event.entityKey], event.id)
            through[event.partition] = Self.later(through[event.partition], event.id)
        }
    }

    /// These feed events were sent in answer to the subscribe's `recent`: a live copy of any of them still to come
    /// (it was fanned out between the subscribe's registration and the read) is old news.
    mutating func sentRecent(_ events: [StoredEvent], patterns: [ChannelPattern]) {
        guard !events.isEmpty else { return }
        if answers.isEmpty { answers = [Answer(patterns: patterns)] }
        for event in events {
            answers[answers.count - 1].sentRecent[event.partition, default: []].insert(event.id)
            through[event.partition] = Self.later(through[event.partition], event.id)
        }
    }

    /// A second subscribe answered while the first one's filter is still waiting for the live stream to pass it.
    mutating func merge(_ other: SeamFilter) {
        answers += other.answers
        through.merge(other.through) { max($0, $1) }
    }

    /// Notes that `event` arrived live: past its partition's answer, that partition is done. True once every
    /// partition is: no live event can be a copy of what the client holds any more.
    mutating func isPassed(by event: StoredEvent) -> Bool {
        if let held = through[event.partition], event.id > held { through[event.partition] = nil }
        return through.isEmpty
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
