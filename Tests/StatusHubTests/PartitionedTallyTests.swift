import Foundation
import StatusHubCore
import StatusHubRedis
import Testing

/// Counters and active sets on three independent redis-servers: each partition keeps its share of a line's count
/// under its own tagged keys, and what nodes announce and read is the sum (`CounterShares`). `TallyTests` runs the
/// tally behaviour itself on three shards too.
@Suite("Counters and active sets across partitions")
struct PartitionedTallyTests {
    /// Two nodes on three shards, a line's six machines two per partition, posted through both nodes at once: both
    /// nodes end announcing the same sum, which their snapshots, `latest` and a resume from before read too; every
    /// partition's share is under its own tagged key, with the counter's TTL, and an operator's allocations in three
    /// partitions are one set.
    @Test func twoNodesAnnounceAndReadTheSameSum() async throws {
        try await withShards(3) { shards in
            let urls = shards.map(\.url)
            try await withPartitionedEngine(shards: urls, partitions: 3, configure: Self.withTallies) { nodeA, sinkA in
                try await withPartitionedEngine(shards: urls, partitions: 3, configure: Self.withTallies) { nodeB, sinkB in
                    var before: String?
                    try await nodeB.snapshot(matching: [try ChannelPattern(parsing: "line:Line-5:*")], chunkSize: 100) { chunk in
                        before = chunk.resumeToken ?? before
                    }
                    let machines = Self.machines(perPartition: 2, map: nodeA.map, line: "Line-5")
                    #expect(Set(machines.map { nodeA.map.partition(ofEntityKey: "resource:machine:\($0)") }).count == 3)
                    // Everything running, then a third idle again: 4 remain, counted in every partition.
                    let states = machines.map { (id: $0, status: "running") }
                        + machines.enumerated().filter { $0.offset % 3 == 0 }.map { (id: $0.element, status: "idle") }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for (index, node) in [nodeA, nodeB].enumerated() {
                            let mine = states.enumerated().filter { $0.offset % 2 == index }.map(\.element)
                            group.addTask {
                                for state in mine {
                                    _ = try await node.append([SampleEvents.validated(
                                        SampleEvents.machineStatus(state.id, state.status, line: "Line-5"))])
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let running = 4
                    for sink in [sinkA, sinkB] {
                        try await eventually("the node announces the sum") { Self.lastCount(in: sink, line: "Line-5") == running }
                    }

                    let entityKey = "stats:event:Line-5.machines_running"
                    var shareSum = 0
                    for partition in nodeA.partitions.indices {
                        let admin = try await RedisConnection.connect(to: RedisURL(parsing: urls[nodeA.placement[partition]]))
                        let key = "{p\(partition)}stats:line:Line-5:machines_running"
                        let share = Int(try await admin.send(["GET", key]).orThrow().text ?? "0") ?? -1
                        shareSum += share
                        #expect(share <= 2, "partition \(partition)")
                        let ttl = try await admin.send(["TTL", key]).orThrow().integer ?? -2
                        #expect(ttl > 3000 && ttl <= 3600, "\(key) expires with the counter's TTL")
                        #expect(try await admin.send(["EXISTS", "stats:line:Line-5:machines_running"]).orThrow().integer == 0)
                        #expect(try await admin.send(["EXISTS", "{p\(partition)}" + entityKey]).orThrow().integer == 1)
                        await admin.close()
                    }
                    #expect(shareSum == running)

                    for node in [nodeA, nodeB] {
                        // Two patterns that both read the counter (its type's index and its line's): still one state.
                        let snapshot = try await node.snapshot(matching: [try ChannelPattern(parsing: "line:Line-5:*"), try ChannelPattern(parsing: "counters")])
                        let counters = snapshot.events.filter(Self.isLineCounter("Line-5"))
                        #expect(counters.count == 1, "one state per counter, not one per partition")
                        #expect(counters.first.flatMap(Self.value) == running)
                        let latest = try await node.latest(entityKey: entityKey)
                        #expect(latest.flatMap(Self.value) == running)
                    }

                    // A node started now learns the shares from the partitions' counter states: its first announcement,
                    // one machine of a partition going idle, is the whole line's count.
                    try await withPartitionedEngine(shards: urls, partitions: 3, configure: Self.withTallies) { nodeC, sinkC in
                        let stillRunning = machines.enumerated().filter { $0.offset % 3 != 0 }.map(\.element)
                        _ = try await nodeC.append([SampleEvents.validated(SampleEvents.machineStatus(stillRunning[0], "idle", line: "Line-5"))])
                        try await eventually("the new node announces the sum") { Self.lastCount(in: sinkC, line: "Line-5") != nil }
                        #expect(Self.lastCount(in: sinkC, line: "Line-5") == running - 1)
                        try await eventually("the others agree") {
                            Self.lastCount(in: sinkA, line: "Line-5") == running - 1 && Self.lastCount(in: sinkB, line: "Line-5") == running - 1
                        }
                        _ = try await nodeC.append([SampleEvents.validated(SampleEvents.machineStatus(stillRunning[0], "running", line: "Line-5"))])
                        for sink in [sinkA, sinkB, sinkC] {
                            try await eventually("back to the sum") { Self.lastCount(in: sink, line: "Line-5") == running }
                        }
                    }

                    // A resume from before: each partition's last announcement replayed with the others' latest shares.
                    let token = try #require(before)
                    let replayed = try #require(try await nodeB.history(afterToken: token, limit: 1000))
                    let lastPerPartition = Dictionary(grouping: replayed.filter(Self.isLineCounter("Line-5")), by: \.partition).values.compactMap(\.last)
                    #expect(lastPerPartition.count == 3)
                    #expect(lastPerPartition.allSatisfy { Self.value(of: $0) == running }, "\(lastPerPartition.map(\.jsonString))")

                    // One operator's allocations, one per partition: one set, the union of the partitions' shares.
                    let allocations = Self.ids(prefix: "A-", perPartition: 1, map: nodeA.map, keyPrefix: "allocation:")
                    for id in allocations {
                        _ = try await nodeB.append([SampleEvents.validated(
                            TallyTests.allocation(id, "created", operator: "O-9", machine: nil, workOrder: "WO-9", at: 1))])
                    }
                    for node in [nodeA, nodeB] {
                        #expect(try await node.activeSet(key: "allocation:operator:O-9:active") == allocations.sorted())
                    }
                }
            }
        }
    }

    /// A partition's Redis restarted without its data: the node hears the gap, forgets that partition's shares and
    /// reads them again (none), so the next announcement and every read sum the other partitions only; the
    /// restarted partition's machines count again once they report.
    @Test func aPartitionRestartedEmptyLosesItsShare() async throws {
        try await withShards(3) { shards in
            let urls = shards.map(\.url)
            try await withPartitionedEngine(shards: urls, partitions: 6, configure: Self.withTallies) { engine, sink in
                let machines = Self.machines(perPartition: 1, map: engine.map, line: "Line-6")
                for machine in machines {
                    _ = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machine, "running", line: "Line-6"))])
                }
                try await eventually("six running") { Self.lastCount(in: sink, line: "Line-6") == 6 }

                let deadShard = engine.placement[0]
                let lost = machines.filter { engine.placement[engine.map.partition(ofEntityKey: "resource:machine:\($0)")] == deadShard }
                let kept = machines.filter { !lost.contains($0) }
                try #require(!kept.isEmpty, "the ring put every partition on one shard")
                await shards[deadShard].kill9()
                // While it is down, a read of an active set names the partition it could not read (it said only "not
                // connected to Redis").
                try await eventually("the dead shard noticed") { engine.unreadyPartitions.contains(0) }
                await #expect {
                    _ = try await engine.activeSet(key: "allocation:operator:O-9:active")
                } throws: { error in
                    (error as? EngineUnavailable)?.reason.hasPrefix("partition ") == true
                }
                try await shards[deadShard].restart()
                // Each partition of the restarted shard reports its gap (clients resync) once its subscriber is back.
                try await eventually("the gaps heard", timeout: .seconds(20)) { sink.gaps.count == lost.count }
                try await eventually("every partition back", timeout: .seconds(20)) { engine.unreadyPartitions.isEmpty }

                _ = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(kept[0], "idle", line: "Line-6"))])
                try await eventually("the sum without the lost partition") { Self.lastCount(in: sink, line: "Line-6") == kept.count - 1 }
                let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "line:Line-6:*")])
                #expect(snapshot.events.filter(Self.isLineCounter("Line-6")).first.flatMap(Self.value) == kept.count - 1)

                for machine in lost {
                    _ = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus(machine, "running", line: "Line-6"))])
                }
                try await eventually("the lost machines counted again") { Self.lastCount(in: sink, line: "Line-6") == machines.count - 1 }
                let again = try await engine.snapshot(matching: [try ChannelPattern(parsing: "line:Line-6:*")])
                #expect(again.events.filter(Self.isLineCounter("Line-6")).first.flatMap(Self.value) == machines.count - 1)
            }
        }
    }

    static func withTallies(_ config: inout HubConfig) { config.catalog = HubConfig().catalog }

    /// `perPartition` machine ids of each partition.
    static func machines(perPartition: Int, map: PartitionMap, line: String) -> [String] {
        ids(prefix: "\(line)-M-", perPartition: perPartition, map: map, keyPrefix: "resource:machine:")
    }

    static func ids(prefix: String, perPartition: Int, map: PartitionMap, keyPrefix: String) -> [String] {
        var found: [Int: [String]] = [:]
        var number = 0
        while found.values.map(\.count).reduce(0, +) < perPartition * map.count {
            let id = "\(prefix)\(number)"
            let partition = map.partition(ofEntityKey: keyPrefix + id)
            if found[partition, default: []].count < perPartition { found[partition, default: []].append(id) }
            number += 1
        }
        return (0..<map.count).flatMap { found[$0]! }
    }

    static func isLineCounter(_ line: String) -> (StoredEvent) -> Bool {
        { $0.jsonString.contains(#""event_type":"counter_changed""#) && $0.jsonString.contains(#""entity_id":"\#(line).machines_running""#) }
    }

    static func value(of event: StoredEvent) -> Int? {
        guard let parsed = try? JSONValue.parse(event.json), let value = parsed["data"]?["value"]?.numberValue else { return nil }
        return Int(value)
    }

    static func lastCount(in sink: CollectingSink, line: String) -> Int? {
        sink.received.last(where: isLineCounter(line)).flatMap(value)
    }
}
