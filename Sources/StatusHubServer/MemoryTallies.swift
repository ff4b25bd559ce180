import StatusHubCore

/// The memory engine's counters and active sets (`Tally`), kept under its lock beside the cached states: the same
/// moves as the Redis append script's `retally`, on dictionaries. No TTLs: a counter a quiet line left at 0 stays
/// at 0, and a shift's copy is the running count announced under the shift in effect.
struct MemoryTallies {
    /// Entity key → the entries (`<tally>=<key>`) its cached state counts toward.
    private var entries: [String: [TallyUpdate.Entry]] = [:]
    private(set) var counts: [String: Int] = [:]
    private(set) var sets: [String: Set<String>] = [:]
    /// Shift counter key → the shift its count was last announced under.
    private var announcedShift: [String: String] = [:]

    /// A counter's new value, to be announced as its `counter_changed` by the engine.
    struct Change {
        var descriptor: CounterDescriptor
        var value: Int
        /// What to name as its cause instead of the event that changed it (`shift_start`).
        var cause: String?
    }

    /// Moves the entity from its previous entries to `update`'s (nil: its state went stale, which leaves its counters
    /// and keeps its sets), and returns the counters that changed, in order.
    mutating func retally(
        entityKey: String, update: TallyUpdate?, catalog: Catalog, cache: CounterDescriptorCache, shift: String
    ) -> [Change] {
        var changes: [Change] = []
        let old = entries[entityKey] ?? []
        var new: [TallyUpdate.Entry] = []
        if let update {
            for entry in update.entries where !new.contains(entry) { new.append(entry) }
            // Made (and cached) while the entry is at hand; a later decrement finds it in the cache by key.
            for entry in new where entry.isCounter { _ = CounterDescriptor.make(for: entry, catalog: catalog, cache: cache) }
            changes += rollOver(new, shift: shift, cache: cache)
        } else {
            new = old.filter { !$0.isCounter }
        }
        let member = update?.member ?? ""
        for entry in old where !new.contains(entry) {
            if entry.isCounter { changes += count(entry.key, by: -1, cache: cache) } else { sets[entry.key]?.remove(member) }
            if sets[entry.key]?.isEmpty == true { sets[entry.key] = nil }
        }
        for entry in new where !old.contains(entry) {
            if entry.isCounter { changes += count(entry.key, by: 1, cache: cache) } else { sets[entry.key, default: []].insert(member) }
        }
        entries[entityKey] = new.isEmpty ? nil : new
        for change in changes where change.descriptor.shiftCopy != nil { announcedShift[change.descriptor.key] = shift }
        return changes
    }

    private mutating func count(_ key: String, by delta: Int, cache: CounterDescriptorCache) -> [Change] {
        let value = (counts[key] ?? 0) + delta
        counts[key] = value
        return cache.descriptor(key).map { [Change(descriptor: $0, value: value)] } ?? []
    }

    /// The first change of a new shift announces the running count under it first.
    private mutating func rollOver(_ entries: [TallyUpdate.Entry], shift: String, cache: CounterDescriptorCache) -> [Change] {
        var changes: [Change] = []
        for entry in entries where entry.isCounter {
            guard let descriptor = cache.descriptor(entry.key), descriptor.shiftCopy != nil,
                let value = counts[entry.key], announcedShift[entry.key] != shift
            else { continue }
            announcedShift[entry.key] = shift
            changes.append(Change(descriptor: descriptor, value: value, cause: "shift_start"))
        }
        return changes
    }
}
