import Foundation
import Logging
import StatusHubCore
import StatusHubRedis
import StatusHubServer
import Testing

/// Snapshots read the engines' indexes by entity type and line instead of the whole cache: they must still hold
/// exactly what the patterns match when entities move, expire, or were cached before the indexes existed, and
/// arrive in bounded parts.
@Suite("Snapshot indexes and parts")
struct SnapshotIndexTests {
    static func patterns(_ texts: String...) throws -> [ChannelPattern] { try texts.map { try ChannelPattern(parsing: $0) } }

    @Test(arguments: EngineKind.allCases)
    func anEntityThatMovesLinesLeavesItsOldLinesSnapshot(_ kind: EngineKind) async throws {
        try await withEngine(kind) { engine, _ in
            _ = try await engine.append([
                SampleEvents.validated(SampleEvents.machineStatus("M-1", line: "Line-2")),
                SampleEvents.validated(SampleEvents.machineStatus("M-2", line: "Line-2")),
                SampleEvents.validated(SampleEvents.machineStatus("M-1", "idle", line: "Line-3")),
            ])
            let line2 = try await engine.snapshot(matching: Self.patterns("line:Line-2:*")).events.map(\.entityKey)
            let line3 = try await engine.snapshot(matching: Self.patterns("line:Line-3:*")).events.map(\.entityKey)
            #expect(line2 == ["resource:machine:M-2"])
            #expect(line3 == ["resource:machine:M-1"])
            // Both lines at once, and every machine: M-1 once, at its newest state.
            let both = try await engine.snapshot(matching: Self.patterns("line:Line-2:*", "line:Line-3:*")).events
            #expect(both.map(\.entityKey).sorted() == ["resource:machine:M-1", "resource:machine:M-2"])
            let all = try await engine.snapshot(matching: Self.patterns("machine:*")).events
            #expect(all.count == 2)
            #expect(all.first { $0.entityKey == "resource:machine:M-1" }?.jsonString.contains(#""current_status":"idle""#) == true)
        }
    }

    /// With `server.stale_kept_seconds` 0; otherwise the state's `status_stale` notice takes its place (below).
    @Test(arguments: EngineKind.allCases)
    func expiredStatesLeaveTheSnapshot(_ kind: EngineKind) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 2; $0.server.staleKeptSeconds = 0 }) { engine, _ in
            let started = ContinuousClock.now
            _ = try await engine.append([
                SampleEvents.validated(SampleEvents.machineStatus("M-1", line: "Line-2")),
                SampleEvents.validated(SampleEvents.operatorStatus("O-1", line: "Line-2")),
            ])
            let fresh = try await engine.snapshot(matching: Self.patterns("line:Line-2:*")).events.count
            // Only meaningful while the TTL has not passed: a loaded machine can take longer than it to get here.
            if ContinuousClock.now - started < .milliseconds(1900) { #expect(fresh == 2) }
            try await Task.sleep(for: .milliseconds(3200))
            let left = try await engine.snapshot(matching: Self.patterns("line:Line-2:*")).events.map(\.entityKey)
            #expect(left == ["resource:operator:O-1"])
        }
    }

    /// A line's snapshot taken after a machine of it went quiet still lists the machine, as its stale notice.
    @Test(arguments: EngineKind.allCases)
    func anExpiredStatesNoticeStaysInItsLinesSnapshot(_ kind: EngineKind) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 1 }) { engine, sink in
            _ = try await engine.append([
                SampleEvents.validated(SampleEvents.machineStatus("M-1", line: "Line-2")),
                SampleEvents.validated(SampleEvents.operatorStatus("O-1", line: "Line-2")),
            ])
            let notice = try #require(try await sink.waitFor(count: 3, timeout: .seconds(20)).first(where: \.isStale))
            let listed = try await engine.snapshot(matching: Self.patterns("line:Line-2:*")).events
            #expect(listed.map(\.entityKey).sorted() == ["resource:machine:M-1", "resource:operator:O-1"])
            #expect(listed.first { $0.entityKey == "resource:machine:M-1" }?.id == notice.id)
        }
    }

    @Test(arguments: EngineKind.allCases)
    func aLargeSnapshotComesInBoundedPartsWithOnePosition(_ kind: EngineKind) async throws {
        try await withEngine(kind, tallies: true) { engine, _ in
            for start in stride(from: 0, to: 1_200, by: 400) {
                _ = try await engine.append((start..<start + 400).map {
                    SampleEvents.validated(SampleEvents.machineStatus("M-\($0)", "running", line: "Line-\($0 % 3)"))
                })
            }
            var parts: [SnapshotChunk] = []
            try await engine.snapshot(matching: Self.patterns("line:Line-1:*"), chunkSize: 150) { parts.append($0) }
            #expect(parts.allSatisfy { $0.events.count <= 150 })
            #expect(parts.map(\.isLast) == Array(repeating: false, count: parts.count - 1) + [true])
            #expect(Set(parts.map(\.position)).count == 1)
            let all = parts.flatMap(\.events).map(\.entityKey)
            // The line's machines, and its live counter (`counter_changed`, cached as the counter's state).
            #expect(all.filter { $0.hasPrefix("stats:event:") } == ["stats:event:Line-1.machines_running"])
            let keys = all.filter { $0.hasPrefix("resource:machine:") }
            #expect(keys.count == 400 && Set(keys).count == 400)
            #expect(keys.allSatisfy { Int($0.split(separator: "-").last!)! % 3 == 1 })
            // Nothing matches: one empty last part.
            var none: [SnapshotChunk] = []
            try await engine.snapshot(matching: Self.patterns("line:Line-9:*"), chunkSize: 150) { none.append($0) }
            #expect(none.count == 1 && none[0].events.isEmpty && none[0].isLast)
        }
    }

    @Test func aCacheWrittenBeforeTheIndexesIsIndexedAtStart() async throws {
        try await withRedisServer { server in
            // States as a hub without indexes left them: the cache key only.
            try await Self.withRedisEngine(server) { engine in
                // Idle: a running machine would add the line's counter to the line's states.
                _ = try await engine.append((0..<30).map { SampleEvents.validated(SampleEvents.machineStatus("M-\($0)", "idle", line: "Line-2")) })
            }
            let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
            let indexKeys = try await redis.send(["KEYS", "statushub:history:index*"])
            if case .array(let found) = indexKeys, !found.isEmpty { _ = try await redis.send(["DEL"] + found.compactMap(\.text)) }
            #expect(try await redis.send(["EXISTS", "statushub:history:indexes-built"]).integer == 0)
            try await Self.withRedisEngine(server) { engine in
                let deadline = ContinuousClock.now.advanced(by: .seconds(10))
                while try await redis.send(["EXISTS", "statushub:history:indexes-built"]).integer == 0 {
                    guard ContinuousClock.now < deadline else { throw TestSocket.Timeout(waitingFor: "the index build") }
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(try await engine.snapshot(matching: Self.patterns("line:Line-2:*")).events.count == 30)
                #expect(try await engine.snapshot(matching: Self.patterns("machine:*")).events.count == 30)
            }
            await redis.close()
        }
    }

    static func withRedisEngine(_ server: RedisServer, _ body: (RedisEngine) async throws -> Void) async throws {
        var config = HubConfig()
        config.redis.url = server.url
        config.redis.commandTimeoutSeconds = 10  // a liveness bound, as in `withEngine`: a starved run held a reply past 2 s
        var logger = Logger(label: "snapshot-index-test")
        logger.logLevel = .critical
        let engine = try RedisEngine(config: config, logger: logger)
        let runner = Task { try await engine.run(delivering: CollectingSink()) }
        defer { runner.cancel() }
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))  // liveness, not speed: starved CI runs are slow
        while !engine.isReady {
            guard ContinuousClock.now < deadline else { throw TestSocket.Timeout(waitingFor: "engine ready") }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await body(engine)
        runner.cancel()
        _ = await runner.result
        await engine.shutdown()
    }

    /// A hub node reading one line's snapshot over WebSocket gets every part, in order, then live events.
    @Test(arguments: EngineKind.allCases)
    func aDashboardReceivesEveryPartOfALargeSnapshot(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            for start in stride(from: 0, to: 1_300, by: 500) {
                // Idle: a running machine would add the line's counter to the line's states.
                let reply = try await HTTP.post(port: hub.port, events: (start..<min(1_300, start + 500)).map {
                    SampleEvents.machineStatus("M-\($0)", "idle", line: "Line-2")
                })
                #expect(reply.status == 202)
            }
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","id":"s","channels":["line:Line-2:*"],"snapshot":true}"#)
            #expect(try await socket.next()["op"] == .string("subscribed"))
            var received = 0
            var parts = 0
            while true {
                let part = try await socket.next()
                #expect(part["op"] == .string("snapshot"))
                parts += 1
                received += part["events"]?.arrayValue?.count ?? 0
                if part["more"] != .bool(true) { break }
            }
            #expect(received == 1_300)
            #expect(parts >= 3)
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-new", "idle", line: "Line-2"))
            #expect(try await socket.nextEvent()["entity_id"] == .string("M-new"))
            _ = await socket.close()
            // The same over HTTP, streamed.
            let state = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-2:*")
            #expect(state.status == 200)
            #expect(state.json["events"]?.arrayValue?.count == 1_301)
        }
    }
}
