/// Partitions placed on several independent Redis servers (`redis.shards`) by consistent hashing: each server
/// owns many points on a ring of 64-bit hashes, and a partition belongs to the server owning the first point at
/// or after the partition's own hash. Adding or removing a server moves only the partitions whose first point
/// changed — about 1/N of them — and never moves a partition between two servers that stay.
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

    /// The index (in `servers`) of the server that holds `partition`.
    public func server(forPartition partition: Int) -> Int {
        let hash = StableHash.of("partition-\(partition)")
        var low = 0
        var high = points.count
        while low < high {
            let middle = (low + high) / 2
            if points[middle].hash < hash { low = middle + 1 } else { high = middle }
        }
        return points[low == points.count ? 0 : low].server
    }

    public static func == (lhs: HashRing, rhs: HashRing) -> Bool { lhs.servers == rhs.servers }
}
