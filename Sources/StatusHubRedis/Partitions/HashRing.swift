/// Partitions placed on several independent Redis servers (`redis.shards`) by consistent hashing: each server
/// owns many points on a ring of 64-bit hashes, and a partition belongs to the server owning the first point at
/// or after the partition's own hash (`server(forPartition:)`). Adding or removing a server moves only the
/// partitions whose first point changed — about 1/N of them — and never moves a partition between two servers that
/// stay.
///
/// With few partitions the plain ring is uneven (12 partitions on three servers gave one 2–3× another's load,
/// `loadtest/RESULTS.md`), so the hub places them with bounded loads (`placement(partitions:)`, Mirrokni, Thorup and
/// Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018): each partition takes the first server on the
/// ring from its hash that holds fewer than ⌈partitions ÷ servers⌉, so no server holds more than its share rounded
/// up (12 partitions on three servers: 4 each).
/// Adding a server still moves few partitions (about 1/N, and a few more that overflow; tested).
public struct HashRing: Sendable, Equatable {
    /// Points per server: enough that three servers get shares within a few percent of a third.
    public static let pointsPerServer = 160

    private let points: [(hash: UInt64, server: Int)]
    public let servers: [String]

    /// - Parameter servers: each server's identity on the ring (its `host:port/db`, not its password), in config
    ///   order; the same list gives the same placement on every node.
    public init(servers: [String]) {
        precondition(!servers.isEmpty, "at least one server")
        self.servers = servers
        var points: [(hash: UInt64, server: Int)] = []
        points.reserveCapacity(servers.count * Self.pointsPerServer)
        for (index, server) in servers.enumerated() {
            for point in 0..<Self.pointsPerServer { points.append((StableHash.of("\(server)#\(point)"), index)) }
        }
        self.points = points.sorted { ($0.hash, $0.server) < ($1.hash, $1.server) }
    }

    /// The index (in `servers`) of the server owning the first point at or after `partition`'s hash.
    public func server(forPartition partition: Int) -> Int {
        points[firstPoint(forPartition: partition)].server
    }

    /// Partition → the index (in `servers`) of the server that holds it, for `count` partitions, each server
    /// holding at most ⌈count ÷ servers⌉. The same servers and count give the same placement on every node.
    public func placement(partitions count: Int) -> [Int] {
        let capacity = (count + servers.count - 1) / servers.count
        var load = Array(repeating: 0, count: servers.count)
        return (0..<count).map { partition in
            var point = firstPoint(forPartition: partition)
            // Some server has room (capacity × servers ≥ count), and every server owns points, so this ends.
            while load[points[point].server] >= capacity { point = (point + 1) % points.count }
            load[points[point].server] += 1
            return points[point].server
        }
    }

    private func firstPoint(forPartition partition: Int) -> Int {
        let hash = StableHash.of("partition-\(partition)")
        var low = 0
        var high = points.count
        while low < high {
            let middle = (low + high) / 2
            if points[middle].hash < hash { low = middle + 1 } else { high = middle }
        }
        return low == points.count ? 0 : low
    }

    public static func == (lhs: HashRing, rhs: HashRing) -> Bool { lhs.servers == rhs.servers }
}
