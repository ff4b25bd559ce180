import Logging
import Foundation
import StatusHubCore
import StatusHubRedis
import Synchronization
import Testing

/// Redis Sentinel failovers done for real: a master, a replica and three sentinels on loopback, an MES posting over
/// HTTP and a dashboard on a WebSocket, the master killed (or demoted) under them.
/// Serialized: each test runs five redis-servers, and sentinels on a starved machine take a slow master for a dead one.
@Suite("Sentinel failover, end to end", .serialized)
struct SentinelFailoverTests {
    /// What one failover run saw, by event (each event is its own entity, `M-<n>`, with the key `mes-<n>`).
    struct Tally: CustomStringConvertible {
        var acknowledged = 0
        var acknowledgedAfterFailover = 0
        var lost = 0
        var duplicated = 0
        var unknownOutcomes = 0
        var notStored = 0
        var resyncs = 0
        var resumeMissing = 0
        var resumeResynced = false

        var description: String {
            "acknowledged \(acknowledged) (\(acknowledgedAfterFailover) after the failover), 503 unknown \(unknownOutcomes), "
                + "503 not_stored \(notStored), lost \(lost), duplicated \(duplicated), resync \(resyncs), "
                + "resume missing \(resumeMissing)\(resumeResynced ? " (resync)" : "")"
        }
    }

    /// The production default, not the harness's long liveness bound: these tests time writes against the sentinels.
    /// A write waits on `WAIT` for half of it while no replica confirms (the replica's link cut, or the new master's
    /// replica not back yet), and a replica cut off for longer than ten `down-after` periods (10 s here) is one the
    /// sentinels no longer promote — with the harness's 10 s, `laggingReplicaAtFailover` never saw its failover.
    static let commandTimeoutSeconds = 2.0

    /// `kill -9` of the master while an MES posts (each event with its own idempotency key, resent until
    /// acknowledged) and a dashboard listens; the sentinels promote the replica and the hub follows. With
    /// `min_replicas_acked: 1` nothing acknowledged is lost or duplicated, and a resume with `since` from before the
    /// failover gets everything after it; with 0 the run reports what it lost (the fault table's two rows).
    @Test(arguments: [1, 0])
    func masterKilledUnderIngest(minReplicasAcked: Int) async throws {
        let tally = try await withRedisSentinels { redis in
            try await withHub(redisURL: redis.master.url, configure: { config in
                config.redis.sentinels = redis.sentinelAddresses
                config.redis.masterName = RedisSentinels.masterName
                config.redis.minReplicasAcked = minReplicasAcked
                config.redis.commandTimeoutSeconds = Self.commandTimeoutSeconds
            }) { hub in
                try await Self.failover(redis: redis, hubPort: hub.port)
            }
        }
        print("sentinel failover, min_replicas_acked \(minReplicasAcked): \(tally)")
        #expect(tally.acknowledgedAfterFailover >= 40, "the hub did not follow the failover: \(tally)")
        if minReplicasAcked > 0 {
            #expect(tally.lost == 0, "\(tally)")
            #expect(tally.duplicated == 0, "\(tally)")
            #expect(tally.resumeMissing == 0 && !tally.resumeResynced, "\(tally)")
        }
    }

    static func failover(redis: RedisSentinels, hubPort: Int) async throws -> Tally {
        let dashboard = try await TestSocket(port: hubPort)
        try await dashboard.subscribe(["machine:*"])
        let ingestDone = Atomic(false)
        let collector = Task { () -> (events: [(id: String, entity: String)], resyncs: Int) in
            var events: [(id: String, entity: String)] = []
            var resyncs = 0
            // Until ingest is over and the dashboard has been quiet for 3 s (ingest itself may pause for longer,
            // while no master is known).
            while true {
                guard let message = try? await dashboard.next(timeout: .seconds(3)) else {
                    if ingestDone.load(ordering: .relaxed) { break } else { continue }
                }
                switch message["op"]?.stringValue {
                case "event":
                    if let event = message["event"]?.objectValue, let id = event["event_id"]?.stringValue,
                        let entity = event["entity_id"]?.stringValue
                    {
                        events.append((id, entity))
                    }
                case "resync": resyncs += 1
                default: break
                }
            }
            return (events, resyncs)
        }

        // As an operator would: the killed master is started again once the replica is promoted, as a replica of the
        // new master (with `min_replicas_acked: 1` nothing is acknowledged until then).
        let restarter = Task {
            try await RedisSentinels.waitUntil("the sentinels to promote the replica", within: .seconds(70)) {
                try await redis.masterPort() == redis.replica.port && !redis.master.isRunning
            }
            try await redis.restartKilledMaster()
        }
        defer { restarter.cancel() }
        var tally = Tally()
        var acknowledgedIDs: [Int: String] = [:]
        var killedAfter: Int?
        // A liveness bound, not a speed claim: a starved CI-like run (every suite at once on two slow cores) ran
        // out of 75 s two events short of the 40 it waits for after the failover.
        let deadline = ContinuousClock.now + .seconds(180)
        var number = 0
        while tally.acknowledgedAfterFailover < 40, ContinuousClock.now < deadline {
            if number == 40, killedAfter == nil {
                await redis.master.kill9()
                killedAfter = number
            }
            let event = "{\"idempotency_key\":\"mes-\(number)\"," + SampleEvents.machineStatus("M-\(number)").dropFirst()
            // The MES resends until acknowledged; the event's own key makes every resend safe.
            while ContinuousClock.now < deadline {
                let reply = try await HTTP.post(port: hubPort, event: event)
                if reply.status == 202, let id = reply.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue {
                    acknowledgedIDs[number] = id
                    tally.acknowledged += 1
                    if killedAfter != nil { tally.acknowledgedAfterFailover += 1 }
                    break
                }
                #expect(reply.status == 503, "\(reply.status): \(reply.text)")
                #expect(reply.headers["retry-after"] != nil)
                if reply.json["error"]?["outcome"]?.stringValue == "unknown" { tally.unknownOutcomes += 1 } else { tally.notStored += 1 }
                try await Task.sleep(for: .milliseconds(100))
            }
            number += 1
            try await Task.sleep(for: .milliseconds(20))
        }
        ingestDone.store(true, ordering: .relaxed)
        #expect(try await redis.masterPort() == redis.replica.port, "the sentinels did not promote the replica")
        try await restarter.value

        let (received, resyncs) = await collector.value
        _ = await dashboard.close()
        tally.resyncs = resyncs
        var idsByEntity: [String: Set<String>] = [:]
        for event in received { idsByEntity[event.entity, default: []].insert(event.id) }
        tally.lost = acknowledgedIDs.keys.count { idsByEntity["M-\($0)"] == nil }
        tally.duplicated = idsByEntity.values.count { $0.count > 1 } + (received.count - Set(received.map(\.id)).count)

        // A dashboard that left before the failover resumes from the last event it had.
        if let killedAfter, let since = acknowledgedIDs[killedAfter - 1] {
            let resumed = try await TestSocket(port: hubPort)
            resumed.send(#"{"op":"subscribe","channels":["machine:*"],"since":"\#(since)"}"#)
            var entities = Set<String>()
            while let message = try? await resumed.next(timeout: .seconds(3)) {
                if message["op"]?.stringValue == "resync" { tally.resumeResynced = true }
                if let entity = message["event"]?["entity_id"]?.stringValue { entities.insert(entity) }
            }
            _ = await resumed.close()
            tally.resumeMissing = acknowledgedIDs.keys.count { $0 >= killedAfter && !entities.contains("M-\($0)") }
        }
        return tally
    }

    /// The replica has fallen behind when the master dies (its link was cut and it cannot reconnect: the master
    /// asks for a password it does not have), so the promoted replica lacks the master's last writes. With
    /// `min_replicas_acked: 0` those were acknowledged and are lost from history and cache; with 1 none of them was
    /// acknowledged (503, outcome unknown), and the MES's resends store each once on the new master.
    @Test(arguments: [1, 0])
    func laggingReplicaAtFailover(minReplicasAcked: Int) async throws {
        let window = 3
        let (acknowledgedInWindow, lost, storedTwice, resyncs, shownTwice) = try await withRedisSentinels { redis in
            try await withHub(redisURL: redis.master.url, configure: { config in
                config.redis.sentinels = redis.sentinelAddresses
                config.redis.masterName = RedisSentinels.masterName
                config.redis.minReplicasAcked = minReplicasAcked
                config.redis.commandTimeoutSeconds = Self.commandTimeoutSeconds
            }) { hub in
                let dashboard = try await TestSocket(port: hub.port)
                try await dashboard.subscribe(["machine:*"])
                func event(_ number: Int) -> String {
                    "{\"idempotency_key\":\"lag-\(number)\"," + SampleEvents.machineStatus("M-\(number)").dropFirst()
                }
                for number in 0..<5 { #expect(try await HTTP.post(port: hub.port, event: event(number)).status == 202) }

                let master = try await RedisConnection.connect(to: RedisURL(parsing: redis.master.url))
                _ = try await master.pipeline([["CONFIG", "SET", "requirepass", "the-replica-does-not-know-it"], ["CLIENT", "KILL", "TYPE", "replica"]])
                await master.close()
                var acknowledged: [Int: String] = [:]
                for number in 5..<(5 + window) {
                    let reply = try await HTTP.post(port: hub.port, event: event(number))
                    if reply.status == 202 { acknowledged[number] = reply.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue }
                }
                let acknowledgedInWindow = acknowledged.count
                await redis.master.kill9()
                try await RedisSentinels.waitUntil("the sentinels to promote the replica", within: .seconds(30)) {
                    try await redis.masterPort() == redis.replica.port
                }
                try await redis.restartKilledMaster()
                // The MES resends what was not acknowledged, with the same keys, until it is (with
                // min_replicas_acked 1, once the old master is back as the new one's replica).
                let deadline = ContinuousClock.now + .seconds(60)
                for number in 5..<(5 + window) where acknowledged[number] == nil {
                    while ContinuousClock.now < deadline {
                        if try await HTTP.post(port: hub.port, event: event(number)).status == 202 { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                #expect(ContinuousClock.now < deadline, "every resend acknowledged within a minute")
                var resyncs = 0
                var shown: [String: Int] = [:]
                while let message = try? await dashboard.next(timeout: .seconds(2)) {
                    if message["op"]?.stringValue == "resync" { resyncs += 1 }
                    if let entity = message["event"]?["entity_id"]?.stringValue { shown[entity, default: 0] += 1 }
                }
                _ = await dashboard.close()
                // What the promoted replica's history holds, by entity.
                let promoted = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: redis.replica.port))
                let entries = try await promoted.send(["XRANGE", "statushub:history", "-", "+"]).array ?? []
                await promoted.close()
                var stored: [String: Int] = [:]
                for entry in entries {
                    let text = entry.array?.last?.array?.compactMap(\.text).joined() ?? ""
                    if let match = text.firstMatch(of: #/"entity_id":"(M-\d+)"/#) { stored[String(match.output.1), default: 0] += 1 }
                }
                let lost = (0..<(5 + window)).count { stored["M-\($0)"] == nil }
                let storedTwice = stored.values.count { $0 > 1 }
                return (acknowledgedInWindow, lost, storedTwice, resyncs, shown.values.count { $0 > 1 })
            }
        }
        print("sentinel failover with a lagging replica, min_replicas_acked \(minReplicasAcked): acknowledged \(acknowledgedInWindow) of \(window) written while the replica lagged; lost \(lost), stored twice \(storedTwice), dashboard resyncs \(resyncs), events the dashboard was shown twice \(shownTwice)")
        #expect(storedTwice == 0)
        // The node had delivered events the promoted replica never got: its dashboards are told to resync, and
        // get what the new master wrote after the fork, not its whole history again.
        #expect(resyncs >= 1)
        if minReplicasAcked > 0 {
            #expect(acknowledgedInWindow == 0)
            #expect(lost == 0)
            #expect(shownTwice <= window, "only the resent events, whose first attempts were shown")
        } else {
            #expect(acknowledgedInWindow == window)
            #expect(lost == window, "acknowledged writes the replica never had are gone after the failover")
            #expect(shownTwice == 0)
        }
    }

    /// `SENTINEL FAILOVER`: the master is demoted to a replica while it keeps running and answering. The hub
    /// leaves it for the promoted replica (it hears `+switch-master`, and a connection that meets `READONLY` or a
    /// `ROLE` of replica asks the sentinels again), and the dashboard keeps getting events.
    @Test func demotedMasterIsLeftForTheNewOne() async throws {
        try await withRedisSentinels { redis in
            try await withHub(redisURL: redis.master.url, configure: { config in
                config.redis.sentinels = redis.sentinelAddresses
                config.redis.masterName = RedisSentinels.masterName
                config.redis.minReplicasAcked = 1
                config.redis.commandTimeoutSeconds = Self.commandTimeoutSeconds
            }) { hub in
                let dashboard = try await TestSocket(port: hub.port)
                try await dashboard.subscribe(["machine:*"])
                #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-before")).status == 202)
                #expect(try await dashboard.nextEvent()["entity_id"]?.stringValue == "M-before")

                let sentinel = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: redis.sentinels[0].port))
                #expect(try await sentinel.send(["SENTINEL", "FAILOVER", RedisSentinels.masterName]).errorMessage == nil)
                await sentinel.close()
                try await RedisSentinels.waitUntil("the old master to be demoted") {
                    try await RedisSentinels.info(port: redis.master.port, "replication").contains("role:slave")
                }

                var acknowledged = false
                let deadline = ContinuousClock.now + .seconds(20)
                while !acknowledged, ContinuousClock.now < deadline {
                    let reply = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-after", "idle"))
                    acknowledged = reply.status == 202
                    if !acknowledged { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(acknowledged)
                let event = try await dashboard.nextEvent()
                #expect(event["entity_id"]?.stringValue == "M-after")
                // Stored on the promoted replica, which the old master now copies.
                let promoted = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: redis.replica.port))
                #expect(try await promoted.isMasterForTest())
                #expect(try await promoted.send(["GET", "resource:machine:M-after"]).text?.contains("\"idle\"") == true)
                await promoted.close()
                _ = await dashboard.close()
            }
        }
    }
}

extension RedisConnection {
    fileprivate func isMasterForTest() async throws -> Bool {
        try await send(["ROLE"]).array?.first?.text == "master"
    }
}

extension SentinelFailoverTests {
    /// A position inside the history's span that the history does not hold (what a promoted replica that never got
    /// an event looks like from that event's id; made here with `XDEL` of it and the entry after it, since the stream
    /// vouches for the last id deleted) is a gap: a resume from it gets nil
    /// (the client resyncs), not the events after it as if nothing were missing.
    @Test func aPositionTheHistoryNeverHeldIsAGap() async throws {
        try await withRedisServer { redis in
            var config = HubConfig()
            config.redis.url = redis.url
            let engine = try RedisEngine(config: config, logger: Logger(label: "test"))
            let ids = try await engine.append((0..<4).map { SampleEvents.validated(SampleEvents.machineStatus("M-\($0)", "idle")) }).map(\.id)
            #expect(try await engine.history(after: ids[1], limit: 10)?.count ?? 0 >= 2)
            let admin = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
            #expect(try await admin.send(["XDEL", "statushub:history", "\(ids[1])", "\(ids[2])"]).integer == 2)
            await admin.close()
            #expect(try await engine.history(after: ids[1], limit: 10) == nil)
            #expect(try await !engine.historyIsComplete(after: ids[1]))
            #expect(try await engine.history(after: ids[3], limit: 10) != nil, "held positions resume as before")
            #expect(try await engine.history(after: ids[0], limit: 10)?.map(\.id) == [ids[3]])
            #expect(try await engine.historyIsComplete(after: ids[3]))
        }
    }

    /// `/ready` counts the replicas `INFO replication` lists online and acknowledging (lag ≤ 2 s), not the ones a
    /// 200 ms `WAIT` of its own heard from: on a loaded node a healthy replica missed that now and then.
    @Test func readinessCountsTheReplicasOnlineAndAcknowledging() {
        let info = """
            # Replication\r
            role:master\r
            connected_slaves:4\r
            slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0\r
            slave1:ip=127.0.0.1,port=6381,state=online,offset=1200,lag=2\r
            slave2:ip=127.0.0.1,port=6382,state=online,offset=900,lag=7\r
            slave3:ip=127.0.0.1,port=6383,state=wait_bgsave,offset=0,lag=0\r
            master_failover_state:no-failover\r
            """
        #expect(RedisEngine.acknowledgingReplicas(info: info) == 2)
        #expect(RedisEngine.acknowledgingReplicas(info: "# Replication\r\nrole:slave\r\nslave_read_only:1\r\nslave_priority:100\r\n") == 0)
        #expect(RedisEngine.acknowledgingReplicas(info: "") == 0)
    }

    /// `min_replicas_acked: 1` on a Redis with no replica: the event is stored on the master but no replica confirms
    /// it, so the answer is 503 with outcome unknown and a resend key; once a replica has caught up, the resend
    /// with that key is acknowledged as the first attempt's duplicate, stored once.
    @Test func unconfirmedByReplicasIsUnknownAndTheResendStoresOnce() async throws {
        try await withRedisServer(extraArguments: ["--repl-diskless-sync-delay", "0"]) { master in
            try await withHub(redisURL: master.url, configure: { config in
                config.redis.minReplicasAcked = 1
                config.redis.commandTimeoutSeconds = 1
            }) { hub in
                // No replica: every event would be answered 503 unknown, and `/ready` says so (it said 200).
                let unready = try await HTTP.get(port: hub.port, "/ready")
                #expect(unready.status == 503, "\(unready.text)")
                #expect(unready.json["error"]?["field"]?.stringValue == "engine")
                #expect(unready.json["error"]?["reason"]?.stringValue?.contains("only 0 of the 1 replicas required (redis.min_replicas_acked)") == true, "\(unready.text)")
                let refused = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-WAIT"))
                #expect(refused.status == 503, "\(refused.text)")
                #expect(refused.headers["retry-after"] != nil)
                #expect(refused.json["error"]?["outcome"]?.stringValue == "unknown", "\(refused.text)")
                #expect(refused.json["error"]?["reason"]?.stringValue?.contains("min_replicas_acked") == true, "\(refused.text)")
                let key = try #require(refused.json["error"]?["resend"]?.arrayValue?.first?["idempotency_key"]?.stringValue)

                try await withRedisServer(extraArguments: ["--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", String(master.port)]) { replica in
                    try await RedisSentinels.waitUntil("the replica's link to the master is up") {
                        try await RedisSentinels.info(port: replica.port, "replication").contains("master_link_status:up")
                    }
                    let resend = "{\"idempotency_key\":\"\(key)\"," + SampleEvents.machineStatus("M-WAIT").dropFirst()
                    // As an MES would, it resends until acknowledged (a replica that has just synced may miss the
                    // first WAIT's deadline).
                    var again = try await HTTP.post(port: hub.port, event: resend)
                    for _ in 0..<10 where again.status == 503 {
                        try await Task.sleep(for: .milliseconds(200))
                        again = try await HTTP.post(port: hub.port, event: resend)
                    }
                    #expect(again.status == 202, "\(again.text)")
                    #expect(again.json["accepted"]?.arrayValue?.first?["duplicate"] == .bool(true), "\(again.text)")
                    // The master lists the replica online once it has taken the sync, which on a loaded machine can
                    // come a moment after the replica reports its link up.
                    var ready = try await HTTP.get(port: hub.port, "/ready")
                    for _ in 0..<10 where ready.status == 503 {
                        try await Task.sleep(for: .milliseconds(200))
                        ready = try await HTTP.get(port: hub.port, "/ready")
                    }
                    #expect(ready.status == 200, "\(ready.text)")
                    let history = try await RedisConnection.connect(to: RedisURL(parsing: master.url))
                    // Once in the history (besides the counter events it moved).
                    let entries = try await history.send(["XRANGE", "statushub:history", "-", "+"]).array ?? []
                    #expect(entries.count { $0.array?.last?.array?.contains { $0.text?.contains(#""entity_id":"M-WAIT""#) == true } == true } == 1)
                    await history.close()
                }
            }
        }
    }
}
