import Foundation
import Logging
import StatusHubCore
import StatusHubRedis
import StatusHubServer
import Synchronization
import Testing

/// Runs an engine (and, for Redis, its own redis-server) for the body, then stops it.
/// The shipped catalog without the hub's counters and sets (`90-hub.yaml`): for tests that count the events an
/// engine publishes, which a counter's `counter_changed` would add to (`TallyTests` covers those).
let catalogWithoutTallies: Catalog = {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/catalog")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return try! CatalogLoader.load(
        directory: nil, files: files.filter { $0.hasSuffix(".yaml") && $0 != "90-hub.yaml" }.sorted().map { directory.appendingPathComponent($0).path })
}()

/// - Parameter tallies: whether the engine keeps the catalog's counters (which publish events of their own).
func withEngine<T: Sendable>(
    _ kind: EngineKind, tallies: Bool = false, configure: (inout HubConfig) -> Void = { _ in },
    _ body: (any Engine, CollectingSink) async throws -> T
) async throws -> T {
    func run(_ url: String?) async throws -> T {
        var config = HubConfig()
        if !tallies { config.catalog = catalogWithoutTallies }
        config.redis.url = url
        config.redis.reconnectMaxSeconds = 0.5
        // A liveness bound, not the 2 s default: a starved full-suite run held a reply past 2 s, which the engine
        // rightly takes for a lost connection, in tests about something else. Tests of the timeout set their own.
        config.redis.commandTimeoutSeconds = 10
        configure(&config)
        let engine: any Engine = if url != nil { try RedisEngine(config: config, logger: Logger(label: "test")) } else { MemoryEngine(config: config) }
        let sink = CollectingSink()
        let runner = Task { try await engine.run(delivering: sink) }
        defer { runner.cancel() }
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))  // liveness, not speed: starved CI runs are slow
        while !engine.isReady {
            guard ContinuousClock.now < deadline else { throw TestSocket.Timeout(waitingFor: "engine ready") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let result = try await body(engine, sink)
        runner.cancel()
        _ = await runner.result
        return result
    }
    switch kind {
    case .memory: return try await run(nil)
    case .redis: return try await withRedisServer { redis in try await run(redis.url) }
    }
}

/// The engines the contract suite runs against: the two of `EngineKind`, and the partitioned Redis engine with three
/// partitions on three independent redis-servers (`redis.shards`) and on a three-master Redis Cluster
/// (`redis.cluster`).
enum ContractEngine: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case redis
    case threeShards
    case threeMasterCluster

    var testDescription: String { rawValue }
    var isPartitioned: Bool { self == .threeShards || self == .threeMasterCluster }
}

func withEngine<T: Sendable>(
    _ kind: ContractEngine, configure: (inout HubConfig) -> Void = { _ in },
    _ body: (any Engine, CollectingSink) async throws -> T
) async throws -> T {
    switch kind {
    case .memory: return try await withEngine(EngineKind.memory, configure: configure, body)
    case .redis: return try await withEngine(EngineKind.redis, configure: configure, body)
    case .threeShards:
        return try await withShards(3) { shards in
            try await withPartitionedEngine(shards: shards.map(\.url), partitions: 3, configure: configure) { engine, sink in
                try await body(engine, sink)
            }
        }
    case .threeMasterCluster:
        return try await withRedisCluster { cluster in
            try await withPartitionedEngine(cluster: cluster, partitions: 3, configure: configure) { engine, sink in
                try await body(engine, sink)
            }
        }
    }
}

/// A `PartitionedRedisEngine` on `cluster` (`redis.cluster`, every node a seed), running and with every partition
/// ready, for the body.
func withPartitionedEngine<T: Sendable>(
    cluster: RedisCluster, partitions: Int, configure: (inout HubConfig) -> Void = { _ in },
    _ body: (PartitionedRedisEngine, CollectingSink) async throws -> T
) async throws -> T {
    try await withPartitionedEngine(shards: [], partitions: partitions, configure: { config in
        config.redis.cluster = cluster.seeds.map(\.description)
        configure(&config)
    }, body)
}

/// `count` redis-servers for the body, all stopped however it ends.
func withShards<T>(_ count: Int, extraArguments: [String] = [], _ body: ([RedisServer]) async throws -> T) async throws -> T {
    var servers: [RedisServer] = []
    do {
        for _ in 0..<count { servers.append(try await RedisServer.start(extraArguments: extraArguments)) }
        let result = try await body(servers)
        for server in servers { await server.destroy() }
        return result
    } catch {
        for server in servers { await server.destroy() }
        throw error
    }
}

/// A `PartitionedRedisEngine` over `shards` (or, with one URL and no shards, `redis.url`), running and with every
/// partition ready, for the body.
func withPartitionedEngine<T: Sendable>(
    shards: [String], partitions: Int, asURL: Bool = false, configure: (inout HubConfig) -> Void = { _ in },
    _ body: (PartitionedRedisEngine, CollectingSink) async throws -> T
) async throws -> T {
    var config = HubConfig()
    config.catalog = catalogWithoutTallies
    if asURL { config.redis.url = shards[0] } else { config.redis.shards = shards }
    config.redis.partitions = partitions
    config.redis.reconnectMaxSeconds = 0.5
    configure(&config)
    let engine = try PartitionedRedisEngine(config: config, logger: Logger(label: "test"), staleSweepInterval: .seconds(1))
    let sink = CollectingSink()
    let runner = Task { try await engine.run(delivering: sink) }
    defer { runner.cancel() }
    // A bound on liveness, not speed: a starved CI run (clusters starting beside the whole suite) took over 10 s.
    try await eventually("every partition ready", timeout: .seconds(60)) { engine.unreadyPartitions.isEmpty }
    let result = try await body(engine, sink)
    runner.cancel()
    _ = await runner.result
    await engine.shutdown()
    return result
}

/// An event as a hub configured like the contract's engines (the catalog without tallies) validates it.
private func contractEvent(_ json: String) -> ValidatedEvent { SampleEvents.validated(json, catalog: catalogWithoutTallies) }

@Suite("Engine contract (memory, Redis, three Redis shards, a three-master Redis Cluster)")
struct EngineContractTests {
    @Test(arguments: ContractEngine.allCases)
    func appendStoresPublishesAndOrders(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            let events = [
                contractEvent(SampleEvents.machineStatus("M-1", "running")),
                contractEvent(SampleEvents.alert("M-1")),
                contractEvent(SampleEvents.machineStatus("M-1", "breakdown")),
            ]
            let ids = try await engine.append(events).map(\.id)
            #expect(ids.count == 3)
            #expect(ids == ids.sorted() && Set(ids).count == 3)
            let published = try await sink.waitFor(count: 3)
            #expect(published.map(\.id) == ids)
            #expect(published[1].channels == ["alerts", "machine:M-1", "line:Line-2:alerts:machine:M-1"])
            // Latest state is the last state event; the alert did not overwrite it.
            let latest = try #require(try await engine.latest(entityKey: "resource:machine:M-1"))
            #expect(latest.id == ids[2])
            #expect(latest.json == published[2].json)
            #expect(latest.jsonString.contains(#""current_status":"breakdown""#))
            #expect(try await engine.latest(entityKey: "resource:machine:M-404") == nil)
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func snapshotReturnsMatchingLatestState(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, _ in
            _ = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-1", "running", line: "Line-2")),
                contractEvent(SampleEvents.machineStatus("M-2", "idle", line: "Line-3")),
                contractEvent(SampleEvents.operatorStatus("O-1")),
                contractEvent(SampleEvents.machineStatus("M-1", "maintenance", line: "Line-2")),
            ])
            let line2 = try await engine.snapshot(matching: [try ChannelPattern(parsing: "line:Line-2:*")]).events
            #expect(line2.map(\.entityKey) == ["resource:machine:M-1"])
            #expect(line2.first?.jsonString.contains("maintenance") == true)
            let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "resource-status")])
            let all = snapshot.events
            if kind.isPartitioned {
                #expect(snapshot.position == nil, "stream ids of different partitions do not order: no single position")
            } else {
                #expect(snapshot.position == all.map(\.id).max())
            }
            #expect(Set(all.map(\.entityKey)) == ["resource:machine:M-1", "resource:machine:M-2", "resource:operator:O-1"])
            #expect(all.map(\.id) == all.map(\.id).sorted())
            #expect(try await engine.snapshot(matching: [try ChannelPattern(parsing: "alerts")]).events.isEmpty)
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func historyReplaysWhatFollowedAPosition(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, _ in
            let ids = try await engine.append((0..<5).map { contractEvent(SampleEvents.machineStatus("M-\($0)")) }).map(\.id)
            if let partitioned = engine as? PartitionedRedisEngine {
                try await resumesAcrossPartitions(partitioned, ids: ids)
                return
            }
            let after = try #require(try await engine.history(after: ids[1], limit: 10))
            #expect(after.map(\.id) == Array(ids[2...]))
            #expect(after.first?.channels == ["resource-status", "machine:M-2", "line:Line-2:resource-status:machine:M-2"])
            #expect(try await engine.history(after: ids[1], limit: 2)?.map(\.id) == Array(ids[2...3]))
            #expect(try await engine.history(after: ids[4], limit: 10)?.isEmpty == true)
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func historyBeyondRetentionIsAGap(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.memory.historyMaxLength = 10; $0.redis.historyMaxLength = 10 }) { engine, sink in
            let first = try await engine.append([contractEvent(SampleEvents.machineStatus("M-0"))])[0].id
            // Redis trims with MAXLEN ~ (whole macro nodes), so write well past the limit.
            for batch in 0..<30 {
                _ = try await engine.append((0..<100).map { contractEvent(SampleEvents.machineStatus("M-\(batch)-\($0)")) })
            }
            #expect(try await engine.history(after: first, limit: 10) == nil)
            if let partitioned = engine as? PartitionedRedisEngine {
                // Trimmed in the first event's partition: the positions are a gap, however current the others are.
                var positions = PartitionPositions(count: partitioned.map.count)
                for event in try await sink.waitFor(count: 3001, timeout: .seconds(30)) { positions.advance(past: PartitionedEventID(partition: partitioned.map.partition(ofEntityKey: event.entityKey), id: event.id)) }
                #expect(try await partitioned.history(after: positions, limit: 10)?.isEmpty == true, "the newest positions miss nothing")
                let behind = try PartitionPositions(
                    parsing: PartitionPositions.prefix + positions.positions.enumerated().map { partition, id in
                        partition == partitioned.map.partition(ofEntityKey: "resource:machine:M-0") ? first.description : id.description
                    }.joined(separator: "."),
                    partitions: partitioned.map.count)
                #expect(try await partitioned.history(after: behind, limit: 10) == nil)
            }
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func idempotencyKeyAcknowledgesARetryWithTheOriginalID(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            let keyed = SampleEvents.machineStatus("M-1", extra: "").replacingOccurrences(of: "{\"event_type\"", with: #"{"idempotency_key":"mes-42","event_type""#)
            let first = try await engine.append([contractEvent(keyed)])
            let retry = try await engine.append([contractEvent(keyed), contractEvent(SampleEvents.alert("M-1"))])
            #expect(first[0].duplicate == false)
            #expect(retry[0] == Appended(id: first[0].id, duplicate: true))
            #expect(retry[1].duplicate == false)
            let published = try await sink.waitFor(count: 2)
            try await Task.sleep(for: .milliseconds(100))
            #expect(sink.received.count == 2)
            #expect(published.map(\.id) == [first[0].id, retry[1].id])
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func aLineScopedStateCannotMoveAnotherLinesEntity(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            func scoped(_ json: String) -> ValidatedEvent {
                var event = contractEvent(json)
                event.writableLines = ["Line-1", "Line-4"]
                return event
            }
            let held = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-2", "running", line: "Line-2")),
                contractEvent(SampleEvents.operatorStatus("O-1")),
            ]).map(\.id)
            let results = try await engine.append([
                scoped(SampleEvents.machineStatus("M-2", "breakdown", line: "Line-1")),
                scoped(SampleEvents.machineStatus("M-9", "running", line: "Line-1")),
                scoped(SampleEvents.machineStatus("M-9", "idle", line: "Line-4")),
                scoped(SampleEvents.operatorStatus("O-1", "busy", line: "Line-1")),
            ])
            #expect(results[0] == Appended(id: held[0], foreignLine: "Line-2"))
            #expect(results[1].stored && results[2].stored, "no state cached, then one on the key's own lines")
            #expect(results[3] == Appended(id: held[1], foreignLine: ""), "a state on no line is no line's to take")
            let published = try await sink.waitFor(count: 4)
            try await Task.sleep(for: .milliseconds(100))
            #expect(sink.received.count == 4, "a refused event is not published")
            #expect(published.map(\.id) == held + [results[1].id, results[2].id])
            #expect(try await engine.latest(entityKey: "resource:machine:M-2")?.id == held[0])
            #expect(try await engine.latest(entityKey: "resource:operator:O-1")?.id == held[1])
            #expect(try await engine.latest(entityKey: "resource:machine:M-9")?.id == results[2].id)
            // Unscoped (a plant-wide key), the same move is taken.
            #expect(try await engine.append([contractEvent(SampleEvents.machineStatus("M-2", "idle", line: "Line-1"))])[0].stored)
        }
    }

    /// News (an alert) reaches its entity's `machine:<id>` subscribers whichever line it names, so a line's key may
    /// send it only about an entity on its lines, or one with no cached state, as for a state event.
    @Test(arguments: ContractEngine.allCases)
    func aLineScopedAlertCannotSpeakForAnotherLinesEntity(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            func scoped(_ json: String) -> ValidatedEvent {
                var event = contractEvent(json)
                event.writableLines = ["Line-1"]
                return event
            }
            let held = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-2", "idle", line: "Line-2")),
                contractEvent(SampleEvents.machineStatus("M-3", "idle", line: "Line-1")),
            ]).map(\.id)
            // One call: the check of M-5 (no state yet) must not outlive the plant's state written after it.
            let results = try await engine.append([
                scoped(SampleEvents.alert("M-2", line: "Line-1")),
                scoped(SampleEvents.alert("M-3", line: "Line-1")),
                scoped(SampleEvents.alert("M-5", line: "Line-1")),
                contractEvent(SampleEvents.machineStatus("M-5", "idle", line: "Line-3")),
                scoped(SampleEvents.alert("M-5", line: "Line-1")),
            ])
            #expect(results[0] == Appended(id: held[0], foreignLine: "Line-2"))
            #expect(results[1].stored && results[2].stored && results[3].stored, "its own line's machine, one with no state, the plant's state")
            #expect(results[4] == Appended(id: results[3].id, foreignLine: "Line-3"))
            let published = try await sink.waitFor(count: 5)
            try await Task.sleep(for: .milliseconds(100))
            #expect(sink.received.count == 5, "a refused alert is not published")
            #expect(published.map(\.id) == held + [results[1].id, results[2].id, results[3].id])
        }
    }

    /// `lines(tenant:)`: the lines a tenant has entities cached on (states, not news), each tenant its own.
    @Test(arguments: ContractEngine.allCases)
    func linesAreThoseATenantHasEntitiesCachedOn(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, _ in
            #expect(try await engine.lines(tenant: Tenant.defaultName) == [])
            let json = try JSONValue.parse(Array(SampleEvents.machineStatus("M-1", line: "Line-9").utf8))
            guard case .valid(let acme) = EventValidator(catalog: catalogWithoutTallies).validate(json, receivedAt: Date(), tenant: "acme") else {
                Issue.record("invalid")
                return
            }
            _ = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-1", line: "Line-2")),
                contractEvent(SampleEvents.machineStatus("M-2", line: "Line-1")),
                contractEvent(SampleEvents.machineStatus("M-3", line: "Line-2")),
                contractEvent(SampleEvents.operatorStatus("O-1")),
                contractEvent(SampleEvents.alert("M-4", line: "Line-7")),
                acme,
            ])
            #expect(try await engine.lines(tenant: Tenant.defaultName) == ["Line-1", "Line-2"])
            #expect(try await engine.lines(tenant: "acme") == ["Line-9"])
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func expiredStateIsAnnouncedOnceAsStale(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 1 }) { engine, sink in
            let id = try await engine.append([contractEvent(SampleEvents.machineStatus("M-1", "running"))])[0].id
            let deadline = ContinuousClock.now.advanced(by: .seconds(20))
            while !sink.received.contains(where: { $0.jsonString.contains("status_stale") }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            try await Task.sleep(for: .milliseconds(500))
            let stale = sink.received.filter { $0.jsonString.contains(#""event_type":"status_stale""#) }
            #expect(stale.count == 1)
            #expect(stale.first?.channels == ["resource-status", "machine:M-1", "line:Line-2:resource-status:machine:M-1"])
            #expect(stale.first?.carriesState == false)
            #expect(stale.first?.jsonString.contains(#""event_id":"\#(id)""#) == true)  // the last state rides along
            // The notice holds the state's place (`server.stale_kept_seconds`).
            #expect(try await engine.latest(entityKey: "resource:machine:M-1")?.id == stale.first?.id)
        }
    }

    /// A dashboard opened after a machine went quiet must still show it, marked stale, as the live screens saw it
    /// go: the notice stays in the cache on the state's own channels (a lot's `traceability`, not the notice's
    /// nominal category), until a state replaces it — which is then not late, and a line's key is not held off by it.
    @Test(arguments: ContractEngine.allCases)
    func aStaleNoticeStaysInTheCacheUntilAStateReplacesIt(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 1; $0.cacheTTL.overrides["material_lot"] = 1 }) { engine, sink in
            // A release, not a quarantine: a holding state does not expire (`aHoldingStateDoesNotExpire`).
            let lot = #"{"event_type":"material_lot_released","entity_type":"material_lot","entity_id":"LOT-7","timestamp":"2025-11-18T14:23:45.678Z","data":{"disposition":"released_to_use"},"metadata":{"source":"qms","triggered_by":"user"}}"#
            _ = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-1", "breakdown", line: "Line-2")), contractEvent(lot),
            ])
            let notices = try await sink.waitFor(count: 4, timeout: .seconds(20)).filter { $0.jsonString.contains(#""event_type":"status_stale""#) }
            #expect(notices.count == 2)
            let machineNotice = try #require(notices.first { $0.entityKey == "resource:machine:M-1" })
            let lotNotice = try #require(notices.first { $0.entityKey != "resource:machine:M-1" })

            let line = try await engine.snapshot(matching: [try ChannelPattern(parsing: "line:Line-2:*")]).events
            #expect(line.map(\.id) == [machineNotice.id])
            #expect(line.first?.channels == machineNotice.channels)
            let traceability = try await engine.snapshot(matching: [try ChannelPattern(parsing: "traceability")]).events
            #expect(traceability.map(\.id) == [lotNotice.id], "on its state's category channel")
            #expect(try await engine.snapshot(matching: [try ChannelPattern(parsing: "resource-status")]).events.map(\.id) == [machineNotice.id])
            try await Task.sleep(for: .milliseconds(1500))
            #expect(sink.received.count == 4, "a notice announces nothing when it has outlived its state's TTL")

            // A state stamped before the one that expired is still current: the notice holds no rank.
            let earlier = SampleEvents.machineStatus("M-1", "idle", line: "Line-3").replacing("2025-11-18T14:23:45.678Z", with: "2025-11-18T14:20:00.000Z")
            var scoped = contractEvent(earlier)
            scoped.writableLines = ["Line-3"]
            let back = try await engine.append([scoped])
            #expect(back[0].stored && !back[0].late, "\(back)")
            #expect(try await engine.latest(entityKey: "resource:machine:M-1")?.id == back[0].id)
        }
    }

    /// `server.stale_kept_seconds`: the notice leaves after it quietly; at 0 the entity leaves with its state.
    @Test(arguments: ContractEngine.allCases)
    func aKeptNoticeLeavesQuietlyAndZeroKeepsNone(_ kind: ContractEngine) async throws {
        for kept in [1, 0] {
            try await withEngine(kind, configure: { $0.cacheTTL.machine = 1; $0.server.staleKeptSeconds = kept }) { engine, sink in
                _ = try await engine.append([contractEvent(SampleEvents.machineStatus("M-1", "idle"))])
                let notice = try await sink.waitFor(count: 2, timeout: .seconds(20))[1]
                #expect(notice.jsonString.contains(#""event_type":"status_stale""#))
                if kept > 0 {
                    let deadline = ContinuousClock.now.advanced(by: .seconds(20))
                    while try await engine.latest(entityKey: "resource:machine:M-1") != nil, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                #expect(try await engine.latest(entityKey: "resource:machine:M-1") == nil, "kept \(kept)")
                #expect(try await engine.snapshot(matching: [try ChannelPattern(parsing: "machine:M-1")]).events.isEmpty)
                try await Task.sleep(for: .milliseconds(kept > 0 ? 6000 : 500))
                #expect(sink.received.count == 2, "one notice, none for the notice (kept \(kept))")
            }
        }
    }

    /// A quarantine holds its lot (`hold: {until: [material_lot_released]}`): an inspection while it holds is news,
    /// marked held, and moves neither the cached state nor its source rank; the quarantine renews itself, a release
    /// lifts it, and after that an inspection is the lot's state again.
    @Test(arguments: ContractEngine.allCases)
    func aHoldKeepsOtherStatesOutUntilALiftingTypeComes(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            func lot(_ type: String, _ data: String, at minute: Int, key: String? = nil) -> ValidatedEvent {
                let idempotency = key.map { #","idempotency_key":"\#($0)""# } ?? ""
                return contractEvent(#"{"event_type":"\#(type)","entity_type":"material_lot","entity_id":"LOT-7","# +
                    #""timestamp":"2025-11-18T10:\#(String(format: "%02d", minute)):00Z","data":\#(data),"metadata":{"source":"mes","triggered_by":"user"}\#(idempotency)}"#)
            }
            let quarantine = #"{"reason":"suspect supplier batch","quantity_quarantined":2340}"#
            let inspection = #"{"inspection_passed":true}"#
            let lotKey = "trace:lot:LOT-7"
            let first = try await engine.append([lot("material_lot_quarantined", quarantine, at: 0)])[0]
            let inspected = try await engine.append([lot("material_lot_inspected", inspection, at: 10, key: "insp-1")])[0]
            #expect(inspected.held && !inspected.late && inspected.stored)
            #expect(try await engine.latest(entityKey: lotKey)?.id == first.id, "the lot is still quarantined")
            let renewed = try await engine.append([lot("material_lot_quarantined", #"{"reason":"recount","quantity_quarantined":2100}"#, at: 20)])[0]
            #expect(!renewed.held && !renewed.late)
            #expect(try await engine.latest(entityKey: lotKey)?.id == renewed.id, "a quarantine renews its own hold")
            let again = try await engine.append([
                lot("material_lot_inspected", inspection, at: 30),
                lot("material_lot_quarantined", quarantine, at: 5),
            ])
            #expect(again[0].held)
            #expect(again[1].late && !again[1].held, "older by source time: late, whatever the hold")
            // Stamped before the held inspection: it moved no rank, so the release is not late.
            let released = try await engine.append([lot("material_lot_released", #"{"disposition":"released_to_use"}"#, at: 25)])[0]
            #expect(!released.held && !released.late)
            #expect(try await engine.latest(entityKey: lotKey)?.id == released.id)
            let free = try await engine.append([lot("material_lot_inspected", inspection, at: 40)])[0]
            #expect(!free.held && !free.late)
            #expect(try await engine.latest(entityKey: lotKey)?.id == free.id, "released: an inspection is the lot's state")

            let published = try await sink.waitFor(count: 7)
            let heldOnes = published.filter { $0.jsonString.contains(#""held":true"#) }
            #expect(heldOnes.map(\.id) == [inspected.id, again[0].id])
            #expect(heldOnes.allSatisfy { !$0.carriesState }, "held events are news")
            // The mark sits where its key sorts, before the idempotency key.
            #expect(heldOnes[0].jsonString.contains(#""event_type":"material_lot_inspected","held":true,"idempotency_key":"insp-1","#),
                "\(heldOnes[0].jsonString)")
            #expect(published.filter { $0.jsonString.contains(#""late":true"#) }.map(\.id) == [again[1].id])
        }
    }

    /// A quarantine is lifted by a release, not by a quiet day: a holding state does not expire, the lot's other
    /// states do.
    @Test(arguments: ContractEngine.allCases)
    func aHoldingStateDoesNotExpire(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.overrides["material_lot"] = 1 }) { engine, _ in
            func lot(_ id: String, _ type: String, _ data: String) -> ValidatedEvent {
                contractEvent(#"{"event_type":"\#(type)","entity_type":"material_lot","entity_id":"\#(id)","# +
                    #""timestamp":"2025-11-18T10:00:00Z","data":\#(data),"metadata":{"source":"mes","triggered_by":"user"}}"#)
            }
            let held = try await engine.append([
                lot("LOT-1", "material_lot_quarantined", #"{"reason":"suspect"}"#),
                lot("LOT-2", "material_lot_inspected", #"{"inspection_passed":true}"#),
            ])
            try await Task.sleep(for: .milliseconds(2200))
            #expect(try await engine.latest(entityKey: "trace:lot:LOT-1")?.id == held[0].id, "still quarantined")
            let inspected = try await engine.latest(entityKey: "trace:lot:LOT-2")
            #expect(inspected?.id != held[1].id, "an inspection's state expires after the lot's TTL")
        }
    }

    /// A final state (`final` in the catalog: a completed work order) leaves quietly at its TTL: no `status_stale`,
    /// no kept notice, its rank gone with it; an unfinished order still goes stale.
    @Test(arguments: ContractEngine.allCases)
    func aFinalStateLeavesQuietlyAtItsTTL(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.workOrder = 1 }) { engine, sink in
            func order(_ id: String, _ status: String, at time: String = "2025-11-18T14:00:00Z") -> ValidatedEvent {
                contractEvent(#"{"event_type":"work_order_progress","entity_type":"work_order","entity_id":"\#(id)","line":"Line-2","# +
                    #""timestamp":"\#(time)","data":{"current_status":"\#(status)"},"metadata":{"source":"mes","triggered_by":"system"}}"#)
            }
            let stored = try await engine.append([order("WO-1", "completed"), order("WO-2", "in_progress")])
            #expect(stored.allSatisfy { $0.stored })
            let published = try await sink.waitFor(count: 3, timeout: .seconds(20))
            let notice = published[2]
            #expect(notice.jsonString.contains(#""event_type":"status_stale""#) && notice.entityKey == "workorder:WO-2", "\(notice.jsonString)")
            try await Task.sleep(for: .milliseconds(2000))
            #expect(sink.received.count == 3, "the completed order left without a notice")
            #expect(try await engine.latest(entityKey: "workorder:WO-1") == nil)
            #expect(try await engine.latest(entityKey: "workorder:WO-2")?.id == notice.id)
            let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "work-order-progress")]).events
            #expect(snapshot.map(\.id) == [notice.id])
            // Its rank left with it: an earlier-stamped state of the same order is no longer late.
            let again = try await engine.append([order("WO-1", "in_progress", at: "2025-11-18T13:00:00Z")])
            #expect(again[0].stored && !again[0].late)
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func latestStateExpiresAfterItsTTL(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 1 }) { engine, _ in
            let started = ContinuousClock.now
            _ = try await engine.append([
                contractEvent(SampleEvents.machineStatus("M-1")),
                contractEvent(SampleEvents.operatorStatus("O-1")),
            ])
            let fresh = try await engine.latest(entityKey: "resource:machine:M-1")
            // Only meaningful while the TTL has not passed: a loaded machine can take longer than it to get here.
            if ContinuousClock.now - started < .milliseconds(900) { #expect(fresh != nil) }
            try await Task.sleep(for: .milliseconds(2200))
            // Gone; its `status_stale` notice stands in once the expiry is noticed (`server.stale_kept_seconds`).
            let expired = try await engine.latest(entityKey: "resource:machine:M-1")
            #expect(expired == nil || expired?.jsonString.contains(#""event_type":"status_stale""#) == true, "\(String(describing: expired?.jsonString))")
            #expect(try await engine.latest(entityKey: "resource:operator:O-1") != nil)  // 300 s
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func concurrentPublishersGetOneTotalOrder(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            let publishers = 4
            let perPublisher = 50
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for sequence in 0..<perPublisher {
                            let json = SampleEvents.machineStatus("M-\(publisher)", extra: #","sequence":\#(sequence)"#)
                            _ = try await engine.append([contractEvent(json)])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let published = try await sink.waitFor(count: publishers * perPublisher)
            #expect(published.count == publishers * perPublisher)
            if let partitioned = engine as? PartitionedRedisEngine {
                // One order per partition: ids of different partitions do not order against each other.
                for partition in 0..<partitioned.map.count {
                    let ids = published.filter { partitioned.map.partition(ofEntityKey: $0.entityKey) == partition }.map(\.id)
                    #expect(ids == ids.sorted())
                }
            } else {
                #expect(published.map(\.id) == published.map(\.id).sorted())
            }
            // Per entity, delivery order is ingest order.
            for publisher in 0..<publishers {
                let sequences = published.filter { $0.entityKey == "resource:machine:M-\(publisher)" }
                    .map { $0.jsonString.components(separatedBy: #""sequence":"#)[1].prefix { $0.isNumber } }
                    .compactMap { Int($0) }
                #expect(sequences == Array(0..<perPublisher))
            }
        }
    }
}

/// Resume with one position per partition (`PartitionPositions`): what follows the first two events, in every
/// partition, once each, and nothing when the positions are current. A single id is a gap on a partitioned engine.
private func resumesAcrossPartitions(_ engine: PartitionedRedisEngine, ids: [EventID]) async throws {
    let keys = (0..<5).map { "resource:machine:M-\($0)" }
    let partitionOf = keys.map { engine.map.partition(ofEntityKey: $0) }
    #expect(Set(partitionOf).count > 1, "the five machines span partitions")
    #expect(try await engine.history(after: ids[1], limit: 10) == nil)
    var positions = PartitionPositions(count: engine.map.count)
    for index in 0..<2 { positions.advance(past: PartitionedEventID(partition: partitionOf[index], id: ids[index])) }
    // Read back through the token's text, as a client would send it.
    positions = try PartitionPositions(parsing: positions.description, partitions: engine.map.count)
    var resumed: [(partition: Int, event: StoredEvent)] = []
    while let page = try await engine.history(after: positions, limit: 2), !page.isEmpty {
        resumed += page
        for (partition, event) in page { positions.advance(past: PartitionedEventID(partition: partition, id: event.id)) }
    }
    #expect(resumed.map(\.event.entityKey).sorted() == Array(keys[2...]))
    for (partition, event) in resumed {
        #expect(partition == engine.map.partition(ofEntityKey: event.entityKey))
        #expect(event.id == ids[keys.firstIndex(of: event.entityKey)!])
    }
    #expect(try await engine.history(after: positions, limit: 10)?.isEmpty == true)
}
