import Foundation
import StatusHubCore
import Testing

/// Seed 003 §6.2: the cached state of an entity is its newest by source time, not by arrival.
@Suite("Source-time order of states")
struct SourceOrderTests {
    @Test func ranksCompareByInstantAcrossZonesAndFractions() throws {
        func rank(_ timestamp: String, _ sequence: Int? = nil) throws -> String {
            try #require(SourceOrder.rank(timestamp: timestamp, sequence: sequence))
        }
        // The same instant in two zones is not older either way: the later ingest wins the tie.
        #expect(!SourceOrder.isOlder(try rank("2025-11-18T15:00:00+01:00"), than: try rank("2025-11-18T14:00:00Z")))
        #expect(!SourceOrder.isOlder(try rank("2025-11-18T14:00:00Z"), than: try rank("2025-11-18T15:00:00+01:00")))
        #expect(SourceOrder.isOlder(try rank("2025-11-18T14:00:00.5Z"), than: try rank("2025-11-18T14:00:00.51Z")))
        #expect(SourceOrder.isOlder(try rank("2025-11-18T23:30:00-01:00"), than: try rank("2025-11-19T00:31:00Z")))
        #expect(!SourceOrder.isOlder(try rank("2025-11-19T00:31:00Z"), than: try rank("2025-11-18T23:30:00-01:00")))
        #expect(SourceOrder.isOlder(try rank("0001-01-01T00:00:00+18:00"), than: try rank("9999-12-31T23:59:59.999999999Z")))
        #expect(SourceOrder.isOlder(try rank("2024-02-29T00:00:00Z"), than: try rank("2024-03-01T00:00:00Z")))
        // A sequence on both sides decides before the timestamp; on one side only, the timestamp decides.
        #expect(SourceOrder.isOlder(try rank("2025-11-18T14:00:09Z", 7), than: try rank("2025-11-18T14:00:00Z", 8)))
        #expect(!SourceOrder.isOlder(try rank("2025-11-18T14:00:00Z", 9), than: try rank("2025-11-18T14:00:09Z", 8)))
        #expect(SourceOrder.isOlder(try rank("2025-11-18T14:00:00Z", 9), than: try rank("2025-11-18T14:00:09Z")))
        #expect(SourceOrder.isOlder(try rank("2025-11-18T14:00:00Z", 1), than: try rank("2025-11-18T14:00:00Z", 10)))
    }

    /// A lower sequence stamped after a state the hub has held longer than `server.sequence_reset_seconds` is a
    /// publisher that restarted its count; held briefly, stamped before it, or with the rule off, the sequence decides.
    @Test func aRestartedSequenceReplacesAStateHeldLongEnough() throws {
        func rank(_ timestamp: String, _ sequence: Int) throws -> String {
            try #require(SourceOrder.rank(timestamp: timestamp, sequence: sequence))
        }
        let cached = try rank("2025-11-18T14:00:00.5Z", 48_213)
        let restart = try rank("2025-11-18T14:00:01Z", 1)
        #expect(!SourceOrder.isOlder(restart, than: cached, heldSeconds: 61, resetSeconds: 60))
        #expect(SourceOrder.isOlder(restart, than: cached, heldSeconds: 59, resetSeconds: 60), "held too briefly: overtaken, not restarted")
        #expect(SourceOrder.isOlder(restart, than: cached, heldSeconds: 3600, resetSeconds: 0), "the rule off")
        #expect(SourceOrder.isOlder(try rank("2025-11-18T14:00:00.4Z", 1), than: cached, heldSeconds: 3600, resetSeconds: 60),
            "stamped before the held state: back-fill")
        #expect(!SourceOrder.isOlder(try rank("2025-11-18T13:00:00Z", 48_214), than: cached), "a higher sequence wins")
    }

    @Test func sequenceMustBeAWholeNumber() async throws {
        try await withHub(engine: .memory) { hub in
            for bad in ["-1", "1.5", "\"7\"", "1e16"] {
                let reply = try await HTTP.post(port: hub.port, event: Self.machine("M-1", "running", at: "2025-01-01T00:00:00Z", extra: #","sequence":\#(bad)"#))
                #expect(reply.status == 400, "\(bad): \(reply.text)")
                #expect(reply.text.contains(#""field":"sequence""#), "\(bad): \(reply.text)")
            }
            let late = try await HTTP.post(port: hub.port, event: Self.machine("M-1", "running", at: "2025-01-01T00:00:00Z", extra: #","late":true"#))
            #expect(late.status == 400)
            #expect(late.text.contains("assigned by the hub"), "\(late.text)")
        }
    }

    /// One event stamped an hour ahead (a gateway's clock, a typo) outranked every real one after it: the machine's
    /// state stayed frozen, each real event marked late, until the state went stale. Refused by default
    /// (`server.max_clock_ahead_seconds`: 300), naming `timestamp`, and the real events keep the state moving; a
    /// node set to 0 takes it as before.
    @Test func anEventFromTheFutureIsRefusedAndDoesNotFreezeTheState() async throws {
        let future = Timestamps.format(Date().addingTimeInterval(3600))
        try await withHub(engine: .memory) { hub in
            _ = try await HTTP.post(port: hub.port, event: Self.machine("M-4", "running", at: Timestamps.format(Date())))
            let refused = try await HTTP.post(port: hub.port, event: Self.machine("M-4", "breakdown", at: future))
            #expect(refused.status == 400, "\(refused.text)")
            #expect(refused.text.contains(#""field":"timestamp""#) && refused.text.contains("server.max_clock_ahead_seconds"), "\(refused.text)")
            let real = try await HTTP.post(port: hub.port, event: Self.machine("M-4", "idle", at: Timestamps.format(Date())))
            #expect(real.json["accepted"]?.arrayValue?.first?["late"] == nil, "\(real.text)")
            #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/M-4").json["data"]?["current_status"] == .string("idle"))
        }
        try await withHub(engine: .memory, configure: { $0.server.maxClockAheadSeconds = 0 }) { hub in
            let taken = try await HTTP.post(port: hub.port, event: Self.machine("M-4", "breakdown", at: future))
            #expect(taken.status == 202, "\(taken.text)")
        }
    }

    /// The case from the field: an edge device back-fills an old breakdown after the current status.
    @Test(arguments: EngineKind.allCases)
    func backFilledEventIsStoredAndDeliveredLateButNeverReplacesState(engine: EngineKind) async throws {
        try await withHub(engine: engine) { hub in
            let socket = try await TestSocket(port: hub.port)
            _ = try await socket.subscribe(["machine:*"])
            let now = Timestamps.format(Date())
            let reply = try await HTTP.post(port: hub.port, events: [
                Self.machine("M-9", "running", at: now), Self.machine("M-9", "breakdown", at: "2025-01-01T00:00:00Z"),
            ])
            #expect(reply.status == 202, "\(reply.text)")
            let accepted = reply.json["accepted"]?.arrayValue ?? []
            #expect(accepted.count == 2)
            #expect(accepted.first?["late"] == nil)
            #expect(accepted.last?["late"] == .bool(true), "\(reply.text)")

            let live = try await socket.nextEvent()
            let late = try await socket.nextEvent()
            #expect(live["data"]?["current_status"] == .string("running"))
            #expect(live["late"] == nil)
            #expect(late["data"]?["current_status"] == .string("breakdown"))
            #expect(late["late"] == .bool(true))
            // The mark keeps the keys sorted, as every stored event's are (event_id first).
            let lateText = String(decoding: try JSONEncoder().encode(JSONValue.object(late)), as: UTF8.self)
            #expect(lateText.contains("late"))

            let state = try await HTTP.get(port: hub.port, "/v1/state/machine/M-9")
            #expect(state.json["data"]?["current_status"] == .string("running"), "\(state.text)")
            let snapshotSocket = try await TestSocket(port: hub.port)
            let snapshot = try await snapshotSocket.subscribe(["machine:M-9"], snapshot: true)
            #expect(snapshot.map { $0["data"]?["current_status"] } == [.string("running")])
            let listed = try await HTTP.get(port: hub.port, "/v1/state?pattern=machine:*")
            #expect(listed.json["events"]?.arrayValue?.map { $0["data"]?["current_status"] } == [.string("running")])
            // A newer event still replaces it.
            let newer = try await HTTP.post(port: hub.port, event: Self.machine("M-9", "idle", at: Timestamps.format(Date().addingTimeInterval(1))))
            #expect(newer.json["accepted"]?.arrayValue?.first?["late"] == nil)
            #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/M-9").json["data"]?["current_status"] == .string("idle"))
            _ = await socket.close()
            _ = await snapshotSocket.close()
        }
    }

    @Test(arguments: EngineKind.allCases)
    func publisherSequenceOrdersBeforeTheTimestamp(engine: EngineKind) async throws {
        try await withHub(engine: engine) { hub in
            let reply = try await HTTP.post(port: hub.port, events: [
                Self.machine("M-5", "running", at: "2025-01-01T00:00:05Z", extra: #","sequence":12"#),
                // Stamped later by a clock that jumped back and forth, but the device says it came first.
                Self.machine("M-5", "breakdown", at: "2025-01-01T00:00:09Z", extra: #","sequence":11"#),
            ])
            #expect(reply.json["accepted"]?.arrayValue?.last?["late"] == .bool(true), "\(reply.text)")
            let state = try await HTTP.get(port: hub.port, "/v1/state/machine/M-5")
            #expect(state.json["data"]?["current_status"] == .string("running"))
            #expect(state.json["sequence"] == .number(12))
        }
    }

    /// A gateway that reboots counts its `sequence` from 1 again: once the hub has held its entity's state longer
    /// than `server.sequence_reset_seconds`, a lower sequence stamped after it is current; held briefly it is late
    /// (overtaken in transit, as when a device's clock jumped back), and stamped before it, back-fill.
    @Test(arguments: EngineKind.allCases)
    func aRestartedPublishersStatesMoveOn(engine: EngineKind) async throws {
        try await withHub(engine: engine, configure: { $0.server.sequenceResetSeconds = 1 }) { hub in
            func lateness(_ events: [String]) async throws -> [Bool]? {
                let reply = try await HTTP.post(port: hub.port, events: events)
                return reply.json["accepted"]?.arrayValue?.map { $0["late"] == .bool(true) }
            }
            #expect(try await lateness([
                Self.machine("M-6", "running", at: "2025-01-01T00:00:00Z", extra: #","sequence":9041"#),
                Self.machine("M-6", "idle", at: "2025-01-01T00:00:40Z", extra: #","sequence":1"#),
            ]) == [false, true])
            try await Task.sleep(for: .milliseconds(1300))
            #expect(try await lateness([
                Self.machine("M-6", "idle", at: "2024-12-31T23:59:00Z", extra: #","sequence":3"#),
                Self.machine("M-6", "breakdown", at: "2025-01-01T00:01:10Z", extra: #","sequence":2"#),
                Self.machine("M-6", "idle", at: "2025-01-01T00:01:05Z", extra: #","sequence":1"#),
            ]) == [true, false, true])
            let state = try await HTTP.get(port: hub.port, "/v1/state/machine/M-6")
            #expect(state.json["data"]?["current_status"] == .string("breakdown") && state.json["sequence"] == .number(2))
        }
        try await withHub(engine: engine, configure: { $0.server.sequenceResetSeconds = 0 }) { hub in
            _ = try await HTTP.post(port: hub.port, event: Self.machine("M-6", "running", at: "2025-01-01T00:00:00Z", extra: #","sequence":9041"#))
            try await Task.sleep(for: .milliseconds(1300))
            let reply = try await HTTP.post(port: hub.port, event: Self.machine("M-6", "breakdown", at: "2025-01-01T09:00:00Z", extra: #","sequence":2"#))
            #expect(reply.json["accepted"]?.arrayValue?.last?["late"] == .bool(true), "\(reply.text)")
        }
    }

    /// A late event is no sign of life for the state it did not replace: the state still goes stale on its own
    /// deadline, and the stale notice carries the newest state.
    @Test(arguments: EngineKind.allCases)
    func lateEventsDoNotPostponeStaleness(engine: EngineKind) async throws {
        try await withHub(engine: engine, configure: { $0.cacheTTL.overrides["machine"] = 2 }) { hub in
            let socket = try await TestSocket(port: hub.port)
            _ = try await socket.subscribe(["machine:*"])
            let posted = ContinuousClock.now
            // The state and a late event in one request: the second is late whatever the machine's load.
            let first = try await HTTP.post(port: hub.port, events: [
                Self.machine("M-3", "running", at: "2025-06-01T00:00:00Z"), Self.machine("M-3", "breakdown", at: "2025-05-01T00:00:00Z"),
            ])
            #expect(first.json["accepted"]?.arrayValue?.last?["late"] == .bool(true), "\(first.text)")
            // More late events every ~200 ms (slower on a loaded machine) until the state goes stale on its own 2 s deadline
            // (Once it is stale its rank is gone, and the next event of the entity starts afresh.)
            // The first notice is the one that counts: once the state is stale, the next late event starts afresh and
            // may go stale in turn (a starved run can keep reading past that).
            var notices: [StoredEventJSON] = []
            var seen: [String] = []
            while notices.isEmpty, ContinuousClock.now - posted < .seconds(30) {
                _ = try await HTTP.post(port: hub.port, event: Self.machine("M-3", "breakdown", at: "2025-05-01T00:00:00Z"))
                while let event = try? await socket.nextEvent(timeout: .milliseconds(200)) {
                    seen.append("\(event["event_type"]?.stringValue ?? "?") \(event["data"]?["current_status"]?.stringValue ?? "") late=\(event["late"] == .bool(true))")
                    if event["event_type"] == .string("status_stale") { notices.append(event) }
                }
            }
            let notice = try #require(notices.first, "no status_stale while late events kept coming")
            #expect(
                notice["data"]?["last_state"]?["data"]?["current_status"] == .string("running"),
                "events seen, in order: \(seen.joined(separator: "; "))")
            _ = await socket.close()
        }
    }

    /// Events of many entities in a random order, over two nodes on Redis: afterwards every entity's cached state
    /// is its newest by timestamp, and an event was marked late exactly when a newer one of its entity had been
    /// stored before it.
    @Test(arguments: EngineKind.allCases)
    func shuffledEventsLeaveTheNewestStateOfEveryEntity(engine: EngineKind) async throws {
        var generator = SystemRandomNumberGenerator()
        let entities = 40
        let perEntity = 12
        var events: [(entity: String, second: Int, status: String)] = []
        let statuses = ["running", "idle", "maintenance", "breakdown", "offline"]
        for entity in 0..<entities {
            let seconds = Array(0..<1000).shuffled(using: &generator).prefix(perEntity)
            for second in seconds {
                events.append(("M-\(entity)", second, statuses.randomElement(using: &generator)!))
            }
        }
        events.shuffle(using: &generator)
        let newest = Dictionary(grouping: events, by: \.entity).mapValues { $0.max { $0.second < $1.second }! }

        try await withNodes(engine: engine) { ports in
            let socket = try await TestSocket(port: ports[0])
            _ = try await socket.subscribe(["machine:*"])
            let batches = stride(from: 0, to: events.count, by: 7).map { Array(events[$0..<min($0 + 7, events.count)]) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, batch) in batches.enumerated() {
                    let port = ports[index % ports.count]
                    group.addTask {
                        let reply = try await HTTP.post(port: port, events: batch.map {
                            Self.machine($0.entity, $0.status, at: Self.stamp($0.second))
                        })
                        #expect(reply.status == 202, "\(reply.text)")
                    }
                    if index % 4 == 3 { try await group.waitForAll() }
                }
                try await group.waitForAll()
            }
            // Delivered in history order: walk it, keeping the newest second per entity.
            var newestSeen: [String: Int] = [:]
            for _ in 0..<events.count {
                let event = try await socket.nextEvent()
                let entity = event["entity_id"]?.stringValue ?? "?"
                let second = Self.second(of: event["timestamp"]?.stringValue ?? "")
                let expectLate = (newestSeen[entity] ?? -1) > second
                #expect((event["late"] == .bool(true)) == expectLate, "\(entity) at \(second), newest so far \(newestSeen[entity] ?? -1)")
                newestSeen[entity] = max(newestSeen[entity] ?? -1, second)
            }
            for (entity, expected) in newest {
                let state = try await HTTP.get(port: ports[1 % ports.count], "/v1/state/machine/\(entity)")
                #expect(state.json["timestamp"]?.stringValue == Self.stamp(expected.second), "\(entity)")
                #expect(state.json["data"]?["current_status"]?.stringValue == expected.status, "\(entity)")
                #expect(state.json["late"] == nil)
            }
            _ = await socket.close()
        }
    }

    static func machine(_ id: String, _ status: String, at timestamp: String, extra: String = "") -> String {
        #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"\#(id)","line":"Line-2","timestamp":"\#(timestamp)","data":{"current_status":"\#(status)"},"metadata":{"source":"edge","triggered_by":"backfill"}\#(extra)}"#
    }

    /// Seconds after 2025-06-01T10:00:00, written in a zone of +02:00 every other second so that zones count too.
    static func stamp(_ second: Int) -> String {
        let date = Date(timeIntervalSince1970: 1_748_772_000 + Double(second))
        if second % 2 == 0 { return Timestamps.format(date) }
        let local = date.addingTimeInterval(7200)
        let text = Timestamps.format(local)
        return String(text.dropLast()) + "+02:00"
    }

    static func second(of timestamp: String) -> Int {
        guard let date = Timestamps.parse(timestamp) else { return -1 }
        return Int((date.timeIntervalSince1970 - 1_748_772_000).rounded())
    }
}

/// One memory-engine node, or two nodes on one Redis: the ports to publish to.
func withNodes(engine: EngineKind, configure: (inout HubConfig) -> Void = { _ in }, _ body: ([Int]) async throws -> Void) async throws {
    switch engine {
    case .memory:
        try await withHub(engine: .memory, configure: configure) { hub in try await body([hub.port]) }
    case .redis:
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url, configure: configure) { nodeA in
                try await withHub(redisURL: redis.url, configure: configure) { nodeB in
                    try await body([nodeA.port, nodeB.port])
                }
            }
        }
    }
}

/// `withNodes` on the memory engine, one Redis, or two nodes on three partitions over three redis-servers or a
/// three-master Redis Cluster.
func withNodes(on engine: ContractEngine, configure: (inout HubConfig) -> Void = { _ in }, _ body: ([Int]) async throws -> Void) async throws {
    switch engine {
    case .memory: try await withNodes(engine: EngineKind.memory, configure: configure, body)
    case .redis: try await withNodes(engine: EngineKind.redis, configure: configure, body)
    case .threeShards, .threeMasterCluster:
        try await withPartitionServers(for: engine) { place in
            func placed(_ config: inout HubConfig) {
                place(&config)
                configure(&config)
            }
            try await withHub(redisURL: nil, configure: placed) { nodeA in
                try await withHub(redisURL: nil, configure: placed) { nodeB in
                    try await body([nodeA.port, nodeB.port])
                }
            }
        }
    }
}
