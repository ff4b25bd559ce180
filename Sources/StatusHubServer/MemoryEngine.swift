import DequeModule
import Foundation
import StatusHubCore
import Synchronization

/// The embedded engine: one node, no Redis. Latest state with TTLs, a bounded history ring, and in-process
/// publish, all under one lock so ids, storage and delivery happen in the same order.
public final class MemoryEngine: Engine {
    private struct CachedState {
        var event: StoredEvent
        var expiresAt: ContinuousClock.Instant
    }

    private struct State {
        var latest: [String: CachedState] = [:]
        var history = Deque<StoredEvent>()
        var lastID: EventID?
        var sink: (any EventSink)?
    }

    private let ttl: HubConfig.CacheTTL
    private let historyMaxLength: Int
    private let clock = ContinuousClock()
    private let state = Mutex(State())

    public init(config: HubConfig) {
        self.ttl = config.cacheTTL
        self.historyMaxLength = max(1, config.memory.historyMaxLength)
    }

    public var isReady: Bool { state.withLock { $0.sink != nil } }

    public func append(_ events: [ValidatedEvent]) async throws -> [EventID] {
        let now = clock.now
        let wallMilliseconds = UInt64(Date().timeIntervalSince1970 * 1000)
        return try state.withLock { state in
            guard let sink = state.sink else { throw EngineUnavailable(reason: "memory engine not started") }
            return events.map { event in
                let id = EventID.next(after: state.lastID, nowMilliseconds: wallMilliseconds)
                state.lastID = id
                let stored = StoredEvent(id: id, validated: event)
                if event.carriesState {
                    state.latest[event.entityKey] = CachedState(
                        event: stored, expiresAt: now.advanced(by: .seconds(ttl.seconds(for: event.entityType))))
                }
                state.history.append(stored)
                if state.history.count > historyMaxLength { state.history.removeFirst() }
                // Delivering under the lock keeps delivery in id order across concurrent publishers;
                // the sink only enqueues, so this never waits on a client.
                sink.deliver(stored)
                return id
            }
        }
    }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        let now = clock.now
        return state.withLock { state in
            guard let cached = state.latest[entityKey], cached.expiresAt > now else { return nil }
            return cached.event
        }
    }

    public func snapshot(matching patterns: [ChannelPattern]) async throws -> [StoredEvent] {
        let now = clock.now
        return state.withLock { state in
            state.latest.values.lazy
                .filter { $0.expiresAt > now && $0.event.matches(any: patterns) }
                .map(\.event)
                .sorted { $0.id < $1.id }
        }
    }

    /// Events after `id` still in the ring, oldest first.
    public func history(after id: EventID, limit: Int) -> [StoredEvent] {
        state.withLock { state in
            Array(state.history.lazy.filter { $0.id > id }.prefix(limit))
        }
    }

    public func run(delivering sink: any EventSink) async throws {
        state.withLock { $0.sink = sink }
        defer { state.withLock { $0.sink = nil } }
        // Expired entries are dropped lazily on read; this sweep keeps memory bounded for entities that went quiet.
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = clock.now
            state.withLock { state in
                state.latest = state.latest.filter { $0.value.expiresAt > now }
            }
        }
    }
}
