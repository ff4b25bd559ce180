import Foundation
import Logging
import StatusHubCore
@testable import StatusHubRedis
import Testing

/// The partitioned Redis engine on real redis-servers: its key layout, its configuration's refusals, and what it
/// does while one of three independent shards is down and after it comes back. The engine contract suite runs
/// against it too (`EngineContractTests`, `threeShards`).
@Suite("Partitioned Redis engine")
struct PartitionedEngineTests {
    @Test func everyKeyAndChannelCarriesItsPartitionsTag() async throws {
        try await withRedisServer { redis in
            try await withPartitionedEngine(shards: [redis.url], partitions: 3, asURL: true) { engine, sink in
                let machines = machinePerPartition(engine.map)
                _ = try await engine.append(machines.map { SampleEvents.validated(SampleEvents.machineStatus($0)) })
                _ = try await sink.waitFor(count: 3)
                let admin = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                let keys = Set(try await admin.send(["KEYS", "*"]).orThrow().array?.compactMap(\.text) ?? [])
                for partition in 0..<3 {
                    #expect(keys.contains("{p\(partition)}statushub:history"))
                    #expect(keys.contains("{p\(partition)}statushub:history:last-states"))
                }
                #expect(!keys.contains("statushub:history"), "one partition's names are today's; three partitions' are tagged")
                #expect(!keys.contains { $0.contains(":idem:") }, "a request stored in every partition it spans writes no idempotency key")
                let channels = try await admin.send(["PUBSUB", "CHANNELS", "*statushub:events"]).orThrow().array?.compactMap(\.text) ?? []
                #expect(Set(channels) == ["{p0}statushub:events", "{p1}statushub:events", "{p2}statushub:events"])
                // Each partition's snapshot index holds its own entities only, so the snapshot names each once.
                let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "resource-status")])
                #expect(snapshot.events.map(\.entityKey).sorted() == machines.map { "resource:machine:\($0)" }.sorted())
                // Chunks fill up across partitions: three states in chunks of two are two chunks, the second the last.
                var chunks: [SnapshotChunk] = []
                try await engine.snapshot(matching: [try ChannelPattern(parsing: "resource-status")], chunkSize: 2) { chunks.append($0) }
                #expect(chunks.map(\.events.count) == [2, 1])
                #expect(chunks.map(\.isLast) == [false, true])
                await admin.close()
            }
        }
    }

    @Test func configurationMistakesAreNamed() throws {
        var config = HubConfig()
        config.redis.shards = ["redis://127.0.0.1:7001", "redis://127.0.0.1:7001/0"]
        config.catalog = catalogWithoutTallies
        #expect { try PartitionedRedisEngine(config: config) } throws: { error in
            "\(error)".contains("redis.shards[1] names the same server as redis.shards[0]")
        }
        config.redis.shards = ["redis://127.0.0.1:7001", "redis://127.0.0.1:notaport"]
        #expect { try PartitionedRedisEngine(config: config) } throws: { error in "\(error)".contains("redis.shards[1]") }
        // A catalog with counters and active sets runs partitioned (each partition keeps its share; `PartitionedTallyTests`).
        config.redis.shards = ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        config.catalog = HubConfig().catalog
        #expect(throws: Never.self) { try PartitionedRedisEngine(config: config) }
    }

    /// One of three shards killed: the others keep storing and delivering; a request spanning the dead shard and a
    /// live one is answered 503 with a resend key per event while the live shard's event is stored; after the shard
    /// comes back (empty: no persistence), the node's subscribers report the gap (clients resync) and the resend
    /// stores the lost event once and answers the stored one as a duplicate.
    @Test func oneShardDownLeavesTheOthersServing() async throws {
        try await withShards(3) { shards in
            try await withPartitionedEngine(shards: shards.map(\.url), partitions: 6) { engine, sink in
                let machines = machinePerPartition(engine.map)
                let shardOf = engine.placement
                let deadShard = shardOf[0]
                let dead = machines[0]
                let aliveIndex = try #require(machines.indices.first { shardOf[$0] != deadShard })
                let alive = machines[aliveIndex]
                _ = try await engine.append(machines.map { SampleEvents.validated(SampleEvents.machineStatus($0, "running")) })
                _ = try await sink.waitFor(count: machines.count)

                await shards[deadShard].kill9()
                try await eventually("the dead shard's partitions noticed") { engine.unreadyPartitions.contains(0) }
                #expect(engine.isReady, "a node with one shard down still serves the others")

                let spanning = [
                    SampleEvents.validated(SampleEvents.machineStatus(dead, "breakdown")),
                    SampleEvents.validated(SampleEvents.machineStatus(alive, "breakdown")),
                ]
                var resendKeys: [String?] = []
                do {
                    _ = try await engine.append(spanning)
                    Issue.record("a request touching the dead shard was acknowledged")
                } catch let unavailable as EngineUnavailable {
                    #expect(unavailable.reason.contains("partition 0"))
                    guard case .unknown(let keys) = unavailable.outcome else {
                        Issue.record("outcome \(unavailable.outcome), not unknown with resend keys")
                        return
                    }
                    resendKeys = keys
                }
                #expect(resendKeys.count == 2 && resendKeys.allSatisfy { $0?.hasPrefix("hub:") == true })
                // The live shard's event was stored and delivered.
                let stored = try #require(try await engine.latest(entityKey: "resource:machine:\(alive)"))
                #expect(stored.jsonString.contains("breakdown"))
                try await eventually("the live partition's event delivered") {
                    sink.received.contains { $0.entityKey == "resource:machine:\(alive)" && $0.jsonString.contains("breakdown") }
                }
                // A request for the live shards alone is stored; one for the dead shard alone is refused, unstored.
                _ = try await engine.append([SampleEvents.validated(SampleEvents.alert(alive))])
                await #expect(throws: EngineUnavailable.self) {
                    try await engine.append([SampleEvents.validated(SampleEvents.alert(dead))])
                }

                let gapsBefore = sink.gaps.count
                try await shards[deadShard].restart()
                let readiness = try await Self.readinessAfterRestart(engine, gapReported: { sink.gaps.count > gapsBefore })
                #expect(readiness.readyAt != nil, "every partition back")
                #expect(readiness.gapAt != nil, "the lost history reported as a gap")
                #expect(!readiness.readyBeforeGap, "no partition reads ready before its subscriber found the gap (its counters are forgotten then)")
                #expect(readiness.unreadyAgain.isEmpty, "once every partition read ready, none went back: \(readiness.unreadyAgain)")

                let resent = zip(spanning, resendKeys).map { event, key in event.withIdempotencyKey(key!) }
                let answers = try await engine.append(resent)
                #expect(answers[0].duplicate == false, "the dead shard's event was never stored: the resend stores it")
                #expect(answers[1] == Appended(id: stored.id, duplicate: true), "the live shard's event is not stored twice")
                try await eventually("the resent event delivered") {
                    sink.received.contains { $0.entityKey == "resource:machine:\(dead)" && $0.jsonString.contains("breakdown") }
                }
                #expect(sink.received.filter { $0.entityKey == "resource:machine:\(alive)" && $0.jsonString.contains("breakdown") }.count == 1)
            }
        }
    }
}

extension PartitionedEngineTests {
    struct ReadinessAfterRestart {
        var readyAt: ContinuousClock.Instant?
        var gapAt: ContinuousClock.Instant?
        var readyBeforeGap = false
        var unreadyAgain: [Int] = []
    }

    /// Samples `engine`'s readiness every millisecond after a shard restarted empty, until every partition has been
    /// ready for a second after the gap was reported (or 20 s): whether a partition read ready before the gap, and
    /// whether one went back to unready after all had read ready (a `/ready` that flaps).
    static func readinessAfterRestart(
        _ engine: PartitionedRedisEngine, gapReported: () -> Bool
    ) async throws -> ReadinessAfterRestart {
        var seen = ReadinessAfterRestart()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let unready = engine.unreadyPartitions
            if seen.gapAt == nil, gapReported() { seen.gapAt = .now }
            if unready.isEmpty {
                if seen.gapAt == nil { seen.readyBeforeGap = true }
                if seen.readyAt == nil { seen.readyAt = .now }
            } else if seen.readyAt != nil {
                seen.unreadyAgain = unready
                return seen
            }
            if let ready = seen.readyAt, seen.gapAt != nil, ready.duration(to: .now) > .seconds(1) { return seen }
            try await Task.sleep(for: .milliseconds(1))
        }
        return seen
    }

    /// The stale notices `sink` got for `key` after its last state.
    static func staleAfterLastState(_ sink: CollectingSink, _ key: String) -> Int {
        let events = sink.received.filter { $0.entityKey == key }
        let lastState = events.lastIndex { !$0.isStale } ?? -1
        return events[(lastState + 1)...].filter(\.isStale).count
    }

    /// The same through HTTP: with one shard down, a batch spanning it and a live shard is answered 503 `unknown`,
    /// listing the live shard's event under `stored` with its id and a resend key for both; `/ready` stays 200; once
    /// the shard is back, the batch resent as told stores the lost event and answers the stored one as a duplicate.
    @Test func ingestAnswersPerPartitionWhileAShardIsDown() async throws {
        try await Self.withHubOnThreeShards { shards, hub, engine in
            let machines = machinePerPartition(engine.map)
            let deadShard = engine.placement[0]
            let aliveIndex = try #require(machines.indices.first { engine.placement[$0] != deadShard })
            let batch = [SampleEvents.machineStatus(machines[0], "breakdown"), SampleEvents.machineStatus(machines[aliveIndex], "breakdown")]

            await shards[deadShard].kill9()
            try await eventually("the dead shard noticed") { engine.unreadyPartitions.contains(0) }
            let ready = try await HTTP.get(port: hub.port, "/ready")
            #expect(ready.status == 200)
            let degraded = ready.json["degraded"]?.arrayValue?.first
            #expect(degraded?["field"] == .string("engine"))
            #expect(degraded?["reason"]?.stringValue?.contains("partition") == true)
            #expect(degraded?["reason"]?.stringValue?.contains(shards[deadShard].url) == true)
            // A read spanning every partition is refused before its status (it was 200 and cut off after `[`).
            let states = try await HTTP.get(port: hub.port, "/v1/state?pattern=machine:*")
            #expect(states.status == 503, "\(states.text)")
            #expect(states.json["error"]?["field"] == .string("engine"))
            #expect(states.json["error"]?["reason"]?.stringValue?.contains("partition") == true, "\(states.text)")

            let refused = try await HTTP.post(port: hub.port, events: batch)
            #expect(refused.status == 503)
            #expect(refused.headers["retry-after"] != nil)
            let answer = try #require(refused.json["error"])
            #expect(answer["outcome"] == .string("unknown"))
            #expect(answer["reason"]?.stringValue?.contains("partition 0") == true)
            let stored = answer["stored"]?.arrayValue ?? []
            #expect(stored.count == 1)
            #expect(stored.first?["index"] == .number(1))
            let storedID = try #require(stored.first?["event_id"]?.stringValue)
            let resend = answer["resend"]?.arrayValue ?? []
            #expect(resend.map { $0["index"] } == [.number(0), .number(1)])
            let keys = resend.compactMap { $0["idempotency_key"]?.stringValue }
            #expect(keys.count == 2)

            try await shards[deadShard].restart()
            try await eventually("every partition back", timeout: .seconds(20)) { engine.unreadyPartitions.isEmpty }
            // Ready once, ready for good: a partition reads ready only after its subscriber caught up (found the
            // gap) and its counters were read again.
            let readyAgain = try await HTTP.get(port: hub.port, "/ready")
            #expect(readyAgain.json["degraded"] == nil, "\(readyAgain.text); unready now: \(engine.unreadyPartitions)")
            #expect(try await HTTP.get(port: hub.port, "/v1/state?pattern=machine:*").status == 200)
            let resent = zip(batch, keys).map { event, key in
                event.replacingOccurrences(of: #"{"event_type""#, with: #"{"idempotency_key":"\#(key)","event_type""#)
            }
            let accepted = try await HTTP.post(port: hub.port, events: resent)
            #expect(accepted.status == 200 || accepted.status == 202)
            let results = accepted.json["accepted"]?.arrayValue ?? []
            #expect(results.count == 2)
            #expect(results.first { $0["index"] == .number(1) }?["event_id"]?.stringValue == storedID)
            #expect(results.first { $0["index"] == .number(1) }?["duplicate"] == .bool(true))
            #expect(results.first { $0["index"] == .number(0) }?["duplicate"] == nil)
        }
    }
}

extension PartitionedEngineTests {
    /// One shard hung (SIGSTOP: its sockets open, nothing answered) under a node whose command timeout is 10 s:
    /// `/ready` still answers at once, 200, the node serving the other shards. Its partitions were probed one after
    /// another, each waiting out the command timeout, so `/ready` took 20 s here (1–7 s with the default timeout:
    /// past a load balancer's check, on every node, over one shard). The bound is a liveness bound.
    @Test func aHungShardDoesNotHoldReady() async throws {
        try await Self.withHubOnThreeShards { shards, hub, engine in
            let hungShard = engine.placement[0]
            shards[hungShard].pause()
            defer { shards[hungShard].resume() }
            let start = ContinuousClock.now
            let ready = try await HTTP.get(port: hub.port, "/ready")
            let took = ContinuousClock.now - start
            #expect(ready.status == 200, "\(ready.text)")
            #expect(took < .seconds(5), "/ready took \(took) with one of three shards hung")
        }
    }

    /// A hub on three shards holding six partitions (no tallies), with the shards and its engine.
    static func withHubOnThreeShards(
        _ body: ([RedisServer], RunningHub, PartitionedRedisEngine) async throws -> Void
    ) async throws {
        try await withShards(3) { shards in
            try await withHub(redisURL: nil, configure: { config in
                config.catalog = catalogWithoutTallies
                config.redis.shards = shards.map(\.url)
                config.redis.partitions = 6
            }) { hub in
                try await body(shards, hub, try #require(hub.hub.engine as? PartitionedRedisEngine))
            }
        }
    }

    /// The probe's deadline: a probe that has not answered by then is a refusal; one that answers first is its answer.
    @Test func aProbeIsCutAtItsDeadline() async {
        let hung = await PartitionedRedisEngine.firstOf({ try? await Task.sleep(for: .seconds(30)); return nil }, orAfter: .milliseconds(20))
        #expect(hung == "Redis did not answer a write within 0.02 seconds")
        let prompt = await PartitionedRedisEngine.firstOf({ "Redis refuses writes: OOM" }, orAfter: .seconds(30))
        #expect(prompt == "Redis refuses writes: OOM")
        let fine = await PartitionedRedisEngine.firstOf({ nil }, orAfter: .seconds(30))
        #expect(fine == nil)
    }
}

extension PartitionedEngineTests {
    /// Two nodes on the same three shards: each delivers every partition's events, whichever node took them, in each
    /// entity's order under four publishers (two per node); an expired state is announced stale once across both.
    @Test func twoNodesShareEveryPartition() async throws {
        try await withShards(3) { shards in
            let urls = shards.map(\.url)
            let ttl: (inout HubConfig) -> Void = { $0.cacheTTL.machine = 1 }
            try await withPartitionedEngine(shards: urls, partitions: 3, configure: ttl) { nodeA, sinkA in
                try await withPartitionedEngine(shards: urls, partitions: 3, configure: ttl) { nodeB, sinkB in
                    let machines = machinePerPartition(nodeA.map)
                    let perPublisher = 40
                    // One machine per partition; publishers 2 and 3 (one on each node) share the third.
                    try await NumberedEvents.publishFromFour(to: (nodeA, nodeB), machines: machines, perPublisher: perPublisher)
                    let total = 4 * perPublisher
                    for sink in [sinkA, sinkB] {
                        // Counting stale notices too let a starved run (a state expiring mid-run) stop waiting short.
                        try await eventually("\(total) numbered events", timeout: .seconds(30)) {
                            sink.received.filter { !$0.isStale }.count >= total
                        }
                        let received = sink.received
                        #expect(received.filter { !$0.isStale }.count == total)
                        for publisher in 0..<4 {
                            // A stale notice carries the last state (and its publisher) too: a slow machine may see one mid-run.
                            #expect(NumberedEvents.sequences(received, publisher: publisher) == Array(0..<perPublisher), "publisher \(publisher)'s events in its order")
                        }
                    }
                    // Every machine's last state expires (ttl 1 s): one status_stale after it, on both nodes alike. The wait
                    // is for a notice after the last state: a starved run can also expire a state mid-run, and that earlier
                    // notice alone must not end the wait.
                    for machine in Set(machines) {
                        let key = "resource:machine:\(machine)"
                        try await eventually("\(machine)'s last state announced stale", timeout: .seconds(20)) {
                            Self.staleAfterLastState(sinkA, key) > 0 && Self.staleAfterLastState(sinkB, key) > 0
                        }
                    }
                    try await Task.sleep(for: .seconds(1))
                    // Once per expiry: the last state's expiry once on each node, and every earlier one (a loaded machine
                    // may leave a second between two events of a machine) on both alike.
                    for machine in Set(machines) {
                        let key = "resource:machine:\(machine)"
                        #expect(Self.staleAfterLastState(sinkA, key) == 1)
                        #expect(Self.staleAfterLastState(sinkB, key) == 1)
                        #expect(sinkA.stale(for: key).count == sinkB.stale(for: key).count)
                    }
                }
            }
        }
    }
}

extension PartitionedEngineTests {
    /// Two nodes; one shard's pub/sub connections killed while events are written to its partition, then the shard
    /// itself killed and restarted with its data (AOF, fsync always): both times both nodes catch up from the
    /// partition's history — every event once, in order, no gap reported.
    @Test func subscribersCatchUpWhenAShardComesBackWithItsData() async throws {
        try await withShards(3, extraArguments: ["--appendonly", "yes", "--appendfsync", "always"]) { shards in
            let urls = shards.map(\.url)
            try await withPartitionedEngine(shards: urls, partitions: 3) { nodeA, sinkA in
                try await withPartitionedEngine(shards: urls, partitions: 3) { nodeB, sinkB in
                    let machine = machinePerPartition(nodeA.map)[0]
                    let shard = shards[nodeA.placement[0]]
                    var sent = 0
                    func publish(_ count: Int, through node: PartitionedRedisEngine) async throws {
                        for _ in 0..<count {
                            let json = SampleEvents.machineStatus(machine, extra: #","sequence":\#(sent)"#)
                            _ = try await node.append([SampleEvents.validated(json)])
                            sent += 1
                        }
                    }
                    try await publish(5, through: nodeA)
                    let admin = try await RedisConnection.connect(to: RedisURL(parsing: shard.url))
                    _ = try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).orThrow()
                    await admin.close()
                    try await publish(20, through: nodeB)

                    await shard.kill9()
                    try await eventually("the shard's partition noticed") { nodeA.unreadyPartitions.contains(0) }
                    try await shard.restart()
                    try await eventually("the shard back", timeout: .seconds(20)) {
                        nodeA.unreadyPartitions.isEmpty && nodeB.unreadyPartitions.isEmpty
                    }
                    try await publish(5, through: nodeA)

                    for sink in [sinkA, sinkB] {
                        try await eventually("all \(sent) delivered") { sink.received.count >= sent }
                        let sequences = sink.received.map { $0.jsonString.components(separatedBy: #""sequence":"#)[1].prefix { $0.isNumber } }
                            .compactMap { Int($0) }
                        #expect(sequences == Array(0..<sent), "every event once, in order")
                        #expect(sink.gaps.isEmpty, "the history was kept: caught up, no resync")
                    }
                }
            }
        }
    }
}

extension PartitionedEngineTests {
    /// Resume across partitions and nodes over WebSocket: every event frame carries the token that resumes after it;
    /// a subscriber that left node A resumes at node B with its last token and gets exactly what it missed, from
    /// every partition, then live with nothing repeated. A token for another partition count is a gap (`resync`).
    /// Over SSE the token is each event's `id:`, and `Last-Event-ID` resumes the same way.
    @Test func resumeTokenCarriesASubscriberAcrossPartitionsAndNodes() async throws {
        try await withShards(3) { shards in
            let configure: (inout HubConfig) -> Void = { config in
                config.catalog = catalogWithoutTallies
                config.redis.shards = shards.map(\.url)
                config.redis.partitions = 3
            }
            try await withHub(redisURL: nil, configure: configure) { nodeA in
                try await withHub(redisURL: nil, configure: configure) { nodeB in
                    let engine = try #require(nodeA.hub.engine as? PartitionedRedisEngine)
                    let machines = machinePerPartition(engine.map)
                    let first = try await TestSocket(port: nodeA.port)
                    try await first.subscribe(["resource-status"])
                    _ = try await HTTP.post(port: nodeA.port, events: machines.map { SampleEvents.machineStatus($0, "running") })
                    var lastToken: String?
                    for _ in machines {
                        let message = try await first.next(op: "event")
                        let token = try #require(message["position"]?.stringValue)
                        #expect(token.hasPrefix("r1.") && token.split(separator: ".").count == 4)
                        lastToken = token
                    }
                    _ = await first.close()

                    // While it is away, through the other node: a state per partition and an alert it does not match.
                    _ = try await HTTP.post(
                        port: nodeB.port,
                        events: machines.map { SampleEvents.machineStatus($0, "breakdown") } + [SampleEvents.alert(machines[0])])
                    let again = try await TestSocket(port: nodeB.port)
                    again.send(#"{"op":"subscribe","id":"r","channels":["resource-status"],"since":"\#(lastToken!)"}"#)
                    #expect(try await again.next()["op"] == .string("subscribed"))
                    var replayed: [String] = []
                    for _ in machines {
                        let message = try await again.next(op: "event")
                        #expect(message["position"]?.stringValue?.hasPrefix("r1.") == true)
                        let event = try #require(message["event"]?.objectValue)
                        replayed.append("\(event["entity_id"]?.stringValue ?? "?") \(event["data"]?["current_status"]?.stringValue ?? "?")")
                    }
                    #expect(replayed.sorted() == machines.map { "\($0) breakdown" }.sorted(), "what was missed, from every partition, once")
                    _ = try await HTTP.post(port: nodeA.port, event: SampleEvents.machineStatus(machines[1], "idle"))
                    #expect(try await again.nextEvent()["entity_id"] == .string(machines[1]))
                    #expect(await again.drain(for: .milliseconds(300)).isEmpty, "nothing repeated at the seam")

                    again.send(#"{"op":"subscribe","id":"g","channels":["alerts"],"since":"r1.0-0"}"#)
                    #expect(try await again.next(op: "resync")["reason"] == .string("history_gap"))
                    _ = await again.close()

                    // A snapshot's last part carries the token that covers it: resuming from it gets what followed.
                    let watcher = try await TestSocket(port: nodeA.port)
                    watcher.send(#"{"op":"subscribe","id":"w","channels":["resource-status"],"snapshot":true}"#)
                    _ = try await watcher.next(op: "subscribed")
                    var snapshotToken: String?
                    while snapshotToken == nil {
                        let part = try await watcher.next(op: "snapshot")
                        if part["more"] == nil { snapshotToken = part["position"]?.stringValue }
                        else { #expect(part["position"] == nil, "only the last part knows every partition's position") }
                    }
                    #expect(snapshotToken?.hasPrefix("r1.") == true)
                    _ = await watcher.close()
                    _ = try await HTTP.post(port: nodeB.port, event: SampleEvents.machineStatus(machines[0], "idle"))
                    let afterSnapshot = try await TestSocket(port: nodeB.port)
                    afterSnapshot.send(#"{"op":"subscribe","id":"a","channels":["resource-status"],"since":"\#(snapshotToken!)"}"#)
                    _ = try await afterSnapshot.next(op: "subscribed")
                    let followed = try await afterSnapshot.nextEvent()
                    #expect(followed["entity_id"] == .string(machines[0]))
                    #expect(followed["data"]?["current_status"] == .string("idle"))
                    #expect(await afterSnapshot.drain(for: .milliseconds(300)).isEmpty)
                    _ = await afterSnapshot.close()

                    // SSE: each event's `id:` is its token, so a browser's EventSource resumes by itself (Last-Event-ID).
                    let stream = try await SSEClient(port: nodeA.port, path: "/v1/sse?channels=resource-status")
                    _ = try await stream.next(op: "subscribed")
                    _ = try await HTTP.post(port: nodeA.port, event: SampleEvents.machineStatus(machines[2], "idle"))
                    let seen = try await stream.next(op: "event")
                    let lastEventID = try #require(seen.id)
                    #expect(lastEventID.hasPrefix("r1."))
                    stream.close()
                    _ = try await HTTP.post(port: nodeB.port, events: [
                        SampleEvents.machineStatus(machines[0], "running"), SampleEvents.machineStatus(machines[2], "running"),
                    ])
                    let resumed = try await SSEClient(
                        port: nodeB.port, path: "/v1/sse?channels=resource-status", headers: ["Last-Event-ID": lastEventID])
                    _ = try await resumed.next(op: "subscribed")
                    var missed: [String] = []
                    for _ in 0..<2 {
                        let message = try await resumed.next(op: "event")
                        #expect(message.id?.hasPrefix("r1.") == true)
                        missed.append(message.data)
                    }
                    #expect(missed.filter { $0.contains(#""current_status":"running""#) }.count == 2)
                    #expect(await resumed.drain(for: 0.3).filter { $0.data.contains(#""op":"event""#) }.isEmpty)
                    resumed.close()
                }
            }
        }
    }
}

/// A machine id (`M-<n>`) per partition, in partition order.
func machinePerPartition(_ map: PartitionMap) -> [String] {
    var found: [Int: String] = [:]
    var number = 0
    while found.count < map.count {
        let id = "M-\(number)"
        let partition = map.partition(ofEntityKey: "resource:machine:\(id)")
        if found[partition] == nil { found[partition] = id }
        number += 1
    }
    return (0..<map.count).map { found[$0]! }
}
