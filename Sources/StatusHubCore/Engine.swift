/// Where events are stored and how they reach every hub node. Two implementations — the embedded
/// `MemoryEngine` and the Redis engine — pass one contract test suite.
///
/// The contract:
/// - `append` writes each event through (latest state for state-carrying events, the history) and publishes it,
///   atomically per event, in order; it returns only once all of that is done. It assigns each event an
///   `EventID` greater than any before it. If the engine cannot store, it throws `EngineUnavailable` and nothing
///   of that event is published — or, when the engine lost the answer of a write it sent (`Outcome.unknown`),
///   says so and names the keys that make a resend safe.
/// - Every published event reaches the `EventSink` of every node sharing the engine, once, in id order.
/// - An event whose `idempotencyKey` was already accepted within the idempotency window is not stored or
///   published again: its `Appended` carries the original id and `duplicate: true`.
/// - `snapshot` reads the latest state of every cached entity with a channel some pattern matches, in chunks, and
///   the position it reflects: every event up to it is contained (a state read may be newer still). It costs what
///   it returns: it reads the engine's indexes (`SnapshotPlan`), never the whole cache for a narrow pattern.
/// - `history(after:)` returns what followed a position, or nil when the retained history no longer reaches
///   back that far (trimmed by count or age, or lost).
/// - When an entity's cached state expires, exactly one `status_stale` event is published for it (across all
///   nodes sharing the engine). That notice takes the state's place in the cache (`latest`, snapshots, on the
///   state's channels) for `server.stale_kept_seconds`, then leaves without a notice of its own; it holds no rank
///   and no line (`writableLines`), and any state of the entity replaces it.
/// - A state event older by source time than the cached one (`SourceOrder`) is stored and published marked late,
///   and changes neither the cache nor the tallies; every other state event moves its entity's counters and active
///   sets (`Tally`) in the same atomic step, each changed counter announced by a `counter_changed` right after it.
/// - An event with `writableLines` whose entity's cached state is on a line outside them (or on none) is
///   neither stored nor published: its `Appended` names that state's id and line (`foreignLine`). The check and the
///   write are one atomic step, so no other publisher's event can land between them.
public protocol Engine: Sendable {
    func append(_ events: [ValidatedEvent]) async throws -> [Appended]

    /// The latest cached event for an entity key (`resource:machine:M-203`), or nil.
    func latest(entityKey: String) async throws -> StoredEvent?

    /// Hands the snapshot to `receive` a chunk of at most `chunkSize` events at a time, each chunk read only once the
    /// previous one was received, so a large snapshot is never held whole and the engine is never held for long.
    /// Every chunk carries the same position; the last one says so (an empty snapshot is one empty last chunk).
    func snapshot(
        matching patterns: [ChannelPattern], chunkSize: Int, receive: (SnapshotChunk) async throws -> Void
    ) async throws

    /// The members of an active set (`allocation:operator:O-156:active`, tenant-prefixed), sorted; empty when none.
    func activeSet(key: String) async throws -> [String]

    /// The lines `tenant` has an entity cached on (a state, or a kept stale notice), sorted: what a dashboard offers
    /// to pick from, read from the line indexes without reading a state. A line whose entities have all left the
    /// cache may be listed until a snapshot of it meets that (the indexes are a superset, as for snapshots).
    func lines(tenant: String) async throws -> [String]

    /// Up to `limit` events after `id`, oldest first; nil when events after `id` may be missing from the history.
    func history(after id: EventID, limit: Int) async throws -> [StoredEvent]?

    /// With several partitions: up to `limit` events after a resume token (`PartitionPositions`), oldest first
    /// within each partition, each carrying the token that resumes right after it; nil when events after it may be
    /// missing, or the token does not fit this engine (made for another number of partitions, or malformed).
    func history(afterToken token: String, limit: Int) async throws -> [StoredEvent]?

    /// The partition an entity's events are stored and delivered in (`StoredEvent.partition`); 0 with one.
    func partition(ofEntityKey key: String) -> Int

    /// Up to `limit` of the newest events of the retained history that `keep` admits, newest first within each
    /// partition (each event carrying its partition), looking back through at most `scanning` entries of each: what a
    /// node that starts with a history behind it fills its recent feed from (`RecentFeed`).
    func newestEvents(scanning: Int, limit: Int, keep: (StoredEvent) -> Bool) async throws -> [StoredEvent]

    /// A user's session (`UserSessions.key`): the JSON object stored for it, or nil when none is (never stored,
    /// deleted, or expired). Reading it moves its expiry `server.session_expiry_seconds` ahead: a screen in use keeps
    /// its session.
    func session(key: String) async throws -> [UInt8]?

    /// Stores a user's session (a JSON object's bytes), replacing any, to expire `server.session_expiry_seconds`
    /// later; nil deletes it.
    func storeSession(key: String, value: [UInt8]?) async throws

    /// Runs the engine's background work (for Redis: the node's one pub/sub subscription and reconnects) and
    /// delivers published events to `sink` until the task is cancelled.
    func run(delivering sink: any EventSink) async throws

    /// Whether the engine can accept events right now.
    var isReady: Bool { get }

    /// Why it is not ready, when it knows more than "not connected" (the server's refusal of the last attempt).
    var unreadyReason: String? { get }
}

extension Engine {
    public var unreadyReason: String? { nil }
}

/// The receiving end of an engine: the node's fan-out.
public protocol EventSink: Sendable {
    /// Called in id order, from one task at a time. Must not block: the fan-out only enqueues.
    func deliver(_ event: StoredEvent)

    /// The engine lost events it cannot replay (say, Redis came back without its data): every subscriber has to
    /// resynchronise from a snapshot.
    func deliveryGap(reason: String)
}

/// The outcome of appending one event.
public struct Appended: Sendable, Equatable {
    public var id: EventID
    /// True when the event's idempotency key was seen before: `id` is the first acceptance's, nothing was stored.
    public var duplicate: Bool
    /// True when it was stored and published but is older by source time than its entity's cached state, which it
    /// did not replace (`SourceOrder`).
    public var late: Bool
    /// True when it was stored and published as news because a hold on its entity kept its state out (`StateHold`).
    public var held: Bool
    /// Set when nothing was stored because its entity's cached state is on a line its publisher may not write
    /// (`ValidatedEvent.writableLines`): `id` is then that state's event, and this its line ("" when it has none).
    public var foreignLine: String?

    /// Whether this call stored the event (not a duplicate, not refused).
    public var stored: Bool { !duplicate && foreignLine == nil }

    public init(id: EventID, duplicate: Bool = false, late: Bool = false, held: Bool = false, foreignLine: String? = nil) {
        self.id = id
        self.duplicate = duplicate
        self.late = late
        self.held = held
        self.foreignLine = foreignLine
    }
}

/// One part of a snapshot as `Engine.snapshot(matching:chunkSize:receive:)` hands it over.
public struct SnapshotChunk: Sendable, Equatable {
    /// Oldest first within the chunk.
    public var events: [StoredEvent]
    /// Every event up to here is reflected; nil for an empty history.
    public var position: EventID?
    public var isLast: Bool
    /// With several partitions, where `position` is nil: on the last chunk, the resume token that covers the
    /// snapshot (each partition's position, read before its states).
    public var resumeToken: String?

    public init(events: [StoredEvent], position: EventID?, isLast: Bool, resumeToken: String? = nil) {
        self.events = events
        self.position = position
        self.isLast = isLast
        self.resumeToken = resumeToken
    }
}

extension Engine {
    /// An engine of one partition hands out no tokens: one it is given cannot be placed.
    public func history(afterToken token: String, limit: Int) async throws -> [StoredEvent]? { nil }

    public func partition(ofEntityKey key: String) -> Int { 0 }

    /// The whole snapshot at once, oldest first: for small reads and tests. Dashboards get it in chunks.
    public func snapshot(matching patterns: [ChannelPattern]) async throws -> Snapshot {
        var events: [StoredEvent] = []
        var position: EventID?
        try await snapshot(matching: patterns, chunkSize: 1000) { chunk in
            events += chunk.events
            position = chunk.position
        }
        return Snapshot(events: events.sorted { $0.id < $1.id }, position: position)
    }
}

/// The latest state of a set of entities, and the history position it reflects.
public struct Snapshot: Sendable, Equatable {
    public var events: [StoredEvent]
    /// Every event up to here is reflected; nil for an empty history.
    public var position: EventID?

    public init(events: [StoredEvent], position: EventID?) {
        self.events = events
        self.position = position
    }
}

/// The engine cannot accept events now (Redis down, reconnecting). Ingest answers 503 with `Retry-After`.
public struct EngineUnavailable: Error, Sendable, CustomStringConvertible {
    /// What became of the events of the failed `append`.
    public enum Outcome: Sendable, Equatable {
        /// None of them was stored (the engine refused, or they were never sent): resending them is safe.
        case notStored
        /// They were sent and the answer was lost: each may or may not be stored. `resendKeys[i]` is the
        /// idempotency key to resend event `i` with so that it is stored at most once; nil for an event that
        /// carries its own key (resend it with that) or when idempotency is off (no resend is safe then).
        case unknown(resendKeys: [String?])
    }

    public var reason: String
    public var retryAfterSeconds: Int
    public var outcome: Outcome
    /// Per event of the failed `append`, its outcome where it is known to be stored (an engine with partitions stores
    /// the events of the partitions that answered); nil for the others. Empty: none is known stored.
    public var stored: [Appended?]

    public init(reason: String, retryAfterSeconds: Int = 1, outcome: Outcome = .notStored, stored: [Appended?] = []) {
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
        self.outcome = outcome
        self.stored = stored
    }

    public var description: String { "engine unavailable: \(reason)" }
}
