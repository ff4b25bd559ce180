import Foundation
import Logging
import NIOCore
import NIOPosix
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

    /// Why `statushub serve` gives the engine's connections an event loop of their own (`EngineFactory.redisLoop`):
    /// NIO runs every task queued on a loop before it reads the loop's sockets again, so a reply that arrives while
    /// the loop is busy (a restart storm's thousands of upgrades and replays) waits unread, and the command's own
    /// timer, on the same loop, then takes it for a Redis that stopped answering. On a loop of its own the same
    /// command is answered.
    @Test func aBusyLoopTimesOutTheRepliesItHoldsNotThoseOfAnotherLoop() async throws {
        try await withRedisServer { server in
            let clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let redisLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let url = try RedisURL(parsing: server.url)
            let shared = try await RedisConnection.connect(to: url, commandTimeoutSeconds: 8, eventLoopGroup: clients)
            let apart = try await RedisConnection.connect(to: url, commandTimeoutSeconds: 8, eventLoopGroup: redisLoop)
            let probe = try await RedisConnection.connect(to: url, eventLoopGroup: redisLoop)
            // Both wait for an element that only comes once the clients' loop is busy, whatever a loaded machine's
            // timing (a reply due at a fixed time was read before a descheduled loop got to its busy task, twice).
            let onShared = Task { try await shared.send(["BLPOP", "list-a", "0"]) }
            let onItsOwn = Task { try await apart.send(["BLPOP", "list-b", "0"]) }
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let info = try await probe.send(["INFO", "clients"])
                if info.text?.contains("blocked_clients:2") == true { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            // Both sent, their timers running. The clients' loop is now held for 10 s (asleep, not spinning: a busy
            // loop is one that does not get back to its sockets), past the 8 s timeout, and the replies go out.
            let held = Atomic<Bool>(false)
            clients.next().execute {
                held.store(true, ordering: .releasing)
                let end = NIODeadline.now() + .seconds(10)
                while NIODeadline.now() < end { usleep(20_000) }
            }
            while !held.load(ordering: .acquiring), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(try await probe.send(["LPUSH", "list-a", "x"]) == .integer(1))
            #expect(try await probe.send(["LPUSH", "list-b", "y"]) == .integer(1))
            #expect(try await onItsOwn.value == .array([.string(Array("list-b".utf8)), .string(Array("y".utf8))]))
            await #expect(throws: RedisError.timeout) { try await onShared.value }
            await shared.close()
            await apart.close()
            await probe.close()
            try await clients.shutdownGracefully()
            try await redisLoop.shutdownGracefully()
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
        let port = try LoopbackPort.unused()
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
                #expect((595...600).contains(materialTTL))
                await redis.close()
            }
        }
    }

    /// A line-scoped key's check reads the line a state was written on from its entity's facts (`@<line>` after the
    /// rank) and reads the state itself only when they do not clear it: facts without a line (a hub from before wrote
    /// them) still end in the right answer, and are written again with the line.
    @Test func theLineCheckReadsTheFactsAndFallsBackToTheState() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                func scoped(_ json: String, _ line: String) -> ValidatedEvent {
                    var event = SampleEvents.validated(json)
                    event.writableLines = [line]
                    return event
                }
                let facts = "statushub:history:entity-facts"
                let first = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus("M-1", line: "Line-2"))])[0]
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                let written = try #require(try await redis.send(["HGET", facts, "resource:machine:M-1"]).text)
                #expect(written.contains("@Line-2"), "\(written)")
                _ = try await redis.send(["HSET", facts, "resource:machine:M-1", written.replacing("@Line-2", with: "")])

                let refused = try await engine.append([scoped(SampleEvents.machineStatus("M-1", "maintenance", line: "Line-3"), "Line-3")])
                #expect(refused[0] == Appended(id: first.id, foreignLine: "Line-2"))
                // An `@` after the rank's part (here in a status an older hub kept) is no line.
                let rankPart = try #require(written.replacing("@Line-2", with: "").split(separator: "\t", omittingEmptySubsequences: false).first)
                _ = try await redis.send(["HSET", facts, "resource:machine:M-1", rankPart + "\tx@Line-3\t"])
                let alsoRefused = try await engine.append([scoped(SampleEvents.machineStatus("M-1", "maintenance", line: "Line-3"), "Line-3")])
                #expect(alsoRefused[0] == Appended(id: first.id, foreignLine: "Line-2"))
                let taken = try await engine.append([scoped(SampleEvents.machineStatus("M-1", "maintenance", line: "Line-2"), "Line-2")])
                #expect(taken[0].stored && !taken[0].late)
                #expect(try await redis.send(["HGET", facts, "resource:machine:M-1"]).text?.contains("@Line-2") == true)
                // And the facts' line still orders: the same timestamp again is not late, an older one is.
                #expect(try await engine.append([SampleEvents.validated(SampleEvents.machineStatus("M-1", "idle", line: "Line-2"))])[0].late == false)
                let older = SampleEvents.machineStatus("M-1", "idle", line: "Line-2").replacing("14:23:45.678Z", with: "14:20:00.000Z")
                #expect(try await engine.append([SampleEvents.validated(older)])[0].late)
                await redis.close()
            }
        }
    }

    /// `machines_running` expires after the seed's 3600 s without a touch. With machine states cached longer
    /// (`cache_ttl.machine: 7200`), a quiet line's count vanished under machines still running, and went to -1 when
    /// they expired; the memory engine, whose counters never expire, kept 1 and then 0. The counter now lives at
    /// least as long as the states it counts (for ever when they do).
    @Test(arguments: [(300, 3600), (7200, 7200), (0, -1)])
    func aCounterOutlivesTheStatesItCounts(machineTTL: Int, expectedCounterTTL: Int) async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.cacheTTL.machine = machineTTL }) { engine, _ in
                _ = try await engine.append([SampleEvents.validated(SampleEvents.machineStatus("M-1", "running", line: "Line-2"))])
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                let key = "stats:line:Line-2:machines_running"
                #expect(try await redis.send(["GET", key]).text == "1")
                let ttl = try #require(try await redis.send(["TTL", key]).integer)
                if expectedCounterTTL < 0 {
                    #expect(ttl == -1)
                } else {
                    #expect((expectedCounterTTL - 10...expectedCounterTTL).contains(Int(ttl)), "\(ttl)")
                }
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
                #expect(try await engine.history(after: EventID(milliseconds: 1, sequence: 0), limit: 100) == nil)
                // Except `0-0`, the whole history, while nothing was trimmed (as on the memory engine).
                #expect(try await engine.history(after: .zero, limit: 100) == expected)
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

    /// Concurrent requests share script calls (`AppendBatcher`): each still gets exactly its own outcomes, in its
    /// order; all ids are one total order matching the stream and the delivery; an idempotency key sent by two
    /// requests at once is stored once and acknowledged to both with the same id.
    @Test func concurrentAppendsShareScriptCallsAndEachGetsItsOwnOutcomes() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, sink in
                let requests = (0..<200).map { request in
                    (0..<(1 + request % 3)).map { n in
                        Self.event(.machine, "M-\(request)-\(n)", idempotencyKey: request % 50 == 7 && n == 0 ? "shared" : "k-\(request)-\(n)")
                    }
                }
                let answers = try await withThrowingTaskGroup(of: (Int, [Appended]).self) { group in
                    for (index, events) in requests.enumerated() {
                        group.addTask { (index, try await engine.append(events)) }
                    }
                    var answers: [Int: [Appended]] = [:]
                    for try await (index, appended) in group { answers[index] = appended }
                    return answers
                }
                for (index, events) in requests.enumerated() {
                    let appended = try #require(answers[index])
                    #expect(appended.count == events.count)
                    #expect(zip(appended, appended.dropFirst()).allSatisfy { $0.id < $1.id || $1.duplicate || $0.duplicate })
                }
                // Requests 7, 57, 107 and 157 carry "shared" on their first event: one stored, three duplicates.
                let shared = [7, 57, 107, 157].map { answers[$0]![0] }
                #expect(shared.filter { !$0.duplicate }.count == 1 && Set(shared.map(\.id)).count == 1)
                let stored = answers.values.flatMap { $0 }.filter { !$0.duplicate }.map(\.id).sorted()
                #expect(stored.count == requests.joined().count - 3 && Set(stored).count == stored.count)
                #expect(try await sink.waitFor(count: stored.count).map(\.id) == stored)
                // Fewer script calls than requests: they were shared.
                #expect(try await Self.calls(of: "evalsha", on: server) < requests.count)
            }
        }
    }

    /// A restart storm: every subscriber of a node resuming with `since` at once, most from the same position.
    /// Sent one by one, their reads queued on the read connection and those at the back outlived the command
    /// timeout (the subscribers got `unavailable`, then a resync they did not need).
    @Test func aResumeStormSharesItsHistoryReads() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let ids = (try await engine.append((1...600).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                let before = try await Self.calls(of: "xrange", on: server)
                let fromOnePosition = try await Self.resume(engine, 2_000, from: { _ in ids[0] }, limit: 500)
                #expect(fromOnePosition.count == 2_000 && fromOnePosition.allSatisfy { $0 == 500 })
                let sharedReads = try await Self.calls(of: "xrange", on: server) - before
                #expect(sharedReads <= 20, "\(sharedReads) XRANGE calls for 2,000 resumes from one position")

                // From 100 positions: each page read about once, and every resume answered.
                let fromMany = try await Self.resume(engine, 2_000, from: { ids[$0 % 100] }, limit: 500)
                #expect(fromMany.count == 2_000 && fromMany.allSatisfy { $0 == 500 })
                let reads = try await Self.calls(of: "xrange", on: server) - before - sharedReads
                #expect(reads <= 100 + 2 * SharedHistoryReads.defaultMaxSending, "\(reads) XRANGE calls for 100 positions")
            }
        }
    }

    /// A Redis that stalls for a moment under a storm (here SIGSTOP, longer than the command timeout) delays the
    /// waiting resumes instead of sending every one of them to resync: the shared read is tried again.
    @Test func resumesWaitOutAShortRedisStall() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, _ in
                let ids = (try await engine.append((1...10).map { Self.event(.machine, "M-\($0)") })).map(\.id)
                server.pause()
                let resumes = Task { try await Self.resume(engine, 200, from: { ids[$0 % 2] }, limit: 100) }
                try await Task.sleep(for: .milliseconds(1300))
                server.resume()
                let counts = try await resumes.value
                #expect(counts.count == 200 && counts.allSatisfy { $0 == 9 || $0 == 8 })
            }
        }
    }

    /// The number of events each of `count` concurrent history reads returned.
    static func resume(
        _ engine: RedisEngine, _ count: Int, from position: @escaping @Sendable (Int) -> EventID, limit: Int
    ) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<count {
                group.addTask { try await engine.history(after: position(index), limit: limit)?.count ?? -1 }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    /// How many times `server` ran `command`, from `INFO commandstats`.
    static func calls(of command: String, on server: RedisServer) async throws -> Int {
        let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
        let stats = String(decoding: try #require(try await redis.send(["INFO", "commandstats"]).bytes), as: UTF8.self)
        await redis.close()
        let line = stats.split(separator: "\r\n").first { $0.hasPrefix("cmdstat_\(command):") }
        return line.flatMap { $0.split(separator: ",").first?.split(separator: "=").last }.flatMap { Int($0) } ?? 0
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

    @Test func snapshotPlanPrunesEntityTypesAndUsesLineIndexes() throws {
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
        // A line's patterns read that line's index, not every type's.
        #expect(try plan("line:Line-2:*").scanned.isEmpty)
        #expect(SnapshotPlan(patterns: [try ChannelPattern(parsing: "line:Line-2:*")]).indexes == ["line:Line-2"])
        #expect(SnapshotPlan(patterns: [try ChannelPattern(parsing: "line:Line-2:alerts:*")]).indexes.isEmpty)
        #expect(SnapshotPlan(patterns: [try ChannelPattern(parsing: "line:Line-2:*").scoped(to: "acme")]).indexes == ["@acme:line:Line-2"])
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
                // Ten command timeouts: far from "held for ever", and clear of a loaded machine's scheduling noise.
                #expect(ContinuousClock.now - started < .seconds(5))
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

    // MARK: engine: idempotency, retention, staleness, gaps

    /// The call records behind a lost answer's resend keys: the recorded id answers a resend as a duplicate, a
    /// position of another tenant's event or a call that never ran stores the resend (once), and records of
    /// answered calls do not pile up.
    @Test func resendKeysOfALostAnswerFindTheCallRecord() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.redis.commandTimeoutSeconds = 0.5 }) { engine, sink in
                server.pause()
                let lost = await #expect(throws: EngineUnavailable.self) {
                    try await engine.append([Self.event(.machine, "M-1"), Self.event(.machine, "M-2", tenant: "acme")])
                }
                guard case .unknown(let keys)? = lost?.outcome, keys.count == 2, let mine = keys[0], let theirs = keys[1] else {
                    Issue.record("expected an unknown outcome with two keys, got \(String(describing: lost))")
                    server.resume()
                    return
                }
                server.resume()
                // The hung call ran once Redis resumed: both events are stored and delivered.
                let stored = try await sink.waitFor(count: 2)
                try await eventually("ready after Redis resumed") { engine.isReady }

                // Another tenant's position names nothing of acme's: acme's event is stored, not a duplicate.
                let forged = try await engine.append([Self.event(.machine, "M-3", idempotencyKey: mine, tenant: "acme")])
                #expect(forged.count == 1 && !forged[0].duplicate)
                let resent = try await engine.append([
                    Self.event(.machine, "M-1", idempotencyKey: mine), Self.event(.machine, "M-2", idempotencyKey: theirs, tenant: "acme"),
                ])
                #expect(resent == stored.map { Appended(id: $0.id, duplicate: true) })

                // A call that never ran has no record: the resend is stored, and a retry of it is its duplicate.
                let unknownCall = CallRecords.hubKey(token: CallRecords.newToken(), position: 0)
                let first = try await engine.append([Self.event(.machine, "M-4", idempotencyKey: unknownCall)])[0]
                #expect(!first.duplicate)
                #expect(try await engine.append([Self.event(.machine, "M-4", idempotencyKey: unknownCall)]) == [Appended(id: first.id, duplicate: true)])

                // Each call deletes the records of the calls answered before it.
                for index in 0..<20 { _ = try await engine.append([Self.event(.machine, "M-\(index)")]) }
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                let records = try await redis.send(["KEYS", "statushub:history:call:*"]).array ?? []
                await redis.close()
                // The lost call's record, and the last call's.
                #expect(records.count == 2, "\(records.compactMap(\.text))")
                #expect(try await sink.waitFor(count: 24).count == 24)
            }
        }
    }

    @Test func idempotencyKeysAcknowledgeRetriesWithTheFirstID() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.server.idempotencyWindowSeconds = 1 }) { engine, sink in
                let first = try await engine.append([Self.event(.machine, "M-1", idempotencyKey: "k-1")])[0]
                #expect(!first.duplicate)
                let retry = try await engine.append([Self.event(.machine, "M-1", status: "idle", idempotencyKey: "k-1")])
                #expect(retry == [Appended(id: first.id, duplicate: true)])
                // Nothing of the retry was stored: the cache still holds the first acceptance.
                #expect(try await engine.latest(entityKey: "resource:machine:M-1")?.id == first.id)

                // Within one batch, the second use of a key is a duplicate of the first, stored by the same batch.
                let batch = try await engine.append([
                    Self.event(.machine, "M-2", idempotencyKey: "k-2"),
                    Self.event(.machine, "M-3"),
                    Self.event(.machine, "M-2", status: "idle", idempotencyKey: "k-2"),
                    Self.event(.machine, "M-4", idempotencyKey: "k-1"),
                ])
                #expect(!batch[0].duplicate && !batch[1].duplicate && batch[0].id < batch[1].id)
                #expect(batch[2] == Appended(id: batch[0].id, duplicate: true))
                #expect(batch[3] == Appended(id: first.id, duplicate: true))

                // Stored, published and in the history once each.
                #expect(try await sink.waitFor(count: 3).map(\.id) == [first.id, batch[0].id, batch[1].id])
                #expect(try await engine.history(after: first.id, limit: 100)?.map(\.id) == [batch[0].id, batch[1].id])

                // Remembered for the window, under the stream key's prefix; after it, the key is new again.
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await redis.send(["GET", "statushub:history:idem:k-1"]) == .string(Array(first.id.description.utf8)))
                let ttl = try #require(try await redis.send(["PTTL", "statushub:history:idem:k-1"]).integer)
                #expect((1...1000).contains(ttl))
                try await eventually("k-1 forgotten", timeout: .seconds(3)) {
                    try await redis.send(["EXISTS", "statushub:history:idem:k-1"]) == .integer(0)
                }
                let later = try await engine.append([Self.event(.machine, "M-1", idempotencyKey: "k-1")])[0]
                #expect(!later.duplicate && later.id > batch[1].id)
                #expect(try await sink.waitFor(count: 4).last?.id == later.id)
                await redis.close()
            }
        }
    }

    @Test func historyIsTrimmedByAge() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: { $0.redis.historyMaxAgeSeconds = 1 }) { engine, _ in
                let old = try await engine.append((0..<150).map { Self.event(.machine, "M-\($0)") }).map(\.id)
                #expect(try await engine.history(after: old[0], limit: 1000)?.count == 149)
                try await Task.sleep(for: .milliseconds(1_100))
                let fresh = try await engine.append([Self.event(.machine, "M-new")]).map(\.id)

                // `MINID ~` drops whole stream nodes once all their entries are too old: the oldest are gone, so a
                // resume from them is a gap, not a partial replay.
                #expect(try await engine.history(after: old[0], limit: 1000) == nil)
                #expect(try await !engine.historyIsComplete(after: old[0]))
                let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                let length = try #require(try await redis.send(["XLEN", "statushub:history"]).integer)
                #expect(length < 151)
                await redis.close()
                // The newest position still resumes (with nothing to replay).
                #expect(try await engine.history(after: fresh[0], limit: 10) == [])
            }
        }
    }

    @Test func expiredStateBecomesExactlyOneStaleEventAcrossNodes() async throws {
        try await withRedisServer { server in
            let ttls: (inout HubConfig) -> Void = {
                $0.cacheTTL.machine = 1
                $0.cacheTTL.operator = 0
            }
            // Sweeping on a timer is off (60 s): expiry notifications must do the work.
            try await withEngine(server, configure: ttls) { nodeA, sinkA in
                try await withEngine(server, configure: ttls) { nodeB, sinkB in
                    let redis = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                    // Keys that are not the hub's states expire too, and are none of its business.
                    _ = try await redis.send(["SET", "other-app:session", "x", "PX", "300"])
                    _ = try await redis.send(["SET", "resource:machine:written-by-someone-else", "x", "PX", "300"])

                    let m1 = Self.event(.machine, "M-1", line: "Line-2")
                    let first = try await nodeA.append([m1, Self.event(.operator, "O-1")]).map(\.id)
                    // A state that never expires (ttl 0) needs no shadow; one that does has one.
                    #expect(try await redis.send(["HEXISTS", "statushub:history:last-states", "resource:operator:O-1"]) == .integer(0))
                    #expect(try await redis.send(["HEXISTS", "statushub:history:last-states", "resource:machine:M-1"]) == .integer(1))

                    // M-2 is refreshed (through the other node) more often than its TTL: never stale meanwhile.
                    let started = ContinuousClock.now
                    while ContinuousClock.now - started < .seconds(2.5) {
                        _ = try await nodeB.append([Self.event(.machine, "M-2")])
                        try await Task.sleep(for: .milliseconds(300))
                    }
                    try await eventually("M-1 stale on both nodes") {
                        !sinkA.stale(for: "resource:machine:M-1").isEmpty && !sinkB.stale(for: "resource:machine:M-1").isEmpty
                    }
                    #expect(sinkA.stale(for: "resource:machine:M-2").isEmpty && sinkB.stale(for: "resource:machine:M-2").isEmpty)

                    // Once M-2 is no longer refreshed, it goes stale too.
                    try await eventually("M-2 stale on both nodes") {
                        !sinkA.stale(for: "resource:machine:M-2").isEmpty && !sinkB.stale(for: "resource:machine:M-2").isEmpty
                    }
                    // A second claim would have arrived by now.
                    try await Task.sleep(for: .milliseconds(500))
                    for key in ["resource:machine:M-1", "resource:machine:M-2"] {
                        let onA = sinkA.stale(for: key).map(\.id)
                        #expect(onA.count == 1, "\(key): \(onA.count) stale events on node A")
                        #expect(onA == sinkB.stale(for: key).map(\.id), "\(key): both nodes deliver the same one")
                    }
                    #expect(sinkA.received.filter(\.isStale).count == 2 && sinkB.received.filter(\.isStale).count == 2)

                    // The stale event: news (not state) on the expired state's channels, carrying that state.
                    let stale = try #require(sinkA.stale(for: "resource:machine:M-1").first)
                    #expect(!stale.carriesState && stale.channels == StoredEvent(id: first[0], validated: m1).channels)
                    let json = try #require(try JSONSerialization.jsonObject(with: Data(stale.json)) as? [String: Any])
                    #expect(json["event_id"] as? String == stale.id.description)
                    #expect(json["entity_id"] as? String == "M-1" && json["line"] as? String == "Line-2")
                    let data = try #require(json["data"] as? [String: Any])
                    #expect((data["last_state"] as? [String: Any])?["event_id"] as? String == first[0].description)
                    #expect((json["metadata"] as? [String: Any])?["triggered_by"] as? String == "ttl_expiry")
                    // Stored like any event: in the history; the shadow and deadline are consumed; the notice took the
                    // state's place, expiring after `server.stale_kept_seconds` with no deadline of its own.
                    #expect(try await nodeB.history(after: first[1], limit: 100)?.contains(stale) == true)
                    #expect(try await redis.send(["HEXISTS", "statushub:history:last-states", "resource:machine:M-1"]) == .integer(0))
                    #expect(try await redis.send(["ZSCORE", "statushub:history:deadlines", "resource:machine:M-1"]) == .null)
                    #expect(try await nodeA.latest(entityKey: "resource:machine:M-1")?.id == stale.id)
                    let kept = try await redis.send(["TTL", "resource:machine:M-1"]).integer ?? 0
                    #expect(kept > 86_000 && kept <= 86_400, "\(kept)")
                    #expect(try await nodeA.latest(entityKey: "resource:operator:O-1")?.id == first[1])
                    await redis.close()
                }
            }
        }
    }

    @Test func expiriesNoNodeHeardOfAreFoundBySweeping() async throws {
        // CONFIG is disabled, as on many managed Redis services: no expiry notifications can be turned on.
        try await withRedisServer(extraArguments: ["--rename-command", "CONFIG", ""]) { server in
            let ttl: (inout HubConfig) -> Void = { $0.cacheTTL.machine = 1 }
            try await withEngine(server, configure: ttl, staleSweep: .milliseconds(300)) { engine, sink in
                let id = try await engine.append([Self.event(.machine, "M-1")])[0].id
                try await eventually("M-1 stale, found by the periodic sweep") { !sink.stale(for: "resource:machine:M-1").isEmpty }
                let stale = try #require(sink.stale(for: "resource:machine:M-1").first)
                #expect(stale.jsonString.contains(#""event_id":"\#(id)""#))
            }
            // A state that expires while no node runs is published by the first node to start.
            let m2 = try await withEngine(server, configure: ttl) { engine, _ in
                try await engine.append([Self.event(.machine, "M-2")])[0].id
            }
            try await Task.sleep(for: .milliseconds(1_500))
            try await withEngine(server, configure: ttl) { engine, sink in
                try await eventually("M-2 stale, found when the node started") { !sink.stale(for: "resource:machine:M-2").isEmpty }
                try await Task.sleep(for: .milliseconds(300))
                #expect(sink.received.filter(\.isStale).count == 1)
                #expect(try await engine.history(after: m2, limit: 10)?.map(\.id) == sink.received.map(\.id))
            }
        }
    }

    @Test func redisRestartedWithoutItsDataIsADeliveryGap() async throws {
        try await withRedisServer { server in
            try await withEngine(server) { engine, sink in
                let before = try await engine.append([Self.event(.machine, "M-1")])[0].id
                _ = try await sink.waitFor(count: 1)
                #expect(sink.gaps.isEmpty)

                try await server.restart()
                try await eventually("gap reported") { sink.gaps.count == 1 }
                try await eventually("ready after restart") { engine.isReady }
                let after = try await engine.append([Self.event(.machine, "M-2")])[0].id
                try await eventually("M-2 delivered") { sink.received.last?.id == after }
                #expect(sink.gaps.count == 1)
                #expect(try await engine.history(after: before, limit: 10) == nil)
            }
        }
    }

    @Test func catchUpPastTrimmedHistoryIsAGapThenWhatIsLeft() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: {
                $0.redis.historyMaxLength = 100
                $0.redis.reconnectInitialSeconds = 1
                $0.redis.reconnectMaxSeconds = 1
            }) { engine, sink in
                let before = try await engine.append([Self.event(.machine, "M-0")]).map(\.id)
                _ = try await sink.waitFor(count: 1)
                let admin = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).integer == 1)
                try await eventually("subscriber noticed") { engine.subscriberState != .connected }
                let missed = try await engine.append((1...1000).map { Self.event(.machine, "M-\($0)") }).map(\.id)

                try await eventually("gap reported") { sink.gaps.count == 1 }
                try await eventually("subscriber back") { engine.subscriberState == .connected }
                let live = try await engine.append([Self.event(.machine, "M-live")]).map(\.id)
                try await eventually("live event delivered") { sink.received.last?.id == live[0] }
                // After the gap notice: what the history still held (the newest ~100), then live — once each, in order.
                let ids = sink.received.map(\.id)
                #expect(ids.first == before[0] && ids.count > 2 && ids.count < 1002)
                #expect(Array(ids.dropFirst()) == Array((missed + live).suffix(ids.count - 1)))
                #expect(sink.gaps.count == 1)
                await admin.close()
            }
        }
    }

    @Test func aSubscriberThatDeliveredNothingYetCatchesUpToo() async throws {
        try await withRedisServer { server in
            // The history exists before this node starts; what is in it is not this node's to deliver.
            _ = try await withEngine(server) { engine, _ in try await engine.append([Self.event(.machine, "M-0")]) }
            try await withEngine(server, configure: {
                $0.redis.reconnectInitialSeconds = 1
                $0.redis.reconnectMaxSeconds = 1
            }) { engine, sink in
                let admin = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).integer == 1)
                try await eventually("subscriber noticed") { engine.subscriberState != .connected }
                let missed = try await engine.append((1...3).map { Self.event(.machine, "M-\($0)") }).map(\.id)
                try await eventually("subscriber back") { engine.subscriberState == .connected }
                #expect(try await sink.waitFor(count: 3).map(\.id) == missed)
                try await Task.sleep(for: .milliseconds(100))
                #expect(sink.count == 3 && sink.gaps.isEmpty)
                await admin.close()
            }
        }
    }

    /// The same on a Redis with no history yet (a fresh plant, or the events a hung Redis runs once it resumes):
    /// the subscriber's position is the history's beginning, not whatever is newest when it comes back.
    @Test func aSubscriberThatStartedOnAnEmptyHistoryCatchesUpToo() async throws {
        try await withRedisServer { server in
            try await withEngine(server, configure: {
                $0.redis.reconnectInitialSeconds = 1
                $0.redis.reconnectMaxSeconds = 1
            }) { engine, sink in
                let admin = try await RedisConnection.connect(to: RedisURL(parsing: server.url))
                #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).integer == 1)
                try await eventually("subscriber noticed") { engine.subscriberState != .connected }
                let missed = try await engine.append((1...3).map { Self.event(.machine, "M-\($0)") }).map(\.id)
                try await eventually("subscriber back") { engine.subscriberState == .connected }
                #expect(try await sink.waitFor(count: 3).map(\.id) == missed)
                let later = try await engine.append([Self.event(.machine, "M-4")]).map(\.id)
                #expect(try await sink.waitFor(count: 4).map(\.id) == missed + later)
                try await Task.sleep(for: .milliseconds(100))
                #expect(sink.count == 4 && sink.gaps.isEmpty)
                await admin.close()
            }
        }
    }

    /// Redis with AOF (`appendfsync always`) is killed with SIGKILL while writers append continuously, each retrying
    /// a refused event with the same idempotency key; then restarted on the same data. Nothing acknowledged may be
    /// lost — from the history or from a node's delivery — and nothing may be stored or delivered twice.
    @Test func acknowledgedEventsSurviveRedisKilledWithAOF() async throws {
        try await withRedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"]) { server in
            try await withEngine(server) { engine, sink in
                let start = try await engine.append([Self.event(.machine, "START")])[0].id
                _ = try await sink.waitFor(count: 1)
                let writers = 4
                let perWriter = 400
                let tally = try await Self.appendWhileKilled(engine, server, writers: writers, perWriter: perWriter)
                #expect(tally.acknowledged.count == writers * perWriter)
                let acknowledged = Set(tally.acknowledged.values)

                // The history (read from before the first of them) holds every acknowledged event, each once.
                let stored = try #require(try await Self.wholeHistory(engine, after: start), "the history has a gap")
                let lostFromHistory = acknowledged.subtracting(stored.map(\.id)).count
                let storedTwice = Self.keysStoredTwice(stored)

                // The node's sink sees every acknowledged event — live or by catching up — exactly once.
                try? await eventually("every acknowledged event delivered", timeout: .seconds(20)) {
                    acknowledged.isSubset(of: Set(sink.received.map(\.id)))
                }
                try await Task.sleep(for: .milliseconds(200))
                let received = sink.received.map(\.id).filter { $0 != start }
                let lost = acknowledged.subtracting(received).count
                let duplicates = received.count - Set(received).count
                print(
                    "redis kill -9 (AOF, appendfsync always): acknowledged=\(acknowledged.count) received=\(Set(received).count) lost=\(lost) duplicates=\(duplicates) lost_from_history=\(lostFromHistory) stored_twice=\(storedTwice) refused_attempts=\(tally.refused) stored_despite_refusal=\(tally.storedDespiteRefusal) gaps=\(sink.gaps.count)"
                )
                #expect(tally.refused > 0, "the kill happened while appends were in flight")
                #expect(lostFromHistory == 0 && storedTwice == 0)
                #expect(lost == 0 && duplicates == 0)
                #expect(received == received.sorted())
                #expect(sink.gaps.isEmpty)
            }
        }
    }

    /// Every event after `id`, page by page; nil if the history no longer reaches back to `id`.
    static func wholeHistory(_ engine: RedisEngine, after id: EventID) async throws -> [StoredEvent]? {
        var stored: [StoredEvent] = []
        var after = id
        while true {
            guard let page = try await engine.history(after: after, limit: 1000) else { return nil }
            guard let last = page.last else { return stored }
            stored += page
            after = last.id
        }
    }

    /// How many idempotency keys appear on more than one stored event.
    static func keysStoredTwice(_ events: [StoredEvent]) -> Int {
        var copies: [String: Int] = [:]
        for event in events {
            let json = try? JSONSerialization.jsonObject(with: Data(event.json)) as? [String: Any]
            if let key = json?["idempotency_key"] as? String { copies[key, default: 0] += 1 }
        }
        return copies.values.filter { $0 > 1 }.count
    }

    /// What one writer of the AOF test saw.
    struct Tally: Sendable {
        var acknowledged: [String: EventID] = [:]
        var refused = 0
        /// Retries answered `duplicate`: the refused attempt had been stored after all.
        var storedDespiteRefusal = 0
    }

    /// Runs `writers` writers; kills Redis (SIGKILL) once 400 events are acknowledged and restarts it 300 ms later.
    static func appendWhileKilled(_ engine: RedisEngine, _ server: RedisServer, writers: Int, perWriter: Int) async throws -> Tally {
        let progress = Counter()
        return try await withThrowingTaskGroup(of: Tally.self) { group in
            for writer in 0..<writers {
                group.addTask { try await appendContinuously(engine, writer: writer, count: perWriter, progress: progress) }
            }
            try await eventually("appends flowing") { progress.value >= 400 }
            await server.kill9()
            try await Task.sleep(for: .milliseconds(300))
            try await server.restart()
            var total = Tally()
            for try await part in group {
                total.acknowledged.merge(part.acknowledged) { first, _ in first }
                total.refused += part.refused
                total.storedDespiteRefusal += part.storedDespiteRefusal
            }
            return total
        }
    }

    /// Appends `count` events one at a time, retrying each refused one (same idempotency key) until acknowledged.
    static func appendContinuously(_ engine: RedisEngine, writer: Int, count: Int, progress: Counter) async throws -> Tally {
        var tally = Tally()
        var index = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while index < count, ContinuousClock.now < deadline {
            let key = "w\(writer)-\(index)"
            do {
                let appended = try await engine.append([event(.machine, "M-\(writer)-\(index % 25)", idempotencyKey: key)])[0]
                tally.acknowledged[key] = appended.id
                if appended.duplicate { tally.storedDespiteRefusal += 1 }
                index += 1
                progress.increment()
            } catch is EngineUnavailable {
                tally.refused += 1
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        return tally
    }

    @Test func keyspaceFlagsAreAddedToWhatIsThere() {
        #expect(ExpiryNotifications.flagsAdding(to: "") == "Ex")
        #expect(ExpiryNotifications.flagsAdding(to: "xE") == nil)
        #expect(ExpiryNotifications.flagsAdding(to: "AKE") == nil)
        #expect(ExpiryNotifications.flagsAdding(to: "Kg") == "KgEx")
        #expect(ExpiryNotifications.flagsAdding(to: "KA") == "KAE")
    }

    @Test func streamBoundsDecideWhatAResumeCanReplay() {
        func id(_ ms: UInt64, _ seq: UInt64 = 0) -> EventID { EventID(milliseconds: ms, sequence: seq) }
        let trimmed = StreamBounds(exists: true, lastGenerated: id(50), firstEntry: id(20), maxDeleted: id(19))
        #expect(trimmed.holdsEverything(after: id(20)) && trimmed.holdsEverything(after: id(30)))
        #expect(trimmed.holdsEverything(after: id(50)))
        #expect(trimmed.holdsEverything(after: id(19)))  // the last entry trimmed: nothing after it is gone
        #expect(!trimmed.holdsEverything(after: id(18)))
        #expect(!trimmed.holdsEverything(after: id(51)))
        // Age trimming can empty a quiet stream; its newest id still resumes.
        let emptied = StreamBounds(exists: true, lastGenerated: id(50), firstEntry: nil, maxDeleted: id(50))
        #expect(emptied.holdsEverything(after: id(50)) && !emptied.holdsEverything(after: id(40)))
        // A recreated stream (Redis lost its data) knows nothing from before it.
        let recreated = StreamBounds(exists: true, lastGenerated: id(900), firstEntry: id(800))
        #expect(!recreated.holdsEverything(after: id(50)))
        #expect(!StreamBounds(exists: false).holdsEverything(after: id(50)))
    }

    @Test func onlyEntityKeysConcernStaleness() {
        #expect(RedisKeys.isEntityKey("resource:machine:M-1") && RedisKeys.isEntityKey("workorder:WO-1"))
        #expect(RedisKeys.isEntityKey("allocation:A-1") && RedisKeys.isEntityKey("resource:operator:O-1"))
        #expect(!RedisKeys.isEntityKey("resource:machine:") && !RedisKeys.isEntityKey("statushub:history:idem:k"))
        #expect(!RedisKeys.isEntityKey("other-app:session"))
        let keys = RedisKeys(streamKey: "hub-a:history")
        #expect(keys.lastStates == "hub-a:history:last-states" && keys.idempotencyKey("k") == "hub-a:history:idem:k")
        #expect(RedisKeys.expiredChannel(database: 3) == "__keyevent@3__:expired")
    }

    // MARK: helpers

    /// Runs a Redis engine against `server` for the body, with fast reconnects, then stops and shuts it down.
    func withEngine<T>(
        _ server: RedisServer,
        configure: (inout HubConfig) -> Void = { _ in },
        healthCheck: Duration = .seconds(5),
        staleSweep: Duration = .seconds(60),
        _ body: (RedisEngine, CollectingSink) async throws -> T
    ) async throws -> T {
        var config = HubConfig()
        config.redis.url = server.url
        config.redis.reconnectInitialSeconds = 0.05
        config.redis.reconnectMaxSeconds = 0.2
        config.redis.commandTimeoutSeconds = 1
        configure(&config)
        var logger = Logger(label: "redis-engine-test")
        logger.logLevel = .critical
        let engine = try RedisEngine(
            config: config, logger: logger, healthCheckInterval: healthCheck, staleSweepInterval: staleSweep)
        let sink = CollectingSink()
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
        status: String = "running", line: String? = nil, idempotencyKey: String? = nil, tenant: String = Tenant.defaultName
    ) -> ValidatedEvent {
        let linePart = line.map { #""line":"\#($0)","# } ?? ""
        let keyPart = idempotencyKey.map { #""idempotency_key":"\#($0)","# } ?? ""
        let body = #""data":{"current_status":"\#(status)"},"entity_id":"\#(id)","entity_type":"\#(entityType.rawValue)","event_type":"\#(eventType.rawValue)",\#(keyPart)\#(linePart)"metadata":{"source":"t","triggered_by":"t"},"received_at":"2025-01-01T00:00:00.000Z","timestamp":"2025-01-01T00:00:00.000Z"}"#
        return ValidatedEvent(
            eventType: eventType, entityType: entityType, entityID: id, line: line, bodyAfterID: Array(body.utf8),
            idempotencyKey: idempotencyKey, tenant: tenant)
    }
}

/// A count shared by concurrent tasks.
final class Counter: Sendable {
    private let count = Atomic(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
