import Synchronization

/// Which subscribers want a channel: exact channels and wildcard patterns in one segment trie.
///
/// Sharded by a pattern's first segment (patterns that start with `*` share one shard), each shard behind its
/// own `Mutex`, so two cores fanning out events of different channels do not queue on one lock.
public final class SubscriptionIndex<Subscriber: Hashable & Sendable>: Sendable {
    private final class Shard: Sendable {
        let trie = Mutex(TrieNode<Subscriber>())
        /// Whether the trie holds anyone, readable without its lock; set under the lock as it changes.
        let holdsAny = Atomic<Bool>(false)
    }

    private let shards: [Shard]
    private let wildcardShard = Shard()
    /// How many shards hold anyone: none, and an event's lookup is one load (a node hears every event of the plant,
    /// most of them on channels nobody there watches; the locks, the hashing and the generic trie's checks per
    /// channel were 7 % of a node's batched ingest, loadtest/RESULTS.md).
    private let occupiedShards = Atomic<Int>(0)

    public init(shardCount: Int = 16) {
        shards = (0..<max(1, shardCount)).map { _ in Shard() }
    }

    private func shard(forFirstSegment segment: Substring) -> Shard {
        var hasher = Hasher()
        hasher.combine(segment)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(shards.count))]
    }

    private func shard(for pattern: ChannelPattern) -> Shard {
        if case .literal(let first) = pattern.segments[0] { return shard(forFirstSegment: first[...]) }
        return wildcardShard
    }

    public func add(_ subscriber: Subscriber, to pattern: ChannelPattern) {
        let shard = shard(for: pattern)
        shard.trie.withLock { trie in
            let wasEmpty = trie.isEmpty
            trie.insert(subscriber, path: pattern.segments[...])
            if wasEmpty { occupy(shard, true) }
        }
    }

    public func remove(_ subscriber: Subscriber, from pattern: ChannelPattern) {
        let shard = shard(for: pattern)
        shard.trie.withLock { trie in
            let wasEmpty = trie.isEmpty
            _ = trie.remove(subscriber, path: pattern.segments[...])
            if !wasEmpty, trie.isEmpty { occupy(shard, false) }
        }
    }

    /// Under `shard`'s lock, as its trie turns non-empty or empty: each shard's turns are serialized by that lock,
    /// so the count stays exact.
    private func occupy(_ shard: Shard, _ holds: Bool) {
        shard.holdsAny.store(holds, ordering: .releasing)
        if holds { occupiedShards.wrappingAdd(1, ordering: .releasing) } else { occupiedShards.wrappingSubtract(1, ordering: .releasing) }
    }

    /// Every subscriber with at least one pattern matching at least one of `channels`, each once.
    ///
    /// The matching nodes' sets are gathered first and merged only when there is more than one: when every
    /// receiver sits on one node (a thousand dashboards on `resource-status`), the result is that node's set,
    /// shared copy-on-write, with no hashing per receiver per event.
    ///
    /// A channel is split into segments only when one of its two shards holds a subscriber: every event is looked up
    /// here, also on a node nobody watches (the split was 5 % of such a node's ingest, loadtest/RESULTS.md).
    public func subscribers(matching channels: [String]) -> Set<Subscriber> {
        guard occupiedShards.load(ordering: .acquiring) > 0 else { return [] }
        var sets: [Set<Subscriber>] = []
        for channel in channels {
            let firstSegment = channel[..<(channel.firstIndex(of: ChannelName.separator) ?? channel.endIndex)]
            var segments: [Substring]?
            func collect(from shard: Shard) {
                guard shard.holdsAny.load(ordering: .acquiring) else { return }
                shard.trie.withLock { trie in
                    if segments == nil { segments = channel.split(separator: ChannelName.separator, omittingEmptySubsequences: false) }
                    trie.collect(segments![...], into: &sets)
                }
            }
            collect(from: shard(forFirstSegment: firstSegment))
            collect(from: wildcardShard)
        }
        guard let largest = sets.indices.max(by: { sets[$0].count < sets[$1].count }) else { return [] }
        var found = sets[largest]
        for (position, set) in sets.enumerated() where position != largest { found.formUnion(set) }
        return found
    }

    public var isEmpty: Bool { occupiedShards.load(ordering: .acquiring) == 0 }
}

/// One node of the segment trie. `exact` holds subscribers whose pattern ends here; `rest` those whose pattern
/// ends here with a trailing `*` (the rest of the channel, one segment or more).
struct TrieNode<Subscriber: Hashable & Sendable>: Sendable {
    var literals: [String: TrieNode] = [:]
    var oneSegment: [TrieNode] = []  // zero or one element: a recursive struct cannot hold an Optional of itself
    var exact: Set<Subscriber> = []
    var rest: Set<Subscriber> = []

    var isEmpty: Bool { literals.isEmpty && oneSegment.isEmpty && exact.isEmpty && rest.isEmpty }

    mutating func insert(_ subscriber: Subscriber, path: ArraySlice<ChannelPattern.Segment>) {
        guard let head = path.first else {
            exact.insert(subscriber)
            return
        }
        switch head {
        case .rest:
            rest.insert(subscriber)
        case .one:
            if oneSegment.isEmpty { oneSegment.append(TrieNode()) }
            oneSegment[0].insert(subscriber, path: path.dropFirst())
        case .literal(let literal):
            literals[literal, default: TrieNode()].insert(subscriber, path: path.dropFirst())
        }
    }

    /// Removes and prunes empty branches; returns whether this node is now empty.
    mutating func remove(_ subscriber: Subscriber, path: ArraySlice<ChannelPattern.Segment>) -> Bool {
        if let head = path.first {
            switch head {
            case .rest:
                rest.remove(subscriber)
            case .one:
                if !oneSegment.isEmpty, oneSegment[0].remove(subscriber, path: path.dropFirst()) {
                    oneSegment.removeAll()
                }
            case .literal(let literal):
                if literals[literal]?.remove(subscriber, path: path.dropFirst()) == true {
                    literals[literal] = nil
                }
            }
        } else {
            exact.remove(subscriber)
        }
        return isEmpty
    }

    /// Appends the non-empty sets of subscribers whose patterns match `channel`.
    func collect(_ channel: ArraySlice<Substring>, into sets: inout [Set<Subscriber>]) {
        guard let head = channel.first else {
            if !exact.isEmpty { sets.append(exact) }
            return
        }
        if let child = literals[String(head)] { child.collect(channel.dropFirst(), into: &sets) }
        // Wildcards never match a tenant segment (see `Tenant`).
        guard !Tenant.isTenantSegment(head) else { return }
        if !rest.isEmpty { sets.append(rest) }
        if let child = oneSegment.first { child.collect(channel.dropFirst(), into: &sets) }
    }
}
