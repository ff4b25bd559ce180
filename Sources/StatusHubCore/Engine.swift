/// Where events are stored and how they reach every hub node. Two implementations — the embedded
/// `MemoryEngine` and the Redis engine — pass one contract test suite.
///
/// The contract:
/// - `append` writes each event through (latest state for state-carrying events, the history) and publishes it,
///   atomically per event, in order; it returns only once all of that is done. It assigns each event an
///   `EventID` greater than any before it. If the engine cannot store, it throws `EngineUnavailable` and nothing
///   of that event is published.
/// - Every published event reaches the `EventSink` of every node sharing the engine, once, in id order.
/// - `snapshot` returns the latest state of every cached entity with a channel some pattern matches.
public protocol Engine: Sendable {
    func append(_ events: [ValidatedEvent]) async throws -> [EventID]

    /// The latest cached event for an entity key (`resource:machine:M-203`), or nil.
    func latest(entityKey: String) async throws -> StoredEvent?

    func snapshot(matching patterns: [ChannelPattern]) async throws -> [StoredEvent]

    /// Runs the engine's background work (for Redis: the node's one pub/sub subscription and reconnects) and
    /// delivers published events to `sink` until the task is cancelled.
    func run(delivering sink: any EventSink) async throws

    /// Whether the engine can accept events right now.
    var isReady: Bool { get }
}

/// The receiving end of an engine: the node's fan-out.
public protocol EventSink: Sendable {
    /// Called in id order, from one task at a time. Must not block: the fan-out only enqueues.
    func deliver(_ event: StoredEvent)
}

/// The engine cannot accept events now (Redis down, reconnecting). Ingest answers 503 with `Retry-After`.
public struct EngineUnavailable: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var retryAfterSeconds: Int

    public init(reason: String, retryAfterSeconds: Int = 1) {
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "engine unavailable: \(reason)" }
}
