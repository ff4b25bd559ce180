import DequeModule
import Foundation
import HeapModule
import StatusHubCore
import Synchronization

/// The embedded engine: one node, no Redis. Latest state with TTLs, a bounded history ring, idempotency keys and
/// in-process publish, all under one lock so ids, storage and delivery happen in the same order.
///
/// Everything done under the lock costs what it touches, never the size of what is stored: expiry takes due
/// states from a heap of deadlines and idempotency keys from a queue in window order (the window is the same for
/// every key), snapshots read the indexes of `SnapshotPlan` a chunk at a time.
public final class MemoryEngine: Engine {
    private struct CachedState {
        var event: StoredEvent
        var expiresAt: ContinuousClock.Instant
        /// The `SnapshotIndex` names the entity key is filed under.
        var indexes: [String]
        /// Its `SourceOrder` rank: a later event of lower rank is late and does not replace it.
        var rank: String?
        /// Its status value and since when the entity is known to hold it (`StatusSince`), when its type dates it.
        var status: (value: String, since: String?)?
        /// Its event's line, for publishers scoped to lines (`ValidatedEvent.writableLines`).
        var line: String?
        /// When it was stored, for telling a publisher's restarted `sequence` (`SourceOrder.isOlder`).
        var storedAt: ContinuousClock.Instant
        /// A `status_stale` notice kept in its expired state's place (`server.stale_kept_seconds`): it holds no rank,
        /// status or line, and leaves without a notice of its own.
        var isStaleNotice = false
        /// The hold its state puts on the entity (`StateHold.sets`): another type's state is news until one lifts it.
        var hold: String?
    }

    /// When a cached state expires. Superseded entries stay in the heap and are skipped when they come due (the
    /// state under that key is by then another event).
    private struct Deadline: Comparable {
        var expiresAt: ContinuousClock.Instant
        var entityKey: String
        var eventID: EventID

        static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.expiresAt < rhs.expiresAt }
    }

    private struct Remembered {
        var id: EventID
        var expiresAt: ContinuousClock.Instant
    }

    private struct State {
        var latest: [String: CachedState] = [:]
        var deadlines = Heap<Deadline>()
        /// `SnapshotIndex` name → the entity keys filed under it; exact, kept with `latest`.
        var indexes: [String: Set<String>] = [:]
        var history = Deque<StoredEvent>()
        var historyBytes = 0
        /// The newest id that left the ring: a resume from before it has a gap.
        var evictedThrough: EventID?
        var idempotency: [String: Remembered] = [:]
        /// Keys in the order they expire.
        var idempotencyOrder = Deque<(key: String, expiresAt: ContinuousClock.Instant)>()
        var lastID: EventID?
        var sink: (any EventSink)?
        var tallies = MemoryTallies()
    }

    /// Stale events published per expiry pass (four passes a second): a mass expiry (20,000 machines whose MES
    /// went quiet together) reaches dashboards as a steady stream they can read, not a burst that overflows them.
    static let staleEventsPerPass = 500
    static let expiryPassInterval = Duration.milliseconds(250)

    private let config: HubConfig
    private let clock = ContinuousClock()
    private let counterDescriptors = CounterDescriptorCache()
    /// Parsed once: it is asked for every state event that moves a counter, under the lock.
    private let shifts: ShiftSchedule
    private let state = Mutex(State())
    private let sessions: MemorySessions

    public init(config: HubConfig) {
        self.config = config
        self.shifts = config.shiftSchedule
        self.sessions = MemorySessions(lifetimeSeconds: config.server.sessionExpirySeconds)
    }

    public func session(key: String) async throws -> [UInt8]? { sessions.read(key) }

    public func storeSession(key: String, value: [UInt8]?) async throws { sessions.store(key, value) }

    public var isReady: Bool { state.withLock { $0.sink != nil } }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        let now = clock.now
        let window = config.server.idempotencyWindowSeconds
        return try state.withLock { state in
            guard state.sink != nil else { throw EngineUnavailable(reason: "memory engine not started") }
            return events.map { event in
                if let key = event.idempotencyKey, let seen = state.idempotency[key], seen.expiresAt > now {
                    return Appended(id: seen.id, duplicate: true)
                }
                // A state past its deadline still holds its entity until the sweep turns it stale, as for its rank.
                if let held = state.latest[event.entityKey], !held.isStaleNotice, !event.mayReplace(stateOnLine: held.line) {
                    return Appended(id: held.event.id, foreignLine: held.line ?? "")
                }
                let (stored, kept) = store(event, now: now, in: &state)
                let id = stored.id
                if let key = event.idempotencyKey, window > 0 {
                    let expiresAt = now.advanced(by: .seconds(window))
                    state.idempotency[key] = Remembered(id: id, expiresAt: expiresAt)
                    state.idempotencyOrder.append((key, expiresAt))
                }
                return Appended(id: id, late: kept == .late, held: kept == .held)
            }
        }
    }

    /// Assigns the id, writes through, appends to history and delivers — the one path every event takes. A state
    /// older by source time than the cached one (`SourceOrder`, compared with the cached state even past its
    /// deadline until the sweep turns it stale, as Redis keeps its rank until the stale claim) is stored and
    /// delivered marked late, as news, and leaves the cache as it was; so is one whose entity a hold keeps
    /// (`StateHold`), marked held.
    @discardableResult
    private func store(_ event: ValidatedEvent, now: ContinuousClock.Instant, in state: inout State) -> (StoredEvent, kept: KeptOut?) {
        let id = EventID.next(after: state.lastID, nowMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000))
        state.lastID = id
        let late = event.carriesState && event.sourceRank.map { rank in
            state.latest[event.entityKey].flatMap { held in
                held.rank.map {
                    SourceOrder.isOlder(
                        rank, than: $0, heldSeconds: (now - held.storedAt).seconds, resetSeconds: config.server.sequenceResetSeconds)
                }
            } ?? false
        } ?? false
        let heldBack = !late && event.hold.map { !$0.mayReplace(heldBy: state.latest[event.entityKey]?.hold) } ?? false
        let kept: KeptOut? = late ? .late : heldBack ? .held : nil
        let heldStatus = kept != nil ? nil : state.latest[event.entityKey]?.status
        let status = event.statusSince.map { stamp in (value: stamp.value, since: stamp.start(held: heldStatus)) } ?? heldStatus
        let stored = switch kept {
        case .late?: StoredEvent(id: id, lateEvent: event)
        case .held?: StoredEvent(id: id, heldEvent: event)
        case nil: StoredEvent(id: id, validated: event, statusSince: status?.since)
        }
        if event.carriesState && kept == nil {
            let ttl = config.cacheTTL.seconds(for: event)
            // A TTL of 0 or less keeps the state until it is replaced.
            let expiresAt = ttl > 0 ? now.advanced(by: .seconds(ttl)) : now.advanced(by: .seconds(Int64.max / 4))
            let indexes = event.snapshotIndexes
            let previous = state.latest.updateValue(
                CachedState(
                    event: stored, expiresAt: expiresAt, indexes: indexes, rank: event.sourceRank, status: status, line: event.line,
                    storedAt: now, hold: event.hold?.sets),
                forKey: event.entityKey)
            if previous?.indexes != indexes {
                for name in previous?.indexes ?? [] where !indexes.contains(name) {
                    state.indexes[name]?.remove(event.entityKey)
                }
                for name in indexes { state.indexes[name, default: []].insert(event.entityKey) }
            }
            if ttl > 0 { state.deadlines.insert(Deadline(expiresAt: expiresAt, entityKey: event.entityKey, eventID: id)) }
        }
        state.history.append(stored)
        state.historyBytes += stored.json.count
        let maxLength = max(1, config.memory.historyMaxLength)
        while state.history.count > 1, state.history.count > maxLength || state.historyBytes > config.memory.historyMaxBytes {
            evictOldest(&state)
        }
        // Delivering under the lock keeps delivery in id order across concurrent publishers;
        // the sink only enqueues, so this never waits on a client.
        state.sink?.deliver(stored)
        if event.tallies != nil, kept == nil {
            retally(entityKey: event.entityKey, update: event.tallies, cause: id, in: &state)
        }
        return (stored, kept)
    }

    /// Takes an entity that left the cache out of the snapshot indexes its state was filed under.
    private func unfile(_ cached: CachedState, entityKey: String, in state: inout State) {
        for name in cached.indexes { state.indexes[name]?.remove(entityKey) }
    }

    /// Why a state event was stored as news and left the cache alone.
    private enum KeptOut { case late, held }

    /// Moves the entity's tallies to its new state (or off its counters when `update` is nil: it went stale) and
    /// stores each changed counter's `counter_changed` right after the event that caused it.
    private func retally(entityKey: String, update: TallyUpdate?, cause: EventID, in state: inout State) {
        let now = Date()
        let shift = shifts.current(at: now).id
        let changes = state.tallies.retally(
            entityKey: entityKey, update: update, catalog: config.catalog, cache: counterDescriptors, shift: shift)
        let stamp = Timestamps.format(now)
        for change in changes {
            guard let event = change.descriptor.event(
                value: change.value, cause: change.cause ?? cause.description, now: stamp, shift: shift, catalog: config.catalog)
            else { continue }
            store(event, now: clock.now, in: &state)
        }
    }

    public func lines(tenant: String) async throws -> [String] {
        state.withLock { state in
            state.indexes.compactMap { name, keys in keys.isEmpty ? nil : SnapshotIndex.line(ofName: name, tenant: tenant) }.sorted()
        }
    }

    /// The active set under `key` (`allocation:operator:O-156:active`).
    public func activeSet(key: String) async throws -> [String] {
        state.withLock { $0.tallies.sets[key].map { $0.sorted() } ?? [] }
    }

    private func evictOldest(_ state: inout State) {
        let evicted = state.history.removeFirst()
        state.historyBytes -= evicted.json.count
        state.evictedThrough = evicted.id
    }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        let now = clock.now
        return state.withLock { state in
            guard let cached = state.latest[entityKey], cached.expiresAt > now else { return nil }
            return cached.event
        }
    }

    public func snapshot(
        matching patterns: [ChannelPattern], chunkSize: Int, receive: (SnapshotChunk) async throws -> Void
    ) async throws {
        let plan = SnapshotPlan(patterns: patterns, catalog: config.catalog)
        // The keys are gathered once (cheap: references to strings the cache holds); their states are read a chunk
        // at a time, so a large snapshot holds the lock only briefly and ingest goes on between chunks.
        let (position, keys) = state.withLock { state -> (EventID?, [String]) in
            var keys = plan.directKeys
            for name in plan.indexes { keys += state.indexes[name] ?? [] }
            return (state.lastID, keys)
        }
        var seen = Set<String>()
        let size = max(1, chunkSize)
        var start = 0
        repeat {
            let slice = keys[start..<min(keys.count, start + size)]
            start += slice.count
            let now = clock.now
            let events = state.withLock { state in
                slice.compactMap { key -> StoredEvent? in
                    guard seen.insert(key).inserted, let cached = state.latest[key], cached.expiresAt > now,
                        cached.event.matches(any: patterns)
                    else { return nil }
                    return cached.event
                }
            }
            let isLast = start >= keys.count
            if !events.isEmpty || isLast {
                try await receive(SnapshotChunk(events: events.sorted { $0.id < $1.id }, position: position, isLast: isLast))
            }
        } while start < keys.count
    }

    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? {
        state.withLock { state in
            guard Self.holdsEverything(after: id, state) else { return nil }
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

    public func newestEvents(scanning: Int, limit: Int, keep: (StoredEvent) -> Bool) async throws -> [StoredEvent] {
        state.withLock { state in
            var found: [StoredEvent] = []
            for event in state.history.reversed().prefix(scanning) where keep(event) {
                found.append(event)
                if found.count >= limit { break }
            }
            return found
        }
    }

    /// Whether every event after `id` is still in the ring — the same rule as the Redis engine's
    /// `StreamBounds.holdsEverything`. An id this engine cannot place is a gap: one from before this process (the
    /// memory engine's history starts with it), one newer than anything it assigned, one older than the ring.
    /// `0-0` asks for the whole history: complete while nothing has been evicted.
    private static func holdsEverything(after id: EventID, _ state: State) -> Bool {
        if id == .zero { return state.evictedThrough == nil }
        guard let last = state.lastID, id <= last else { return false }
        if id == last || id == state.evictedThrough { return true }
        guard let first = state.history.first else { return false }
        return id >= first.id
    }

    public func run(delivering sink: any EventSink) async throws {
        state.withLock { $0.sink = sink }
        defer { state.withLock { $0.sink = nil } }
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.expiryPassInterval)
            expire(now: clock.now)
        }
    }

    /// Publishes one `status_stale` per expired entity (at most `staleEventsPerPass`; the rest on later passes),
    /// which takes the state's place in the cache for `server.stale_kept_seconds` (then leaves quietly) — or, for a
    /// final state (`FinalState`), lets the entity leave quietly at once —, trims history by age and forgets
    /// idempotency keys past their window.
    func expire(now: ContinuousClock.Instant) {
        let wallNow = Date()
        state.withLock { state in
            var budget = Self.staleEventsPerPass
            while budget > 0, let due = state.deadlines.min, due.expiresAt <= now {
                state.deadlines.removeMin()
                guard let cached = state.latest[due.entityKey], cached.event.id == due.eventID else { continue }
                state.latest[due.entityKey] = nil
                guard !cached.isStaleNotice, let stale = StaleEvent.make(for: cached.event, at: wallNow, catalog: config.catalog) else {
                    unfile(cached, entityKey: due.entityKey, in: &state)
                    continue
                }
                if stale.isFinal {
                    unfile(cached, entityKey: due.entityKey, in: &state)
                    retally(entityKey: due.entityKey, update: nil, cause: cached.event.id, in: &state)
                    budget -= 1
                    continue
                }
                let (notice, _) = store(stale, now: now, in: &state)
                let kept = config.server.staleKeptSeconds
                if kept > 0 {
                    let expiresAt = now.advanced(by: .seconds(kept))
                    state.latest[due.entityKey] = CachedState(
                        event: notice, expiresAt: expiresAt, indexes: cached.indexes, rank: nil, status: nil, line: nil, storedAt: now,
                        isStaleNotice: true)
                    state.deadlines.insert(Deadline(expiresAt: expiresAt, entityKey: due.entityKey, eventID: notice.id))
                } else {
                    unfile(cached, entityKey: due.entityKey, in: &state)
                }
                retally(entityKey: due.entityKey, update: nil, cause: notice.id, in: &state)
                budget -= 1
            }
            let maxAge = config.memory.historyMaxAgeSeconds
            if maxAge > 0 {
                let oldest = UInt64(max(0, (wallNow.timeIntervalSince1970 - Double(maxAge)) * 1000))
                while let first = state.history.first, first.id.milliseconds < oldest { evictOldest(&state) }
            }
            while let first = state.idempotencyOrder.first, first.expiresAt <= now {
                state.idempotencyOrder.removeFirst()
                if let remembered = state.idempotency[first.key], remembered.expiresAt <= now {
                    state.idempotency[first.key] = nil
                }
            }
        }
    }
}
