import Foundation
import StatusHubRedis

/// A master, one replica and three sentinels watching them, each a real `redis-server` on loopback
/// (`docs/operations.md` describes the same set-up). Use `withRedisSentinels`, which always stops all five.
final class RedisSentinels: Sendable {
    static let masterName = "statushub-test"

    let master: RedisServer
    let replica: RedisServer
    let sentinels: [RedisServer]

    /// `host:port` of each sentinel, as `redis.sentinels` takes them.
    var sentinelAddresses: [String] { sentinels.map { "127.0.0.1:\($0.port)" } }

    private init(master: RedisServer, replica: RedisServer, sentinels: [RedisServer]) {
        self.master = master
        self.replica = replica
        self.sentinels = sentinels
    }

    /// Starts them and waits until the replica is in sync and every sentinel knows the replica and the other two
    /// sentinels: before that a failover cannot happen (no quorum, or no replica to promote).
    static func start() async throws -> RedisSentinels {
        // Redis 7 holds a replica's first full sync back by `repl-diskless-sync-delay` (5 s by default).
        let replication = ["--repl-diskless-sync-delay", "0"]
        let master = try await RedisServer.start(extraArguments: replication)
        var started = [master]
        do {
            let replica = try await RedisServer.start(extraArguments: replication + ["--replicaof", "127.0.0.1", String(master.port)])
            started.append(replica)
            try await waitUntil("the replica's link to the master is up") {
                try await info(port: replica.port, "replication").contains("master_link_status:up")
            }
            // A failover that takes longer than failover-timeout is abandoned and retried only after twice that: on
            // a starved machine promoting the replica can take seconds, so the timeout is generous (it does not slow
            // a failover that goes well).
            let configuration = """
                sentinel monitor \(masterName) 127.0.0.1 \(master.port) 2
                sentinel down-after-milliseconds \(masterName) 1000
                sentinel failover-timeout \(masterName) 15000
                sentinel parallel-syncs \(masterName) 1
                """
            var sentinels: [RedisServer] = []
            for _ in 0..<3 {
                let sentinel = try await RedisServer.start(extraArguments: ["--sentinel"], configFile: configuration)
                sentinels.append(sentinel)
                started.append(sentinel)
            }
            for sentinel in sentinels {
                try await waitUntil("sentinel \(sentinel.port) to know the replica and the other sentinels") {
                    let fields = try await masterFields(sentinelPort: sentinel.port)
                    return fields["num-slaves"] == "1" && fields["num-other-sentinels"] == "2"
                }
            }
            return RedisSentinels(master: master, replica: replica, sentinels: sentinels)
        } catch {
            for server in started { await server.destroy() }
            throw error
        }
    }

    func destroy() async {
        for server in sentinels + [master, replica] { await server.destroy() }
    }

    /// Starts the killed master again, as the promoted replica's replica that the sentinels never promote
    /// (`replica-priority 0`). It comes back empty (no persistence here), and Redis's replication guide warns why
    /// that matters: were it promotable, a second failover on a starved machine (the new master missing
    /// `down-after-milliseconds` of pings) could make the empty server the master and wipe the history from both.
    func restartKilledMaster() async throws {
        try await master.restart(adding: ["--replicaof", "127.0.0.1", String(replica.port), "--replica-priority", "0"])
    }

    /// The port the sentinels name as the master now.
    func masterPort() async throws -> Int? {
        let connection = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: sentinels[0].port))
        defer { Task { await connection.close() } }
        let reply = try await connection.send(["SENTINEL", "get-master-addr-by-name", Self.masterName])
        return reply.array?.last?.text.flatMap(Int.init)
    }

    static func info(port: Int, _ section: String) async throws -> String {
        let connection = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: port))
        defer { Task { await connection.close() } }
        return try await connection.send(["INFO", section]).text ?? ""
    }

    private static func masterFields(sentinelPort: Int) async throws -> [String: String] {
        let connection = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: sentinelPort))
        defer { Task { await connection.close() } }
        let values = try await connection.send(["SENTINEL", "MASTER", masterName]).orThrow().array?.compactMap(\.text) ?? []
        return Dictionary(stride(from: 0, to: values.count - 1, by: 2).map { (values[$0], values[$0 + 1]) }, uniquingKeysWith: { a, _ in a })
    }

    static func waitUntil(_ what: String, within limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RedisServer.StartError(description: "gave up waiting for \(what) after \(limit)")
    }
}

/// Runs `body` with a fresh master, replica and three sentinels, and always stops them afterwards.
func withRedisSentinels<T>(_ body: (RedisSentinels) async throws -> T) async throws -> T {
    let group = try await RedisSentinels.start()
    do {
        let result = try await body(group)
        await group.destroy()
        return result
    } catch {
        await group.destroy()
        throw error
    }
}
