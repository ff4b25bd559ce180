import StatusHubCore

/// The Redis names a hub uses besides the entity cache keys the seed lays out (`resource:machine:M-203`).
///
/// All of them are named after `redis.stream_key`, so two hubs given different stream keys keep out of each
/// other's way in one Redis, and an operator finds everything of a hub under one prefix.
///
/// The entity cache keys are the entity keys themselves (`resource:machine:M-203`), except on a Redis Cluster: there a
/// script may only touch keys of one slot, so each partition's entity keys carry its hash tag too
/// (`{p3}resource:machine:M-203`, `entityTag`). The tagged name is the entity's name everywhere in Redis then: cache
/// key, field of the last-states and entity-facts hashes, member of the deadlines and the snapshot indexes.
struct RedisKeys: Sendable, Equatable {
    /// The history stream; its ids are the events' ids.
    let stream: String
    /// Hash: entity key → the pub/sub message (`<id> <routing header>\n<json>`) of the state cached under that
    /// key, kept without a TTL. When the cache key expires, Redis has already deleted the value; this copy is
    /// what the `status_stale` event is built from. One hash rather than a shadow key per entity, so that shadows
    /// never show up in the snapshot's `SCAN resource:machine:*` and a node can read many in one `HMGET`.
    let lastStates: String
    /// Sorted set: entity key → when its cached state expires (Redis clock, ms). It lets a node find the states
    /// that expired while no node was listening for expiry notifications with one range query, instead of
    /// scanning every shadow.
    let deadlines: String
    /// `SET <prefix><idempotency key> <event id> EX <window>`.
    let idempotencyPrefix: String
    /// Set per `SnapshotIndex` name: the entity keys filed under it, a superset of those with a cached state.
    let indexPrefix: String
    /// Set once the indexes cover every cached state (a cache written by a hub from before the indexes gets them
    /// built once, at start).
    let indexesBuilt: String
    /// Set of the line index names (`SnapshotIndex.line`) ever filed, so the lines are listed (`Engine.lines`) without
    /// scanning the keyspace; a plant has tens of lines, so it is never pruned (a line whose index emptied is skipped).
    let lineIndexes: String
    /// Hash: entity key → what the hub keeps of its cached state besides the state: its `SourceOrder` rank (an
    /// older event does not replace it) and, after a newline, the tally entries it counts toward
    /// (`<tally>=<counter key>`, `<tally>~<set key>`, tab-separated). One field, so a state event reads and writes
    /// one. The stale claim drops the rank and the counters and keeps the sets.
    let entityFacts: String
    /// Hash: counter key → its `CounterDescriptor.scriptLine`, so any later call (a stale claim) can announce it.
    let counters: String
    /// `SET <prefix><call token> <the ids the call assigned> EX <window>` (see `CallRecords`).
    let callRecordPrefix: String
    /// Put before the keys of the tallies (`Tally`: counts, active sets, a counter's cached `counter_changed` and a
    /// shift's copy): empty alone, so they keep the names the catalog gives them; a partition's hash tag (`{p3}`)
    /// with several, as each partition keeps its own share of every tally (`PartitionedRedisEngine` sums them).
    let tallyTag: String
    /// The hash tag every entity key is stored under (`{p3}`); empty but on a Redis Cluster.
    let entityTag: String

    init(streamKey: String, entityTag: String = "", tallyTag: String = "") {
        self.entityTag = entityTag
        stream = streamKey
        self.tallyTag = tallyTag
        lastStates = streamKey + ":last-states"
        deadlines = streamKey + ":deadlines"
        idempotencyPrefix = streamKey + ":idem:"
        indexPrefix = streamKey + ":index:"
        indexesBuilt = streamKey + ":indexes-built"
        lineIndexes = streamKey + ":line-indexes"
        callRecordPrefix = streamKey + ":call:"
        entityFacts = streamKey + ":entity-facts"
        counters = streamKey + ":counters"
    }

    func index(_ name: String) -> String { indexPrefix + name }

    /// The Redis name of an entity's cached state.
    func stored(_ entityKey: String) -> String { entityTag + entityKey }

    /// The entity key a Redis name stores, or nil when the name is not one of this partition's (no tag, or another's).
    func entityKey(stored name: String) -> String? {
        guard !entityTag.isEmpty else { return name }
        guard name.hasPrefix(entityTag) else { return nil }
        return String(name.dropFirst(entityTag.count))
    }

    func idempotencyKey(_ key: String) -> String { idempotencyPrefix + key }

    /// A user's session (`session:alice`, seed 003 §4.2), under the partition's hash tag on a Redis Cluster.
    func session(_ key: String) -> String { entityTag + key }

    func callRecord(_ token: String) -> String { callRecordPrefix + token }

    /// Where this engine keeps a tally's key (`stats:line:L2:machines_running`, `allocation:operator:O-1:active`) or
    /// a counter entity's cached state.
    func tally(_ key: String) -> String { tallyTag + key }

    /// The keyevent channel on which Redis announces keys of `database` that expired (with
    /// `notify-keyspace-events` containing `E` and `x`).
    static func expiredChannel(database: Int) -> String { "__keyevent@\(database)__:expired" }

    /// Whether `key` is a latest-state key the hub writes: expiry notifications arrive for every key of the
    /// database (other applications', and the hub's own idempotency keys), and only these concern staleness.
    /// Keys of every tenant count (`@acme:resource:machine:M-1`, see `Tenant`).
    /// A leading hash tag (`{p3}`, on a Redis Cluster) is not part of the entity key.
    static func isEntityKey(_ key: String, catalog: Catalog = .standard) -> Bool {
        let key = Tenant.split(withoutHashTag(key)).rest
        return catalog.entityTypes.contains { key.count > $0.cacheKeyPrefix.count && key.hasPrefix($0.cacheKeyPrefix) }
    }

    /// `key` without a leading `{…}` hash tag.
    static func withoutHashTag(_ key: String) -> String {
        guard key.hasPrefix("{"), let close = key.firstIndex(of: "}") else { return key }
        return String(key[key.index(after: close)...])
    }
}
