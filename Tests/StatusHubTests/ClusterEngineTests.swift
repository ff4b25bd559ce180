import Foundation
import Logging
import StatusHubCore
import StatusHubRedis
import Synchronization
import Testing

/// The partitioned engine placed on a real three-master Redis Cluster (`redis.cluster`): where its keys and sharded
/// channels live, two nodes sharing it, a partition's slot moved to another master while it is written to, and a
/// master lost. The engine contract suite runs against it too (`EngineContractTests`, `threeMasterCluster`).
@Suite("Partitioned Redis engine on a Redis Cluster", .serialized)
struct ClusterEngineTests {
    @Test func settingsAreReadAndMistakesNamed() throws {
        let seeds = try HubConfig.load(yaml: "redis:\n  cluster: [\"redis://10.0.0.1:7000\", \"redis://:pw@10.0.0.2:7000\"]\n")
        #expect(seeds.redis.cluster == ["redis://10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"])
        #expect(seeds.redis.partitionCount == HubConfig.Redis.clusterPartitions)
        let fromEnvironment = try HubConfig.load(
            yaml: "", environment: ["STATUSHUB_REDIS_CLUSTER": "[redis://10.0.0.1:7000]", "STATUSHUB_REDIS_PARTITIONS": "1"])
        #expect(fromEnvironment.redis.cluster == ["redis://10.0.0.1:7000"])
        #expect(fromEnvironment.redis.partitionCount == 1)
        for (yaml, named) in [
            ("redis:\n  url: redis://127.0.0.1:6379\n  cluster: [\"redis://10.0.0.1:7000\"]\n", "redis.cluster cannot be combined with redis.url"),
            ("redis:\n  shards: [\"redis://10.0.0.1:6379\"]\n  cluster: [\"redis://10.0.0.1:7000\"]\n", "redis.cluster cannot be combined with redis.shards"),
            ("redis:\n  sentinels: [127.0.0.1:26379]\n  master_name: plant\n  cluster: [\"redis://10.0.0.1:7000\"]\n", "redis.cluster cannot be combined with redis.sentinels"),
            ("redis:\n  cluster: [\"redis://10.0.0.1:7000\", \"10.0.0.2:7000\"]\n", "redis.cluster[1] must be a redis:// URL"),
            ("redis:\n  cluster: [\"redis://10.0.0.1:7000/2\"]\n", "redis.cluster[0] names database '2'"),
        ] {
            #expect {
                try HubConfig.load(yaml: yaml)
            } throws: { error in
                "\(error)".contains(named)
            }
        }
        var config = HubConfig()
        config.catalog = catalogWithoutTallies
        config.redis.cluster = ["redis://127.0.0.1:notaport"]
        #expect { try PartitionedRedisEngine(config: config) } throws: { error in "\(error)".contains("redis.cluster[0]") }
    }

    /// Every key a partition writes — entity cache keys included — carries its tag and lives on the master serving
    /// that tag's slot; each partition's channel is sharded, subscribed on that master only; nothing is published on
    /// a plain channel. Snapshot and latest read the tagged names.
    @Test func everyKeyAndChannelLivesOnItsPartitionsMaster() async throws {
        try await withRedisCluster { cluster in
            try await withPartitionedEngine(cluster: cluster, partitions: 6) { engine, sink in
                let machines = machinePerPartition(engine.map)
                _ = try await engine.append(machines.map { SampleEvents.validated(SampleEvents.machineStatus($0)) })
                _ = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machines[1], "breakdown")).withIdempotencyKey("once")])
                _ = try await sink.waitFor(count: machines.count + 1)
                let map = try await #require(engine.cluster).slotMap()
                var channelsSeen: [String] = []
                for node in cluster.nodes {
                    let connection = try await cluster.connect(toNodeWithPort: node.port)
                    let keys = try await connection.send(["KEYS", "*"]).orThrow().array?.compactMap(\.text) ?? []
                    for key in keys {
                        #expect(key.hasPrefix("{p"), "\(key) carries its partition's tag")
                        #expect(map.master(forSlot: ClusterSlot.of(key: key))?.port == node.port, "\(key) on the master of its slot")
                    }
                    for (partition, machine) in machines.enumerated() where map.master(forSlot: ClusterSlot.of(key: tag(partition, of: 6)))?.port == node.port {
                        #expect(keys.contains("\(tag(partition, of: 6))resource:machine:\(machine)"))
                        #expect(keys.contains("\(tag(partition, of: 6))statushub:history"))
                    }
                    let sharded = try await connection.send(["PUBSUB", "SHARDCHANNELS"]).orThrow().array?.compactMap(\.text) ?? []
                    for channel in sharded {
                        #expect(map.master(forSlot: ClusterSlot.of(key: channel))?.port == node.port, "\(channel) subscribed on its slot's master")
                    }
                    channelsSeen += sharded
                    let plain = try await connection.send(["PUBSUB", "CHANNELS", "*statushub*"]).orThrow().array ?? []
                    #expect(plain.isEmpty, "no plain channel: a PUBLISH would be copied to every node")
                    await connection.close()
                }
                #expect(Set(channelsSeen) == Set((0..<6).map { "\(tag($0, of: 6))statushub:events" }))
                let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "resource-status")])
                #expect(snapshot.events.map(\.entityKey).sorted() == machines.map { "resource:machine:\($0)" }.sorted())
                let latest = try #require(try await engine.latest(entityKey: "resource:machine:\(machines[1])"))
                #expect(latest.jsonString.contains("breakdown"))
                let again = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machines[1], "breakdown")).withIdempotencyKey("once")])
                #expect(again.first?.duplicate == true && again.first?.id == latest.id)
            }
        }
    }

    /// Two nodes on one cluster: each delivers every partition's events in each entity's order under four publishers
    /// (two per node), and a token one node gave resumes at the other with exactly what followed.
    @Test func twoNodesKeepEachEntitysOrderAndResumeWithAToken() async throws {
        try await withRedisCluster { cluster in
            try await withPartitionedEngine(cluster: cluster, partitions: 3) { nodeA, sinkA in
                try await withPartitionedEngine(cluster: cluster, partitions: 3) { nodeB, sinkB in
                    let machines = machinePerPartition(nodeA.map)
                    let perPublisher = 30
                    try await NumberedEvents.publishFromFour(to: (nodeA, nodeB), machines: machines, perPublisher: perPublisher)
                    let total = 4 * perPublisher
                    for sink in [sinkA, sinkB] {
                        let received = try await sink.waitFor(count: total)
                        #expect(received.count == total)
                        for publisher in 0..<4 {
                            #expect(NumberedEvents.sequences(received, publisher: publisher) == Array(0..<perPublisher), "publisher \(publisher)'s events in its order")
                        }
                    }
                    let token = try #require(sinkA.received.last?.resumeToken)
                    let later = machines.map { SampleEvents.validated(SampleEvents.machineStatus($0, "breakdown")) }
                    let stored = try await nodeB.append(later)
                    let replayed = try #require(try await nodeA.history(afterToken: token, limit: 100))
                    #expect(Set(replayed.map(\.id)) == Set(stored.map(\.id)), "exactly what followed the token, from every partition")
                    #expect(replayed.allSatisfy { $0.jsonString.contains("breakdown") })
                }
            }
        }
    }

    /// A partition's slot moved to another master (import, migrate, `MIGRATE` of its keys, `SETSLOT NODE`) while a
    /// publisher writes to it through one node and two nodes deliver it: writes answered 503 during the move are
    /// retried with their idempotency key, and afterwards go to the new master; both nodes deliver every event once, in
    /// order, without a gap, their subscriptions re-made at the new master.
    @Test func aSlotMovedLiveKeepsWritesAndDeliveryGoing() async throws {
        try await withRedisCluster { cluster in
            try await withPartitionedEngine(cluster: cluster, partitions: 3) { nodeA, sinkA in
                try await withPartitionedEngine(cluster: cluster, partitions: 3) { nodeB, sinkB in
                    let machine = machinePerPartition(nodeA.map)[0]
                    let slot = ClusterSlot.of(key: tag(0, of: 3))
                    let source = try #require(try await nodeA.cluster?.slotMap().master(forSlot: slot)).port
                    let target = try #require(cluster.nodes.first { $0.port != source }).port
                    let count = 120
                    let refusals = Refusals()
                    let publisher = Self.publishUntilAcknowledged(
                        count, to: machine, through: nodeA, keyPrefix: "move", refusals: refusals, retryAfter: .milliseconds(20), pause: .milliseconds(5))
                    try await eventually("some events written before the move", timeout: .seconds(60)) { sinkA.count >= 20 }
                    let tokenBeforeMove = try #require(sinkA.received.last?.resumeToken)
                    let sequenceBeforeMove = NumberedEvents.sequences(sinkA.received, publisher: nil).last ?? -1
                    try await cluster.moveSlot(slot, from: source, to: target) {
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    #expect(try await publisher.value, "every write acknowledged within a minute: \(Set(refusals.reasons.suffix(5)))")
                    for sink in [sinkA, sinkB] {
                        try await eventually("all \(count) delivered", timeout: .seconds(60)) { sink.count >= count }
                        try await Task.sleep(for: .milliseconds(200))
                        #expect(NumberedEvents.sequences(sink.received, publisher: nil) == Array(0..<count), "every event once, in order")
                        #expect(sink.gaps.isEmpty)
                    }
                    let moved = try await cluster.connect(toNodeWithPort: target)
                    #expect(try await moved.send(["EXISTS", "\(tag(0, of: 3))resource:machine:\(machine)"]).integer == 1, "the state lives at the new master")
                    try await eventually("both nodes subscribed at the new master", timeout: .seconds(60)) {
                        let reply = try await moved.send(["PUBSUB", "SHARDNUMSUB", "\(tag(0, of: 3))statushub:events"]).orThrow()
                        return reply.array?.last?.integer == 2
                    }
                    await moved.close()
                    // A dashboard resuming at nodeB with a token from before the move: nodeB's history reads meet MOVED
                    // and are asked at the new master (they were answered `unavailable`, and the dashboard told `resync`).
                    let replayed = try #require(try await nodeB.history(afterToken: tokenBeforeMove, limit: 500))
                    #expect(NumberedEvents.sequences(replayed, publisher: nil) == Array((sequenceBeforeMove + 1)..<count), "what followed the token")
                    // nodeB wrote nothing during the move: its reads meet MOVED first, and are asked at the new master.
                    let latest = try #require(try await nodeB.latest(entityKey: "resource:machine:\(machine)"))
                    #expect(latest.jsonString.contains(#""sequence":\#(count - 1)"#))
                    let snapshot = try await nodeB.snapshot(matching: [try ChannelPattern(parsing: "resource-status")])
                    #expect(snapshot.events.contains { $0.id == latest.id })
                    // Writes to the partition after the move need no retry.
                    let after = try await nodeB.append([SampleEvents.validated(SampleEvents.machineStatus(machine, "breakdown"))])
                    #expect(after.count == 1)
                    print("slot move: \(refusals.reasons.count) writes answered 503 during the move: \(Set(refusals.reasons.map { $0.prefix(40) }))")
                }
            }
        }
    }

    /// One master killed (no replicas; the nodes run with `cluster-require-full-coverage no`): the partitions on the
    /// others keep taking and delivering events, the lost master's answer 503, and the node stays ready, naming them.
    @Test func aMasterDownLeavesTheOthersServing() async throws {
        try await withRedisCluster(extraArguments: ["--cluster-require-full-coverage", "no"]) { cluster in
            try await withPartitionedEngine(cluster: cluster, partitions: 6) { engine, sink in
                let machines = machinePerPartition(engine.map)
                let map = try await #require(engine.cluster).slotMap()
                let masterOf = (0..<6).map { map.master(forSlot: ClusterSlot.of(key: tag($0, of: 6)))!.port }
                let deadPort = masterOf[0]
                let alive = try #require((0..<6).first { masterOf[$0] != deadPort })
                await cluster.nodes.first { $0.port == deadPort }!.kill9()
                try await eventually("the dead master's partitions noticed", timeout: .seconds(60)) { engine.unreadyPartitions.contains(0) }
                #expect(engine.isReady)
                #expect(!engine.unreadyPartitions.contains(alive))
                await #expect(throws: EngineUnavailable.self) {
                    try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machines[0], "breakdown"))])
                }
                // The other masters go on serving (after the cluster marks the lost one failed, too).
                try await eventually("a live master's partition takes events", timeout: .seconds(60)) {
                    (try? await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machines[alive], "breakdown"))])) != nil
                }
                try await eventually("delivered", timeout: .seconds(60)) {
                    sink.received.contains { $0.entityKey == "resource:machine:\(machines[alive])" && $0.jsonString.contains("breakdown") }
                }
                #expect(engine.unavailableParts?.contains("partition") == true)
            }
        }
    }

    /// Partition 0's master given a replica, then killed under a publisher with `redis.min_replicas_acked: 1`: the
    /// cluster promotes the replica, the partition's connections re-read the slot map and follow it; the old master
    /// comes back as the new one's replica, so writes are confirmed again; every acknowledged event is delivered (in
    /// order) — none was acknowledged before a replica had it.
    @Test func aFailoverToTheReplicaLosesNothingAcknowledged() async throws {
        try await withRedisCluster { cluster in
            let probe = ClusterClient(seeds: [cluster.seeds[0]], commandTimeoutSeconds: 2, logger: Logger(label: "test-cluster"))
            let master = try await probe.master(forSlot: ClusterSlot.of(key: tag(0, of: 3))).port
            await probe.shutdown()
            let replica = try await cluster.addReplica(of: master)
            try await withPartitionedEngine(cluster: cluster, partitions: 3, configure: { $0.redis.minReplicasAcked = 1 }) { engine, sink in
                let machine = machinePerPartition(engine.map)[0]
                let count = 60
                let refusals = Refusals()
                let publisher = Self.publishUntilAcknowledged(
                    count, to: machine, through: engine, keyPrefix: "failover", refusals: refusals, retryAfter: .milliseconds(50), pause: .milliseconds(10))
                try await eventually("some events acknowledged before the kill", timeout: .seconds(60)) { sink.count >= 15 }
                let old = cluster.nodes.first { $0.port == master }!
                await old.kill9()
                try await eventually("the replica promoted and found", timeout: .seconds(60)) {
                    try await engine.cluster?.refresh().master(forSlot: ClusterSlot.of(key: tag(0, of: 3)))?.port == replica.port
                }
                // The promoted master has no replica until the old one comes back (as its replica): until then no
                // write is confirmed by one, and each is answered 503 `unknown` and resent with its key.
                try await old.restart()
                #expect(try await publisher.value, "the partition took writes again after the failover: \(Set(refusals.reasons.suffix(5)))")
                #expect(try await engine.cluster?.slotMap().master(forSlot: ClusterSlot.of(key: tag(0, of: 3)))?.port == replica.port)
                try await eventually("every acknowledged event delivered", timeout: .seconds(60)) {
                    Set(NumberedEvents.sequences(sink.received, publisher: nil)) == Set(0..<count)
                }
                var firstSeen: [Int] = []
                for sequence in NumberedEvents.sequences(sink.received, publisher: nil) where !firstSeen.contains(sequence) { firstSeen.append(sequence) }
                #expect(firstSeen == Array(0..<count), "in order")
                print("cluster failover: \(refusals.reasons.count) writes answered 503 while the replica was promoted; \(sink.count - count) delivered twice; gaps: \(sink.gaps.count)")
            }
        }
    }

    /// A hub on the cluster over HTTP and WebSocket: events carry resume tokens; with one master killed `/ready` stays
    /// 200 naming the lost partitions under `degraded`, and a batch spanning a lost and a live partition is answered
    /// 503 `unknown`, listing the live one's event under `stored`.
    @Test func aHubOnTheClusterAnswersPerPartition() async throws {
        try await withRedisCluster(extraArguments: ["--cluster-require-full-coverage", "no"]) { cluster in
            try await withHub(redisURL: nil, configure: { config in
                config.catalog = catalogWithoutTallies
                config.redis.cluster = [cluster.seeds[1].description]
                config.redis.partitions = 6
            }) { hub in
                let engine = try #require(hub.hub.engine as? PartitionedRedisEngine)
                let machines = machinePerPartition(engine.map)
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["resource-status"])
                _ = try await HTTP.post(port: hub.port, events: machines.map { SampleEvents.machineStatus($0) })
                for _ in machines {
                    let token = try #require(try await socket.next(op: "event")["position"]?.stringValue)
                    #expect(token.hasPrefix("r1.") && token.split(separator: ".").count == 7)
                }
                _ = await socket.close()

                let map = try await #require(engine.cluster).slotMap()
                let masterOf = (0..<6).map { map.master(forSlot: ClusterSlot.of(key: tag($0, of: 6)))!.port }
                let alive = try #require((0..<6).first { masterOf[$0] != masterOf[0] })
                await cluster.nodes.first { $0.port == masterOf[0] }!.kill9()
                try await eventually("the lost master's partitions noticed", timeout: .seconds(60)) { engine.unreadyPartitions.contains(0) }
                let ready = try await HTTP.get(port: hub.port, "/ready")
                #expect(ready.status == 200, "\(ready.text)")
                let reason = ready.json["degraded"]?.arrayValue?.first?["reason"]?.stringValue ?? ""
                #expect(reason.contains("partition") && reason.contains("cluster slot \(ClusterSlot.of(key: tag(0, of: 6)))"), "\(reason)")

                // Once the cluster has marked the lost master failed, the live masters take writes again.
                try await eventually("a live partition takes events", timeout: .seconds(60)) {
                    try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus(machines[alive], "breakdown")]).status == 202
                }
                let refused = try await HTTP.post(
                    port: hub.port, events: [SampleEvents.machineStatus(machines[0], "breakdown"), SampleEvents.machineStatus(machines[alive], "idle")])
                #expect(refused.status == 503)
                let answer = try #require(refused.json["error"])
                #expect(answer["outcome"] == .string("unknown"))
                #expect(answer["stored"]?.arrayValue?.map { $0["index"] } == [.number(1)])
            }
        }
    }
}

extension ClusterEngineTests {
    /// A careful MES: `count` events numbered by `sequence` for `machine`, one at a time, `pause` apart, each with its
    /// own idempotency key and resent after `retryAfter` while it is refused (each refusal noted), for at most 60 s.
    /// The task answers whether every event was acknowledged within them.
    static func publishUntilAcknowledged(
        _ count: Int, to machine: String, through engine: PartitionedRedisEngine, keyPrefix: String, refusals: Refusals,
        retryAfter: Duration, pause: Duration
    ) -> Task<Bool, any Error> {
        let giveUp = ContinuousClock.now + .seconds(60)
        return Task {
            for sequence in 0..<count {
                let event = SampleEvents.validated(SampleEvents.machineStatus(machine, extra: #","sequence":\#(sequence)"#))
                    .withIdempotencyKey("\(keyPrefix)-\(sequence)")
                while ContinuousClock.now < giveUp {
                    do {
                        _ = try await engine.append([event])
                        break
                    } catch let unavailable as EngineUnavailable {
                        refusals.note(unavailable.reason)
                        try await Task.sleep(for: retryAfter)
                    }
                }
                try await Task.sleep(for: pause)
            }
            return ContinuousClock.now < giveUp
        }
    }
}

/// The reasons of the writes a test saw refused.
final class Refusals: Sendable {
    private let list = Mutex<[String]>([])
    func note(_ reason: String) { list.withLock { $0.append(reason) } }
    var reasons: [String] { list.withLock { $0 } }
}

/// Partition `partition`'s hash tag on a cluster, among `count` partitions (`PartitionMap` picks tags whose slots
/// spread evenly, so partition 0's need not be `{p0}`).
private func tag(_ partition: Int, of count: Int) -> String {
    PartitionMap(count: count, forCluster: true).hashTag(partition)
}
