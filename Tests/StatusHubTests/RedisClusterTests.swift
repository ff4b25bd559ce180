import Logging
import StatusHubCore
import StatusHubRedis
import Synchronization
import Testing

/// The Cluster client against a real three-master Redis Cluster on loopback.
@Suite("Redis Cluster client")
struct RedisClusterTests {
    static func client(_ cluster: RedisCluster) -> ClusterClient {
        ClusterClient(seeds: [cluster.seeds[0]], commandTimeoutSeconds: 2, logger: Logger(label: "test-cluster"))
    }

    /// The map covers every slot with the three masters, and each partition's keys land on the master the map
    /// names for their hash tag.
    @Test func slotMapRoutesEveryPartition() async throws {
        try await withRedisCluster { cluster in
            let client = Self.client(cluster)
            let map = try await client.slotMap()
            #expect(map.coversEverySlot)
            #expect(Set(map.masters.map(\.port)) == Set(cluster.nodes.map(\.port)))
            let partitions = PartitionMap(count: 16)
            for partition in 0..<16 {
                let key = partitions.name("statushub:history", partition: partition)
                #expect(try await client.send(["SET", key, "p\(partition)"], key: key).errorMessage == nil)
                let owner = try #require(map.master(forSlot: ClusterSlot.of(key: key)))
                let direct = try await cluster.connect(toNodeWithPort: owner.port)
                #expect(try await direct.send(["GET", key]).text == "p\(partition)")
                await direct.close()
            }
            await client.shutdown()
        }
    }

    /// A slot moved behind the client's back: its command meets `MOVED`, goes to the new master, and the map learns.
    @Test func movedIsFollowedAndTheMapLearns() async throws {
        try await withRedisCluster { cluster in
            let client = Self.client(cluster)
            let key = "{p7}statushub:history"
            let slot = ClusterSlot.of(key: key)
            let owner = try #require(try await client.slotMap().master(forSlot: slot))
            let other = try #require(cluster.nodes.first { $0.port != owner.port })
            let ids = try await cluster.nodeIDs()
            for node in cluster.nodes {
                let connection = try await cluster.connect(toNodeWithPort: node.port)
                #expect(try await connection.send(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[other.port]!]).errorMessage == nil)
                await connection.close()
            }
            #expect(try await client.send(["SET", key, "moved"], key: key).errorMessage == nil)
            #expect(try await client.slotMap().master(forSlot: slot)?.port == other.port)
            let direct = try await cluster.connect(toNodeWithPort: other.port)
            #expect(try await direct.send(["GET", key]).text == "moved")
            await direct.close()
            await client.shutdown()
        }
    }

    /// A slot being migrated: a key not on the old master yet is asked for on the new one (`ASKING`), and the map is
    /// left as it is until the migration ends.
    @Test func askIsFollowedOnce() async throws {
        try await withRedisCluster { cluster in
            let client = Self.client(cluster)
            let key = "{p9}statushub:history"
            let slot = ClusterSlot.of(key: key)
            let owner = try #require(try await client.slotMap().master(forSlot: slot))
            let other = try #require(cluster.nodes.first { $0.port != owner.port })
            let ids = try await cluster.nodeIDs()
            let importing = try await cluster.connect(toNodeWithPort: other.port)
            let migrating = try await cluster.connect(toNodeWithPort: owner.port)
            #expect(try await importing.send(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", ids[owner.port]!]).errorMessage == nil)
            #expect(try await migrating.send(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", ids[other.port]!]).errorMessage == nil)

            #expect(try await client.send(["SET", key, "asked"], key: key).errorMessage == nil)
            #expect(try await client.slotMap().master(forSlot: slot)?.port == owner.port, "ASK does not change the map")
            #expect(try await importing.pipeline([["ASKING"], ["GET", key]])[1].text == "asked")
            // Not on the old master: it sends whoever asks for the key on (an ASK redirect, not a value).
            let onOld = try await migrating.send(["GET", key]).errorMessage
            #expect(onOld.flatMap(ClusterRedirect.init(errorMessage:)) == .ask(slot: slot, host: "127.0.0.1", port: other.port), "\(onOld ?? "a value")")
            await importing.close()
            await migrating.close()
            await client.shutdown()
        }
    }

    /// Sharded pub/sub: the subscription sits on the channel's master only (`PUBSUB SHARDNUMSUB` is 1 there, 0
    /// elsewhere), `SPUBLISH` reaches it, and when the slot moves the node ends the subscription.
    @Test func shardedPubSubLivesOnTheSlotsMaster() async throws {
        try await withRedisCluster { cluster in
            let client = Self.client(cluster)
            let channel = "statushub:events{p3}"
            let slot = ClusterSlot.of(key: channel)
            let owner = try #require(try await client.slotMap().master(forSlot: slot))
            let received = Mutex<[String]>([])
            let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
            let ended = Atomic(false)
            let subscription = Task {
                defer { ended.store(true, ordering: .relaxed) }
                try await client.subscribeSharded(channel, subscribed: { readyContinuation.yield() }) { payloads in
                    received.withLock { $0 += payloads.map { String(decoding: $0, as: UTF8.self) } }
                }
            }
            var iterator = ready.makeAsyncIterator()
            _ = await iterator.next()
            #expect(try await client.send(["SPUBLISH", channel, "hello"], key: channel).integer == 1)
            for node in cluster.nodes {
                let connection = try await cluster.connect(toNodeWithPort: node.port)
                let counts = try await connection.send(["PUBSUB", "SHARDNUMSUB", channel]).array
                #expect(counts?.last?.integer == (node.port == owner.port ? 1 : 0), "node \(node.port)")
                await connection.close()
            }
            try await RedisSentinels.waitUntil("the message to arrive", within: .seconds(5)) { received.withLock { $0 } == ["hello"] }

            let other = try #require(cluster.nodes.first { $0.port != owner.port })
            let ids = try await cluster.nodeIDs()
            for node in cluster.nodes {
                let connection = try await cluster.connect(toNodeWithPort: node.port)
                _ = try await connection.send(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[other.port]!])
                await connection.close()
            }
            // The old master ends the subscription; the caller subscribes again where the slot is now.
            try await RedisSentinels.waitUntil("the subscription to end", within: .seconds(5)) { ended.load(ordering: .relaxed) }
            try await subscription.value
            await client.shutdown()
        }
    }
}
