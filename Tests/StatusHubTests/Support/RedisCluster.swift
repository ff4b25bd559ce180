import Foundation
import StatusHubRedis

/// A Redis Cluster of three masters (no replicas) on loopback, made by `redis-cli --cluster create`. Use
/// `withRedisCluster`, which always stops the three servers.
final class RedisCluster: Sendable {
    let nodes: [RedisServer]

    var seeds: [RedisURL] { nodes.map { RedisURL(host: "127.0.0.1", port: $0.port) } }

    private init(nodes: [RedisServer]) { self.nodes = nodes }

    static func start(masters: Int = 3) async throws -> RedisCluster {
        var nodes: [RedisServer] = []
        do {
            for _ in 0..<masters {
                // Each node also listens on its port + 10000 (the cluster bus).
                nodes.append(try await RedisServer.start(
                    extraArguments: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
                    portBelow: 55_536))
            }
            let create = try ChildProcess.spawn(redisCLI(), ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-yes"])
            let deadline = ContinuousClock.now + .seconds(20)
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
            return RedisCluster(nodes: nodes)
        } catch {
            for node in nodes { await node.destroy() }
            throw error
        }
    }

    func destroy() async {
        for node in nodes { await node.destroy() }
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

    private static func redisCLI() -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/redis-cli") {
            return "\(directory)/redis-cli"
        }
        return "/usr/bin/redis-cli"
    }
}

func withRedisCluster<T>(_ body: (RedisCluster) async throws -> T) async throws -> T {
    let cluster = try await RedisCluster.start()
    do {
        let result = try await body(cluster)
        await cluster.destroy()
        return result
    } catch {
        await cluster.destroy()
        throw error
    }
}
