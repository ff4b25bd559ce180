import StatusHubCore
import Synchronization

/// Each partition's share of every counter (`Tally`), as this node last heard it, so that what it delivers, replays
/// and reads carries the whole count.
///
/// With several partitions a line's machines are spread over them, and each partition's append script counts only
/// its own entities (its share, under its own keys) and announces that share in its `counter_changed`. A node keeps
/// the latest share of each partition — learned from the partition's counter states when it starts, and after its
/// Redis came back without them, and from each of its `counter_changed` events, newer ids only (they order within a
/// partition) — and hands every `counter_changed` on with the sum in place of the share. Every node sees each
/// partition's events in the same order, so once they have all arrived every node announces and reads the same sum;
/// in between, two nodes may announce different intermediate sums (partitions are not ordered against each other).
final class CounterShares: Sendable {
    private struct Share {
        var id: EventID
        var value: Int
    }

    /// Counter entity key → partition → its latest share.
    private let shares = Mutex<[String: [Int: Share]]>([:])
    /// Partitions whose shares were read since the node started or last lost them.
    private let learned: Mutex<Set<Int>> = Mutex([])
    /// Partitions whose shares are to be read (again): each one when the node starts, and after a delivery gap.
    let toRead: AsyncStream<Int>
    private let readAgain: AsyncStream<Int>.Continuation
    /// `counter:`: the cache key prefix of the counters' states.
    private let counterPrefix: String?

    init(catalog: Catalog, partitions: Int) {
        counterPrefix = CounterDescriptor.cacheKeyPrefix(in: catalog)
        (toRead, readAgain) = AsyncStream.makeStream(of: Int.self)
        for partition in 0..<partitions { readAgain.yield(partition) }
    }

    /// Whether `entityKey` is a counter's (any tenant's).
    func isCounter(_ entityKey: String) -> Bool {
        CounterDescriptor.isCounterKey(entityKey, prefix: counterPrefix)
    }

    func knows(partition: Int) -> Bool { learned.withLock { $0.contains(partition) } }

    /// `states` are `partition`'s counter states as just read: its shares from now on (newer ones heard live stay).
    func learn(_ states: [StoredEvent], partition: Int) {
        for state in states where isCounter(state.entityKey) { note(state, partition: partition) }
        learned.withLock { _ = $0.insert(partition) }
    }

    /// `partition` came back without the history this node had delivered from it (its Redis restarted empty, or
    /// trimmed what the node missed): its shares are forgotten and read again.
    func forget(partition: Int) {
        learned.withLock { _ = $0.remove(partition) }
        shares.withLock { all in
            for key in all.keys { all[key]![partition] = nil }
        }
        readAgain.yield(partition)
    }

    /// `event` as delivered live from `partition`: a counter's carries the sum of every partition's latest share,
    /// its own included.
    func summing(_ event: StoredEvent, partition: Int) -> StoredEvent {
        guard event.carriesState, isCounter(event.entityKey), CounterValue.read(in: event.json) != nil else { return event }
        note(event, partition: partition)
        let total = shares.withLock { all in all[event.entityKey]?.values.reduce(0) { $0 + $1.value } ?? 0 }
        return CounterValue.replacing(in: event, with: total)
    }

    /// `event` as replayed from `partition`'s history: its share then, plus the other partitions' latest.
    func replaying(_ event: StoredEvent, partition: Int) -> StoredEvent {
        guard event.carriesState, isCounter(event.entityKey), let value = CounterValue.read(in: event.json) else { return event }
        let others = shares.withLock { all in
            (all[event.entityKey] ?? [:]).filter { $0.key != partition }.values.reduce(0) { $0 + $1.value }
        }
        return CounterValue.replacing(in: event, with: value + others)
    }

    /// One state per counter from every partition's share of it, read together (a snapshot, a `latest`): the newest
    /// share's event (by id) carrying the sum of the shares read. A partition that never counted a counter has no
    /// share of it (0). Also learns the shares.
    func merged(_ states: [(partition: Int, event: StoredEvent)]) -> [StoredEvent] {
        // Counter entity key → partition → its share (one per partition, should a read meet a state twice).
        var groups: [String: [Int: (partition: Int, event: StoredEvent)]] = [:]
        for state in states {
            note(state.event, partition: state.partition)
            if let held = groups[state.event.entityKey]?[state.partition], held.event.id >= state.event.id { continue }
            groups[state.event.entityKey, default: [:]][state.partition] = state
        }
        return groups.values.map { Array($0.values) }.compactMap { group in
            guard let newest = group.max(by: { $0.event.id < $1.event.id }) else { return nil }
            let total = group.reduce(0) { $0 + (CounterValue.read(in: $1.event.json) ?? 0) }
            var event = CounterValue.replacing(in: newest.event, with: total)
            event.partition = newest.partition
            return event
        }
    }

    private func note(_ event: StoredEvent, partition: Int) {
        guard let value = CounterValue.read(in: event.json) else { return }
        shares.withLock { all in
            if let held = all[event.entityKey]?[partition], held.id >= event.id { return }
            all[event.entityKey, default: [:]][partition] = Share(id: event.id, value: value)
        }
    }
}
