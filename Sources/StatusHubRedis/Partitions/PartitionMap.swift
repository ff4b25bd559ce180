import StatusHubCore

/// How the event space is split into partitions by entity: all of one entity's events go to one partition, so
/// per-entity order holds however many there are. Each partition has its own history stream, its own pub/sub
/// channel and its own idempotency keys, all sharing the hash tag `{p<n>}`, so a Redis Cluster keeps them in one
/// slot and one append script may touch them all.
///
/// One partition (the default) is today's layout exactly: no hash tag, the same key and channel names — except on a
/// Redis Cluster, where even one partition needs its tag to keep its keys in one slot.
///
/// On a Redis Cluster (`forCluster`) the tag also decides which master holds the partition: the one serving its
/// slot. The slots of `{p0}`…`{p11}` fall 3/3/6 on three masters' default even slot ranges (one master measured at
/// 1.8× the others' load, `loadtest/RESULTS.md`), so there each partition's tag is the first of `p<n>`, `p<n>.1`,
/// `p<n>.2`, … whose slot lies in the partition's own n-th of the slot space: the partitions' slots then spread
/// evenly over it, and a cluster whose masters hold even slot ranges holds even shares of the partitions.
public struct PartitionMap: Sendable, Equatable {
    public let count: Int
    /// Partition → its hash tag, `{p3}` (on a cluster possibly `{p3.17}`); empty with one partition off a cluster.
    private let tags: [String]

    /// - Parameter forCluster: make the tags for a Redis Cluster (see above); a single partition is tagged there too.
    public init(count: Int, forCluster: Bool = false) {
        precondition(count >= 1, "at least one partition")
        self.count = count
        tags = (0..<count).map { partition in
            if count == 1 && !forCluster { return "" }
            guard forCluster else { return "{p\(partition)}" }
            let share = ClusterSlot.count / count
            let range = partition * share..<(partition == count - 1 ? ClusterSlot.count : (partition + 1) * share)
            // Each candidate lands in the range with probability ~1/count, so this takes about `count` tries.
            for suffix in 0... {
                let name = suffix == 0 ? "p\(partition)" : "p\(partition).\(suffix)"
                if range.contains(ClusterSlot.of(key: name)) { return "{\(name)}" }
            }
            fatalError("unreachable: the suffixes go on until one lands")
        }
    }

    public var isSingle: Bool { count == 1 }

    /// The partition of an entity key (with its tenant prefix, `@acme:resource:machine:M-1`): jump consistent
    /// hashing (Lamping & Veach, 2014) of the key's FNV-1a hash, so that growing the partition count moves only the
    /// entities the new partitions take, about 1/count of them.
    public func partition(ofEntityKey key: some StringProtocol) -> Int {
        guard count > 1 else { return 0 }
        return Self.jumpHash(StableHash.of(key), buckets: count)
    }

    /// `{p3}` for partition 3 (on a cluster possibly `{p3.17}`); empty with one partition off a cluster.
    public func hashTag(_ partition: Int) -> String { tags[partition] }

    /// `name` as partition `partition` calls it: `{p3}statushub:history`; `name` itself with one partition.
    public func name(_ name: String, partition: Int) -> String { hashTag(partition) + name }

    static func jumpHash(_ key: UInt64, buckets: Int) -> Int {
        var key = key
        var bucket: Int64 = -1
        var next: Int64 = 0
        while next < buckets {
            bucket = next
            key = key &* 2_862_933_555_777_941_757 &+ 1
            next = Int64(Double(bucket + 1) * (Double(Int64(1) << 31) / Double((key >> 33) + 1)))
        }
        return Int(bucket)
    }
}

/// A hash that is the same in every process and on every platform (Swift's `Hasher` is seeded per process):
/// FNV-1a over the UTF-8 bytes, then SplitMix64's finalizer, so short keys that differ in one character spread
/// over all 64 bits.
public enum StableHash {
    public static func of(_ text: some StringProtocol) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return hash
    }
}
