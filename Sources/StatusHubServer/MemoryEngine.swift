import DequeModule
import Foundation
import StatusHubCore
import Synchronization

/// The embedded engine: one node, no Redis. Latest state with TTLs, a bounded history ring, idempotency keys and
/// in-process publish, all under one lock so ids, storage and delivery happen in the same order.
public final class MemoryEngine: Engine {
    private struct CachedState {
        var event: StoredEvent
        var expiresAt: ContinuousClock.Instant
    }

    private struct Remembered {
        var id: EventID
        var expiresAt: ContinuousClock.Instant
    }

    private struct State {
        var latest: [String: CachedState] = [:]
        var history = Deque<StoredEvent>()
        /// The newest id that left the ring: a resume from before it has a gap.
        var evictedThrough: EventID?
        var idempotency: [String: Remembered] = [:]
        var lastID: EventID?
        var sink: (any EventSink)?
    }

    private let config: HubConfig
    private let clock = ContinuousClock()
    private let state = Mutex(State())

    public init(config: HubConfig) {
        self.config = config
    }

    public var isReady: Bool { state.withLock { $0.sink != nil } }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        let now = clock.now
        return try state.withLock { state in
            guard state.sink != nil else { throw EngineUnavailable(reason: "memory engine not started") }
            return events.map { event in
                if let key = event.idempotencyKey, let seen = state.idempotency[key], seen.expiresAt > now {
                    return Appended(id: seen.id, duplicate: true)
                }
                let id = store(event, now: now, in: &state)
                if let key = event.idempotencyKey {
                    state.idempotency[key] = Remembered(
                        id: id, expiresAt: now.advanced(by: .seconds(config.server.idempotencyWindowSeconds)))
                }
                return Appended(id: id)
            }
        }
    }

    /// Assigns the id, writes through, appends to history and delivers — the one path every event takes.
    private func store(_ event: ValidatedEvent, now: ContinuousClock.Instant, in state: inout State) -> EventID {
        let id = EventID.next(after: state.lastID, nowMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000))
        state.lastID = id
        let stored = StoredEvent(id: id, validated: event)
        if event.carriesState {
            let ttl = config.cacheTTL.seconds(for: event.entityType)
            // A TTL of 0 or less keeps the state until it is replaced.
            let expiresAt = ttl > 0 ? now.advanced(by: .seconds(ttl)) : now.advanced(by: .seconds(Int64.max / 4))
            state.latest[event.entityKey] = CachedState(event: stored, expiresAt: expiresAt)
        }
        state.history.append(stored)
        if state.history.count > max(1, config.memory.historyMaxLength) {
            state.evictedThrough = state.history.removeFirst().id
        }
        // Delivering under the lock keeps delivery in id order across concurrent publishers;
        // the sink only enqueues, so this never waits on a client.
        state.sink?.deliver(stored)
        return id
    }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        let now = clock.now
        return state.withLock { state in
            guard let cached = state.latest[entityKey], cached.expiresAt > now else { return nil }
            return cached.event
        }
    }

    public func snapshot(matching patterns: [ChannelPattern]) async throws -> Snapshot {
        let now = clock.now
        return state.withLock { state in
            let events = state.latest.values.lazy
                .filter { $0.expiresAt > now && $0.event.matches(any: patterns) }
                .map(\.event)
                .sorted { $0.id < $1.id }
            return Snapshot(events: events, position: state.lastID)
        }
    }

    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? {
        state.withLock { state in
            if let evicted = state.evictedThrough, evicted > id { return nil }
            // The ring is in id order: binary-search the first entry after `id`.
            var low = 0
            var high = state.history.count
            while low < high {
                let middle = (low + high) / 2
                if state.history[middle].id <= id { low = middle + 1 } else { high = middle }
            }
            return Array(state.history[low..<min(state.history.count, low + limit)])
        }
    }

    public func run(delivering sink: any EventSink) async throws {
        state.withLock { $0.sink = sink }
        defer { state.withLock { $0.sink = nil } }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            expire(now: clock.now)
        }
    }

    /// Publishes one `status_stale` per expired entity, drops it from the cache, and trims history by age and
    /// idempotency keys by window.
    func expire(now: ContinuousClock.Instant) {
        let wallNow = Date()
        state.withLock { state in
            let expired = state.latest.filter { $0.value.expiresAt <= now }
            for (key, cached) in expired.sorted(by: { $0.value.event.id < $1.value.event.id }) {
                state.latest[key] = nil
                if let stale = StaleEvent.make(for: cached.event, at: wallNow) {
                    _ = store(stale, now: now, in: &state)
                }
            }
            let maxAge = config.memory.historyMaxAgeSeconds
            if maxAge > 0 {
                let oldest = UInt64(max(0, (wallNow.timeIntervalSince1970 - Double(maxAge)) * 1000))
                while let first = state.history.first, first.id.milliseconds < oldest {
                    state.evictedThrough = state.history.removeFirst().id
                }
            }
            state.idempotency = state.idempotency.filter { $0.value.expiresAt > now }
        }
    }
}
