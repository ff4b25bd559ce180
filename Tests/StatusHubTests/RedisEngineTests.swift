import Foundation
import Logging
import StatusHubCore
@testable import StatusHubRedis
import Synchronization
import Testing

/// Redis-specific behaviour of the Redis engine and its client: the shared engine contract lives in
/// `EngineContractTests`. Every test runs its own `redis-server`.
@Suite("RedisEngine", .serialized)
struct RedisEngineTests {
    // MARK: RESP client

    @Test func respRoundTrips() async throws {
        try await withRedisServer { server in
            let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
            #expect(try await redis.send(["SET", "greeting", "hello"]) == .status("OK"))
            #expect(try await redis.send(["GET", "greeting"]) == .string(Array("hello".utf8)))
            #expect(try await redis.send(["GET", "missing"]) == .null)
            #expect(try await redis.send(["INCR", "counter"]) == .integer(1))
            #expect(try await redis.send(["RPUSH", "list", "a", "b"]) == .integer(2))
            #expect(try await redis.send(["LRANGE", "list", "0", "-1"]) == .array([.string([97]), .string([98])]))

            // Bulk strings are binary-safe: CR, LF and NUL survive both directions.
            let binary: [UInt8] = [0, 13, 10, 255, 42, 0]
            #expect(try await redis.send([Array("SET".utf8), Array("bin".utf8), binary]) == .status("OK"))
            #expect(try await redis.send(["GET", "bin"]) == .string(binary))
            #expect(try await redis.send(["SET", "empty", ""]) == .status("OK"))
            #expect(try await redis.send(["GET", "empty"]) == .string([]))

            // Error replies are values, and the connection stays usable after them.
            let unknown = try await redis.send(["NOSUCHCOMMAND", "x"])
            #expect(unknown.errorMessage?.hasPrefix("ERR unknown command") == true)
            let wrongType = try await redis.send(["INCR", "list"])
            #expect(wrongType.errorMessage?.hasPrefix("WRONGTYPE") == true)
            #expect(throws: RedisError.self) { try wrongType.orThrow() }
            #expect(try await redis.send(["PING"]) == .status("PONG"))
            await redis.close()
        }
    }

    @Test func pipelinesTenThousandCommandsInOneFlush() async throws {
        try await withRedisServer { server in
            let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
            let replies = try await redis.pipeline(Array(repeating: ["INCR", "n"], count: 10_000))
            #expect(replies == (1...10_000).map { RedisReply.integer(Int64($0)) })

            // Many tasks sharing one connection each get their own replies.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<50 {
                    group.addTask {
                        for index in 0..<100 {
                            let key = "k-\(task)-\(index)"
                            _ = try await redis.send(["SET", key, key])
                            #expect(try await redis.send(["GET", key]) == .string(Array(key.utf8)))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await redis.send(["GET", "n"]) == .string(Array("10000".utf8)))
            #expect(try await redis.pipeline([[String]]()) == [])
            await redis.close()
        }
    }

    @Test func commandTimeoutClosesTheConnection() async throws {
        try await withRedisServer { server in
            let url = try RedisURL(parsing: server.url)
            let admin = try await RedisConnection.connect(to: url)
            let redis = try await RedisConnection.connect(to: url, commandTimeoutSeconds: 0.3)
            #expect(try await admin.send(["CLIENT", "PAUSE", "1500", "ALL"]) == .status("OK"))
            let started = ContinuousClock.now
            await #expect(throws: RedisError.timeout) { try await redis.send(["GET", "x"]) }
            #expect(ContinuousClock.now - started < .seconds(1.2))
            await redis.waitUntilClosed(atMost: .seconds(2))
            #expect(!redis.isActive)
            await #expect(throws: RedisError.self) { try await redis.send(["PING"]) }
            await admin.close()
        }
    }

    @Test func selectsTheURLsDatabase() async throws {
        try await withRedisServer { server in
            let db3 = try await RedisConnection.connect(to: RedisURL(parsing: server.url + "/3"))
            let db0 = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
            #expect(try await db3.send(["SET", "where", "three"]) == .status("OK"))
            #expect(try await db0.send(["GET", "where"]) == .null)
            #expect(try await db0.send(["SELECT", "3"]) == .status("OK"))
            #expect(try await db0.send(["GET", "where"]) == .string(Array("three".utf8)))
            await db3.close()
            await db0.close()
            // A database the server does not have fails the connect, not a later command.
            await #expect(throws: RedisError.self) {
                try await RedisConnection.connect(to: RedisURL(parsing: server.url + "/99"))
            }
        }
    }

    @Test func connectingToNothingFailsFast() async throws {
        let port = try RedisServer.freeLoopbackPort()
        let started = ContinuousClock.now
        await #expect(throws: RedisError.self) {
            try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: port))
        }
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test func parsesRedisURLs() throws {
        let plain = try RedisURL(parsing: "redis://cache.local")
        #expect(plain == RedisURL(host: "cache.local", port: 6379, database: 0))
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6380") == RedisURL(host: "127.0.0.1", port: 6380))
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6380/2") == RedisURL(host: "127.0.0.1", port: 6380, database: 2))
        #expect(try RedisURL(parsing: "redis://h:1/") == RedisURL(host: "h", port: 1))
        #expect(try RedisURL(parsing: "REDIS://h") == RedisURL(host: "h"))
        #expect(try RedisURL(parsing: "redis://[::1]:7000/1") == RedisURL(host: "::1", port: 7000, database: 1))
        let auth = try RedisURL(parsing: "redis://app:s%40cret@h:6390/4")
        #expect(auth == RedisURL(host: "h", port: 6390, database: 4, username: "app", password: "s@cret"))
        #expect(auth.description == "redis://app:***@h:6390/4")
        #expect(try RedisURL(parsing: "redis://:pw@h").password == "pw")
        #expect(try RedisURL(parsing: "redis://:pw@h").username == nil)

        for bad in [
            "http://h", "h:6379", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536", "redis://h:x",
            "redis://h/-1", "redis://h/db", "redis://h?timeout=1", "redis://[::1", "redis://u:p%zz@h",
        ] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisURL(parsing: bad) }
        }
        // The password never reaches an error message.
        do {
            _ = try RedisURL(parsing: "redis://u:hunter2@h:bad")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("hunter2"))
        }
    }

    @Test func backoffDoublesToItsCeilingWithJitter() {
        var backoff = Backoff(initialSeconds: 0.1, maximumSeconds: 1)
        var ceilings: [Double] = []
        for _ in 0..<8 {
            let ceiling = backoff.nextCeiling
            let delay = backoff.next()
            #expect(delay >= ceiling / 2 && delay <= ceiling)
            ceilings.append(ceiling)
        }
        #expect(ceilings == [0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1])
        backoff.reset()
        #expect(backoff.nextCeiling == 0.1)
    }

    // MARK: engine: storage

    @Test func appendWritesThroughWithPerTypeTTL() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let machine = Self.event(.machine, "M-1")
                let material = Self.event(.material, "MAT-1", eventType: .materialInventoryChanged)
                let alert = Self.event(.machine, "M-1", eventType: .alertRaised)
                let ids = (try await engine.append([machine, material, alert])).map(\.id)
                #expect(ids.count == 3 && ids == ids.sorted() && Set(ids).count == 3)

                let latest = try #require(try await engine.latest(entityKey: "resource:machine:M-1"))
                // The alert does not carry state, so the machine's latest is still the status event, byte for byte.
                #expect(latest == StoredEvent(id: ids[0], validated: machine))
                let cachedMaterial = try await engine.latest(entityKey: "resource:material:MAT-1")
                #expect(cachedMaterial == StoredEvent(id: ids[1], validated: material))
                #expect(try await engine.latest(entityKey: "resource:machine:M-404") == nil)

                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                let machineTTL = try #require(try await redis.send(["TTL", "resource:machine:M-1"]).integer)
                let materialTTL = try #require(try await redis.send(["TTL", "resource:material:MAT-1"]).integer)
                #expect((295...300).contains(machineTTL))
                #expect((115...120).contains(materialTTL))
                await redis.close()
            }
        }
    }

    @Test func historyReadsTheStreamAfterAnID() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let events = (1...5).map { Self.event(.machine, "M-\($0)", line: "Line-2") }
                let ids = (try await engine.append(events)).map(\.id)
                let expected = zip(ids, events).map { StoredEvent(id: $0, validated: $1) }

                #expect(try await engine.history(after: ids[0], limit: 100) == Array(expected.dropFirst()))
                #expect(try await engine.history(after: ids[1], limit: 2) == Array(expected[2...3]))
                #expect(try await engine.history(after: ids[4], limit: 100)?.isEmpty == true)
                // Before the first retained entry the stream cannot tell trimmed from never-written: a gap.
                #expect(try await engine.history(after: EventID(milliseconds: 0, sequence: 0), limit: 100) == nil)
                #expect(try await engine.historyIsComplete(after: ids[0]))
            }
        }
    }

    @Test func historyKnowsWhenTrimmingLeftAGap() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.redis.historyMaxLength = 100 }) { engine, _ in
                let first = (try await engine.append([Self.event(.machine, "M-0")])).map(\.id)[0]
                #expect(try await engine.historyIsComplete(after: first))
                let ids = (try await engine.append((1...1000).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                // `MAXLEN ~` trims whole stream nodes: about 100 entries remain, the first long gone.
                #expect(try await !engine.historyIsComplete(after: first))
                #expect(try await engine.historyIsComplete(after: ids[ids.count - 2]))
                // An id this stream never produced cannot be resumed from.
                #expect(try await !engine.historyIsComplete(after: EventID(milliseconds: UInt64(Int64.max), sequence: 0)))
                // Trimmed past `first`: a resume from there is a gap, not a silent partial replay.
                #expect(try await engine.history(after: first, limit: 10_000) == nil)
                #expect(try await engine.history(after: ids[ids.count - 11], limit: 100)?.map(\.id) == Array(ids.suffix(10)))
            }
        }
    }

    @Test func largeBatchesAreChunkedAndKeepTheirOrder() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, sink in
                let events = (0..<1_250).map { Self.event(.machine, "M-\($0 % 40)", status: $0 % 2 == 0 ? "running" : "idle") }
                let ids = (try await engine.append(events)).map(\.id)
                #expect(ids.count == events.count)
                #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
                let delivered = try await sink.waitFor(count: events.count)
                #expect(delivered.map(\.id) == ids)
                #expect(try await engine.history(after: ids[0], limit: 10_000)?.map(\.id) == Array(ids.dropFirst()))
                // The last event of each machine wins the cache.
                let latest = try #require(try await engine.latest(entityKey: "resource:machine:M-9"))
                #expect(latest.id == ids[1_249])
                #expect(latest == StoredEvent(id: ids[1_249], validated: events[1_249]))
            }
        }
    }

    @Test func appendSurvivesAFlushedScriptCache() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                _ = (try await engine.append([Self.event(.machine, "M-1")])).map(\.id)
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await redis.send(["SCRIPT", "FLUSH"]) == .status("OK"))
                await redis.close()
                let ids = (try await engine.append((0..<600).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                #expect(ids.count == 600 && ids == ids.sorted())
            }
        }
    }

    @Test func snapshotScansOnlyWhatPatternsCanMatch() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let ids = (try await engine.append([
                    Self.event(.machine, "M-1", line: "Line-2"),
                    Self.event(.machine, "M-2", line: "Line-3"),
                    Self.event(.operator, "O-1", status: "available"),
                    Self.event(.material, "MAT-1", eventType: .materialInventoryChanged),
                    Self.event(.workOrder, "WO-1", eventType: .workOrderProgress, status: "in_progress"),
                    Self.event(.machine, "M-3", eventType: .alertRaised),
                ])).map(\.id)
                // Something in the cache namespace that is not a stored event is skipped, not fatal.
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                _ = try await redis.send(["SET", "resource:machine:garbage", "not json"])
                await redis.close()

                func keys(_ patterns: String...) async throws -> [String] {
                    try await engine.snapshot(matching: patterns.map { try ChannelPattern(parsing: $0) }).events.map(\.entityKey)
                }
                #expect(try await keys("machine:*") == ["resource:machine:M-1", "resource:machine:M-2"])
                #expect(try await keys("machine:M-2") == ["resource:machine:M-2"])
                #expect(try await keys("machine:M-2", "machine:*") == ["resource:machine:M-1", "resource:machine:M-2"])
                #expect(try await keys("machine:M-404").isEmpty)
                #expect(try await keys("line:Line-2:*") == ["resource:machine:M-1"])
                #expect(try await keys("line:*:resource-status:machine:*") == ["resource:machine:M-1", "resource:machine:M-2"])
                #expect(try await keys("resource-status") == [
                    "resource:machine:M-1", "resource:machine:M-2", "resource:operator:O-1", "resource:material:MAT-1",
                ])
                #expect(try await keys("work-order-progress", "operator:O-1") == ["resource:operator:O-1", "workorder:WO-1"])
                #expect(try await keys("alerts").isEmpty)
                #expect(try await keys("*").count == 5)
                let all = try await engine.snapshot(matching: [try ChannelPattern(parsing: "*:*")]).events
                #expect(all.map(\.id) == [ids[0], ids[1], ids[2], ids[3], ids[4]])
            }
        }
    }

    @Test func snapshotReadsEveryPageOfALargeKeyspace() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let count = 3_000
                for start in stride(from: 0, to: count, by: 1000) {
                    _ = (try await engine.append((start..<start + 1000).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                }
                let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "machine:*")]).events
                #expect(snapshot.count == count)
                #expect(Set(snapshot.map(\.entityKey)).count == count)
                #expect(snapshot.map(\.id) == snapshot.map(\.id).sorted())
            }
        }
    }

    @Test func snapshotPlanPrunesEntityTypes() throws {
        func plan(_ patterns: String...) throws -> (scanned: [String], direct: [String]) {
            let plan = SnapshotPlan(patterns: try patterns.map { try ChannelPattern(parsing: $0) })
            return (plan.scanTypes.map(\.rawValue), plan.directKeys)
        }
        let everyType = EntityType.allCases.map(\.rawValue)
        #expect(try plan("machine:*").scanned == ["machine"])
        #expect(try plan("machine:M-1").direct == ["resource:machine:M-1"])
        #expect(try plan("machine:M-1").scanned.isEmpty)
        #expect(try plan("machine:M-1", "machine:*").direct.isEmpty)
        #expect(try plan("machine:M-1", "operator:*").direct == ["resource:machine:M-1"])
        #expect(try plan("resource-status").scanned == ["operator", "machine", "material"])
        #expect(try plan("allocation-changes").scanned == ["allocation"])
        #expect(try plan("alerts").scanned.isEmpty)
        #expect(try plan("idle-time-predictions").scanned.isEmpty)
        #expect(try plan("line:Line-2:*").scanned == everyType)
        #expect(try plan("line:*:work-order-progress:*").scanned == ["work_order"])
        #expect(try plan("*:WO-7").scanned == everyType)
        #expect(try plan("*").scanned == everyType)
        #expect(try plan("workorder:WO-1").scanned.isEmpty)  // a cache key, not a channel
    }

    // MARK: engine: pub/sub and faults

    @Test func eventsAppendedOnOneEngineReachEverySubscriber() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engineA, sinkA in
                try await withEngine(server) { engineB, sinkB in
                    let events = [
                        Self.event(.machine, "M-1", line: "Line-2"),
                        Self.event(.machine, "M-1", eventType: .alertRaised),
                        Self.event(.operator, "O-9"),
                    ]
                    let ids = (try await engineA.append(events)).map(\.id)
                    let expected = zip(ids, events).map { StoredEvent(id: $0, validated: $1) }
                    #expect(try await sinkB.waitFor(count: 3) == expected)
                    #expect(try await sinkA.waitFor(count: 3) == expected)
                    let more = (try await engineB.append([Self.event(.machine, "M-2")])).map(\.id)
                    #expect(try await sinkA.waitFor(count: 4).last?.id == more[0])
                    try await Task.sleep(for: .milliseconds(100))
                    #expect(sinkA.count == 4 && sinkB.count == 4)
                }
            }
        }
    }

    @Test func redisDownMeansUnavailableAndComingBackMeansReady() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, sink in
                let first = (try await engine.append([Self.event(.machine, "M-1")])).map(\.id)

                await server.stop()
                try await eventually("not ready after Redis stopped") { !engine.isReady }
                let started = ContinuousClock.now
                let error = await #expect(throws: EngineUnavailable.self) {
                    (try await engine.append([Self.event(.machine, "M-2")])).map(\.id)
                }
                #expect(ContinuousClock.now - started < .milliseconds(500))
                #expect((error?.retryAfterSeconds ?? 0) >= 1)
                // Still unavailable on repeat, and still fast: the backoff window fails without dialling.
                for _ in 0..<20 {
                    await #expect(throws: EngineUnavailable.self) { (try await engine.append([Self.event(.machine, "M-2")])).map(\.id) }
                    await #expect(throws: EngineUnavailable.self) { try await engine.latest(entityKey: "resource:machine:M-1") }
                }
                #expect(ContinuousClock.now - started < .seconds(2))

                try await server.restart()
                try await eventually("ready after Redis restarted") { engine.isReady }
                let ids = (try await engine.append([Self.event(.machine, "M-3")])).map(\.id)
                #expect(try await sink.waitFor(count: 2).last?.id == ids[0])
                #expect(try await engine.latest(entityKey: "resource:machine:M-3")?.id == ids[0])
                // The restarted Redis kept nothing (no persistence here): a resume from before it must resync.
                #expect(try await !engine.historyIsComplete(after: first[0]))
                #expect(try await engine.historyIsComplete(after: ids[0]))
            }
        }
    }

    @Test func redisKilledAndHungAreDetected() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.redis.commandTimeoutSeconds = 0.5 }, healthCheck: .milliseconds(200)) { engine, sink in
                // A hung Redis (sockets open, nothing answers) times out instead of holding ingest.
                server.pause()
                let started = ContinuousClock.now
                await #expect(throws: EngineUnavailable.self) { (try await engine.append([Self.event(.machine, "M-1")])).map(\.id) }
                #expect(ContinuousClock.now - started < .seconds(2))
                try await eventually("not ready while Redis hangs") { !engine.isReady }
                server.resume()
                try await eventually("ready after Redis resumed") { engine.isReady }
                _ = (try await engine.append([Self.event(.machine, "M-2")])).map(\.id)

                // SIGKILL: the kernel resets the sockets; no goodbye from Redis.
                await server.kill9()
                try await eventually("not ready after SIGKILL") { !engine.isReady }
                await #expect(throws: EngineUnavailable.self) { (try await engine.append([Self.event(.machine, "M-3")])).map(\.id) }
                try await server.restart()
                try await eventually("ready after restart") { engine.isReady }
                let ids = (try await engine.append([Self.event(.machine, "M-4")])).map(\.id)
                // Not `count == 2`: the timed-out M-1 sat in Redis's socket buffer and ran once Redis resumed.
                // An append that throws is not acknowledged; it is not promised to have left no trace.
                try await eventually("M-4 delivered") { sink.received.last?.id == ids[0] }
            }
        }
    }

    @Test func subscriberCatchesUpOnWhatItMissedWhileAway() async throws {
        try await withRedisServer { server in
            // The subscriber waits a second before reconnecting, so the events below are published while it is away.
            try await withEngine(server, configure: {
                $0.redis.reconnectInitialSeconds = 1
                $0.redis.reconnectMaxSeconds = 1
            }) { engine, sink in
                let before = (try await engine.append([Self.event(.machine, "M-0")])).map(\.id)
                _ = try await sink.waitFor(count: 1)

                let admin = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).integer == 1)
                try await eventually("subscriber noticed") { engine.subscriberState != .connected }
                let missed = (try await engine.append((1...5).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                #expect(sink.count == 1)

                try await eventually("subscriber back") { engine.subscriberState == .connected }
                let live = (try await engine.append([Self.event(.machine, "M-6")])).map(\.id)
                let delivered = try await sink.waitFor(count: 7)
                #expect(delivered.map(\.id) == before + missed + live)
                try await Task.sleep(for: .milliseconds(100))
                #expect(sink.count == 7)
                await admin.close()
            }
        }
    }

    // MARK: helpers

    /// Runs a Redis engine against `server` for the body, with fast reconnects, then stops and shuts it down.
    func withEngine<T>(
        _ server: RedisServer,
        configure: (inout HubConfig) -> Void = { _ in },
        healthCheck: Duration = .seconds(5),
        _ body: (RedisEngine, RecordingSink) async throws -> T
    ) async throws -> T {
        var config = HubConfig()
        config.redis.url = server.url
        config.redis.reconnectInitialSeconds = 0.05
        config.redis.reconnectMaxSeconds = 0.2
        config.redis.commandTimeoutSeconds = 1
        configure(&config)
        var logger = Logger(label: "redis-engine-test")
        logger.logLevel = .critical
        let engine = try RedisEngine(config: config, logger: logger, healthCheckInterval: healthCheck)
        let sink = RecordingSink()
        let runner = Task { try await engine.run(delivering: sink) }
        func stop() async {
            runner.cancel()
            _ = await runner.result
            await engine.shutdown()
        }
        do {
            try await eventually("engine ready") { engine.isReady }
            let result = try await body(engine, sink)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    static func event(
        _ entityType: EntityType, _ id: String, eventType: EventType = .resourceStatusChanged,
        status: String = "running", line: String? = nil
    ) -> ValidatedEvent {
        let linePart = line.map { #""line":"\#($0)","# } ?? ""
        let body = #""data":{"current_status":"\#(status)"},"entity_id":"\#(id)","entity_type":"\#(entityType.rawValue)","event_type":"\#(eventType.rawValue)",\#(linePart)"metadata":{"source":"t","triggered_by":"t"},"received_at":"2025-01-01T00:00:00.000Z","timestamp":"2025-01-01T00:00:00.000Z"}"#
        return ValidatedEvent(eventType: eventType, entityType: entityType, entityID: id, line: line, bodyAfterID: Array(body.utf8))
    }
}

/// Records what an engine delivers, in order.
final class RecordingSink: EventSink {
    private let events = Mutex<[StoredEvent]>([])

    private let gapReasons = Mutex<[String]>([])

    func deliver(_ event: StoredEvent) { events.withLock { $0.append(event) } }
    func deliveryGap(reason: String) { gapReasons.withLock { $0.append(reason) } }

    var received: [StoredEvent] { events.withLock { $0 } }
    var gaps: [String] { gapReasons.withLock { $0 } }
    var count: Int { events.withLock { $0.count } }

    func waitFor(count: Int, timeout: Duration = .seconds(10)) async throws -> [StoredEvent] {
        try await eventually("\(count) events delivered", timeout: timeout) { self.count >= count }
        return received
    }
}

struct EventuallyTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Polls `condition` until it holds, or fails the test after `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw EventuallyTimeout(description: "timed out waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}
