import Foundation
import StatusHubRedis
import Synchronization

/// A Redis Cluster of three masters (no replicas) on loopback, made by `redis-cli --cluster create`. Use
/// `withRedisCluster`, which always stops the three servers.
final class RedisCluster: Sendable {
    let nodes: [RedisServer]
    /// Replicas added later (`addReplica`), stopped with the rest.
    private let replicas = Mutex<[RedisServer]>([])
    private let extraArguments: [String]

    var seeds: [RedisURL] { nodes.map { RedisURL(host: "127.0.0.1", port: $0.port) } }

    private init(nodes: [RedisServer], extraArguments: [String]) {
        self.nodes = nodes
        self.extraArguments = extraArguments
    }

    private static let nodeArguments = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
    /// Each node also listens on its port + 10000 (the cluster bus): both stay below the ephemeral range.
    private static var portBelow: Int { LoopbackPort.ephemeralRangeStart() - 10_000 }

    /// - Parameter extraArguments: for every node (e.g. `--cluster-require-full-coverage no`, so the others keep
    ///   serving while one master is down).
    static func start(masters: Int = 3, extraArguments: [String] = []) async throws -> RedisCluster {
        var nodes: [RedisServer] = []
        do {
            for _ in 0..<masters {
                nodes.append(try await RedisServer.start(extraArguments: nodeArguments + extraArguments, portBelow: portBelow))
            }
            let create = try ChildProcess.spawn(redisCLI(), ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-yes"])
            // redis-cli waits for the nodes to agree ("Waiting for the cluster to join"): in a loaded CI-like run that
            // took longer than the 20 s first allowed here.
            let deadline = ContinuousClock.now + .seconds(60)
            while create.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            guard !create.isRunning, create.terminationStatus == 0 else {
                if create.isRunning { create.terminate() }
                throw RedisServer.StartError(description: "redis-cli --cluster create failed")
            }
            for node in nodes {
                try await RedisSentinels.waitUntil("node \(node.port) to report cluster_state:ok") {
                    let connection = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: node.port))
                    defer { Task { await connection.close() } }
                    return try await connection.send(["CLUSTER", "INFO"]).text?.contains("cluster_state:ok") == true
                }
            }
            return RedisCluster(nodes: nodes, extraArguments: extraArguments)
        } catch {
            for node in nodes { await node.destroy() }
            throw error
        }
    }

    func destroy() async {
        for node in nodes + replicas.withLock({ $0 }) { await node.destroy() }
    }

    /// Adds a replica of the master on `masterPort` (`redis-cli --cluster add-node … --cluster-slave`) and waits until
    /// it has synchronised: the cluster promotes it when that master fails.
    @discardableResult
    func addReplica(of masterPort: Int) async throws -> RedisServer {
        let replica = try await RedisServer.start(extraArguments: Self.nodeArguments + extraArguments, portBelow: Self.portBelow)
        replicas.withLock { $0.append(replica) }
        guard let masterID = try await nodeIDs()[masterPort] else {
            throw RedisServer.StartError(description: "no cluster node on port \(masterPort)")
        }
        let add = try ChildProcess.spawn(
            Self.redisCLI(),
            ["--cluster", "add-node", "127.0.0.1:\(replica.port)", "127.0.0.1:\(masterPort)", "--cluster-slave", "--cluster-master-id", masterID])
        let deadline = ContinuousClock.now + .seconds(30)
        while add.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        guard !add.isRunning, add.terminationStatus == 0 else {
            if add.isRunning { add.terminate() }
            throw RedisServer.StartError(description: "redis-cli --cluster add-node failed")
        }
        try await RedisSentinels.waitUntil("the replica's link to its master is up") {
            let connection = try await connect(toNodeWithPort: replica.port)
            defer { Task { await connection.close() } }
            return try await connection.send(["INFO", "replication"]).text?.contains("master_link_status:up") == true
        }
        return replica
    }

    /// A direct connection to one node, bypassing any routing.
    func connect(toNodeWithPort port: Int) async throws -> RedisConnection {
        try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: port))
    }

    /// The node id of each node, by port.
    func nodeIDs() async throws -> [Int: String] {
        var ids: [Int: String] = [:]
        for node in nodes {
            let connection = try await connect(toNodeWithPort: node.port)
            ids[node.port] = try await connection.send(["CLUSTER", "MYID"]).text
            await connection.close()
        }
        return ids
    }

    /// Moves `slot` with its keys from the master on `source` (which serves it) to the one on `port`, the way `redis-cli --cluster
    /// reshard` does: the target imports, the source migrates, the keys go across with `MIGRATE`, and every node is
    /// told the new owner (the source last but one: from then on it answers `MOVED` and ends the slot's sharded
    /// subscriptions). `whileMigrating` runs once the slot is half-moved (before its keys go).
    func moveSlot(_ slot: Int, from source: Int, to port: Int, whileMigrating: () async throws -> Void = {}) async throws {
        let ids = try await nodeIDs()
        let target = try await connect(toNodeWithPort: port)
        let from = try await connect(toNodeWithPort: source)
        defer {
            Task {
                await target.close()
                await from.close()
            }
        }
        _ = try await target.send(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", ids[source]!]).orThrow()
        _ = try await from.send(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", ids[port]!]).orThrow()
        try await whileMigrating()
        while true {
            let keys = try await from.send(["CLUSTER", "GETKEYSINSLOT", String(slot), "100"]).orThrow().array?.compactMap(\.text) ?? []
            guard !keys.isEmpty else { break }
            _ = try await from.send(["MIGRATE", "127.0.0.1", String(port), "", "0", "5000", "KEYS"] + keys).orThrow()
        }
        _ = try await target.send(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[port]!]).orThrow()
        _ = try await from.send(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[port]!]).orThrow()
        for node in nodes where node.port != port && node.port != source {
            let connection = try await connect(toNodeWithPort: node.port)
            _ = try await connection.send(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[port]!]).orThrow()
            await connection.close()
        }
    }

    private static func redisCLI() -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/redis-cli") {
            return "\(directory)/redis-cli"
        }
        return "/usr/bin/redis-cli"
    }
}

func withRedisCluster<T>(extraArguments: [String] = [], _ body: (RedisCluster) async throws -> T) async throws -> T {
    let cluster = try await RedisCluster.start(extraArguments: extraArguments)
    do {
        let result = try await body(cluster)
        await cluster.destroy()
        return result
    } catch {
        await cluster.destroy()
        throw error
    }
}
