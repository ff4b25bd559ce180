import Foundation
import NIOCore
import StatusHubCore
@testable import StatusHubServer
import Testing

/// A subscribe's `recent`: the newest feed events (catalog `feed`) of its patterns, which no snapshot holds, so a
/// dashboard opened now shows the alerts raised before it connected.
@Suite("Recent feed events on subscribe")
struct RecentFeedTests {
    static func alert(_ machine: String, _ message: String, line: String? = "Line-2", severity: String = "high") -> String {
        SampleEvents.alert(machine, line: line, message: message).replacingOccurrences(of: #""severity":"high""#, with: #""severity":"\#(severity)""#)
    }

    /// Posts one event at a time, a few milliseconds apart (with partitions, `recent` orders by the ids' times), and
    /// returns their ids.
    static func post(_ events: [String], to port: Int) async throws -> [String] {
        var ids: [String] = []
        for event in events {
            let reply = try await HTTP.post(port: port, event: event)
            #expect(reply.status == 202)
            ids.append(reply.json["accepted"]?.arrayFirst?["event_id"]?.stringValue ?? "")
            try await Task.sleep(for: .milliseconds(5))
        }
        return ids
    }

    /// Waits until the node has fanned out an event with this message (its recent feed keeps an event before it fans
    /// it out), by watching the `alerts` channel.
    static func heard(_ message: String, at port: Int, posting events: [String]) async throws -> [String] {
        let watcher = try await TestSocket(port: port)
        try await watcher.subscribe(["alerts"])
        let ids = try await post(events, to: port)
        while try await watcher.nextEvent()["data"]?["message"]?.stringValue != message {}
        _ = await watcher.close()
        return ids
    }

    static func messages(_ recent: [String: JSONValue]) -> [String] {
        recent["events"]?.arrayValue?.compactMap { $0["data"]?["message"]?.stringValue } ?? []
    }

    @Test(arguments: [ContractEngine.memory, .redis, .threeShards])
    func aSubscribeGetsTheNewestFeedEventsOfItsPatternsOnce(_ kind: ContractEngine) async throws {
        try await withHub(on: kind) { hub in
            _ = try await Self.heard("a4", at: hub.port, posting: [
                SampleEvents.machineStatus("M-1", "breakdown"), Self.alert("M-1", "a1"), Self.alert("M-2", "a2", severity: "low"),
                Self.alert("M-3", "a3", line: "Line-9"), Self.alert("M-1", "a4"),
            ])
            // In the URL, after the snapshot: the newest two of Line-2's alerts, oldest first; no state among them.
            let socket = try await TestSocket(port: hub.port, path: "/v1/ws?channels=line:Line-2:*&snapshot=true&recent=2")
            _ = try await socket.next(op: "subscribed")
            var snapshotDone = false
            while !snapshotDone { snapshotDone = try await socket.next(op: "snapshot")["more"] != .bool(true) }
            let recent = try await socket.next()
            #expect(recent["op"]?.stringValue == "recent")
            #expect(recent["id"] == nil)
            #expect(Self.messages(recent) == ["a2", "a4"])
            // Then live, and nothing of the answer a second time.
            _ = try await Self.post([Self.alert("M-2", "a5")], to: hub.port)
            #expect(try await socket.nextEvent()["data"]?["message"]?.stringValue == "a5")
            #expect(await socket.drain(for: .milliseconds(300)).isEmpty)
            _ = await socket.close()

            // In a message, with its id and a filter; more asked for than there are.
            let filtered = try await TestSocket(port: hub.port)
            filtered.send(#"{"op":"subscribe","id":"r","channels":["alerts"],"recent":50,"filter":"data.severity = high"}"#)
            _ = try await filtered.next(op: "subscribed")
            let answer = try await filtered.next()
            #expect(answer["op"]?.stringValue == "recent" && answer["id"]?.stringValue == "r")
            #expect(Self.messages(answer) == ["a1", "a3", "a4", "a5"])
            _ = await filtered.close()

            // Resumed with `since` (one partition's id): the replay brings it up to date, so no `recent`.
            if !kind.isPartitioned {
                let latest = try await Self.post([Self.alert("M-2", "a6")], to: hub.port)
                let resumed = try await TestSocket(port: hub.port, path: "/v1/ws?channels=alerts&recent=5&since=\(latest[0])")
                _ = try await resumed.next(op: "subscribed")
                #expect(await resumed.drain(for: .milliseconds(300)).isEmpty)
                _ = await resumed.close()
            }
        }
    }

    /// A node that starts on a history fills its recent feed from it: a dashboard on the new node shows the alerts
    /// raised before the node was there.
    @Test func aNodeStartingOnAHistoryFillsItsRecentFeed() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url) { first in
                _ = try await Self.post(
                    [Self.alert("M-1", "b1"), SampleEvents.machineStatus("M-1", "running"), Self.alert("M-2", "b2")], to: first.port)
            }
            try await withHub(redisURL: redis.url) { second in
                var messages: [String] = []
                for _ in 0..<50 where messages != ["b1", "b2"] {
                    let socket = try await TestSocket(port: second.port, path: "/v1/ws?channels=alerts&recent=10")
                    messages = Self.messages(try await socket.next(op: "recent"))
                    _ = await socket.close()
                    if messages != ["b1", "b2"] { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(messages == ["b1", "b2"])
            }
        }
    }

    /// A restricted feed type's events reach, in `recent` as live, only tokens with its claim.
    @Test func restrictedFeedEventsReachOnlyTokensWithTheClaim() async throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/catalog")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        let sources = try files.map { name in
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            return (path: name, text: text.replacingOccurrences(
                of: "    feed: {from: data.severity}\n    entity_types: any", with: "    feed: {from: data.severity}\n    restricted: maintenance\n    entity_types: any"))
        }
        let catalog = try CatalogLoader.load(sources: sources)
        #expect(catalog.eventType(named: "alert_raised")?.definition.restriction.eventClaim == "maintenance")
        let issuer = TokenIssuer()
        let secured = try RedactionTests.secured(issuer)
        try await withHub(engine: .memory, configure: { config in
            secured(&config)
            config.catalog = catalog
        }) { hub in
            let posted = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data("[\(Self.alert("M-1", "restricted"))]".utf8),
                headers: ["Authorization": "Bearer \(RedactionTests.plantKey)"])
            #expect(posted.status == 202, "\(posted.text)")
            let maintenance = try await issuer.hs256(patterns: ["alerts"], see: ["maintenance"])
            let floor = try await issuer.hs256(patterns: ["alerts"])
            var seen: [String] = []
            for _ in 0..<50 where seen.isEmpty {
                let socket = try await TestSocket(port: hub.port, path: "/v1/ws?channels=alerts&recent=5&token=\(maintenance)")
                seen = Self.messages(try await socket.next(op: "recent"))
                _ = await socket.close()
                if seen.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(seen == ["restricted"])
            let socket = try await TestSocket(port: hub.port, path: "/v1/ws?channels=alerts&recent=5&token=\(floor)")
            #expect(Self.messages(try await socket.next(op: "recent")).isEmpty)
            _ = await socket.close()
        }
    }

    @Test func recentOutOfRangeIsRefusedNamingIt() async throws {
        for bad in ["-1", "1.5", "101", #""5""#, "true"] {
            let decoded = ClientMessage.decode(Array(#"{"op":"subscribe","channels":["alerts"],"recent":\#(bad)}"#.utf8))
            guard case .failure(let refusal) = decoded else {
                Issue.record("recent \(bad) accepted")
                continue
            }
            #expect(refusal.message == "'recent' must be a whole number from 0 to 100", "\(bad)")
        }
        guard case .success(.subscribe(_, _, _, _, _, let recent)) = ClientMessage.decode(
            Array(#"{"op":"subscribe","channels":["alerts"],"recent":100}"#.utf8))
        else {
            Issue.record("recent 100 refused")
            return
        }
        #expect(recent == 100)
        for (query, field) in [("channels=alerts&recent=101", "recent"), ("channels=alerts&recent=x", "recent"), ("recent=5", "channels")] {
            #expect(throws: SubscribeQuery.Refusal.self) { try SubscribeQuery(parsing: query, channelsOptional: true) }
            do {
                _ = try SubscribeQuery(parsing: query, channelsOptional: true)
            } catch {
                #expect(error.field == field, "\(query): \(error)")
            }
        }
        try await withHub(engine: .memory) { hub in
            let answer = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(path: "/v1/ws?channels=alerts&recent=500")
                return socket.responseStatus()
            }
            #expect(answer.status == 400)
            #expect(answer.text.contains(#""field":"recent""#), "\(answer.text)")
        }
    }

    /// The node's store: only feed events, a bound per partition, a fill that places older events by id and skips
    /// what it holds.
    @Test func theFeedKeepsFeedEventsBoundedAndFillsInOrder() throws {
        let feed = RecentFeed(kept: 3, catalog: .standard)
        func stored(_ json: String, _ id: UInt64, partition: Int = 0) -> StoredEvent {
            let validated = SampleEvents.validated(json)
            var event = StoredEvent(id: EventID(milliseconds: id, sequence: 0), validated: validated)
            event.partition = partition
            return event
        }
        feed.heard(stored(SampleEvents.machineStatus("M-1"), 1))
        for id in UInt64(10)...13 { feed.heard(stored(Self.alert("M-1", "x\(id)"), id)) }
        func ids() -> [UInt64] { feed.newest(10) { $0 }.map(\.id.milliseconds) }
        #expect(ids() == [11, 12, 13])
        // Older than everything a full partition keeps: left out; a held one: not twice.
        feed.fill([stored(Self.alert("M-1", "old"), 5), stored(Self.alert("M-1", "x12"), 12)])
        #expect(ids() == [11, 12, 13])
        let other = RecentFeed(kept: 3, catalog: .standard)
        other.heard(stored(Self.alert("M-1", "live"), 20))
        other.fill([stored(Self.alert("M-1", "b"), 15), stored(Self.alert("M-1", "a"), 14), stored(Self.alert("M-1", "c"), 16)])
        #expect(other.newest(10) { $0 }.map(\.id.milliseconds) == [15, 16, 20])
        // Delivered after a fill that read ahead of the delivery: held once.
        other.heard(stored(Self.alert("M-1", "live"), 20))
        #expect(other.newest(10) { $0 }.map(\.id.milliseconds) == [15, 16, 20])
        #expect(other.newest(2) { $0.id.milliseconds != 20 ? $0 : nil }.map(\.id.milliseconds) == [15, 16])
        // Partitions merge by the ids' times.
        other.heard(stored(Self.alert("M-2", "p1"), 18, partition: 1))
        #expect(other.newest(3) { $0 }.map(\.id.milliseconds) == [16, 18, 20])
        #expect(RecentFeed(kept: 0, catalog: .standard).newest(5) { $0 }.isEmpty)
        // A tenant's events are judged by their category as well.
        func bare(_ channel: String, _ type: String) -> StoredEvent {
            StoredEvent(
                id: EventID(milliseconds: 1, sequence: 0), entityKey: "resource:machine:M-1", channels: [channel],
                json: Array(#"{"event_id":"1-0","event_type":"\#(type)"}"#.utf8), carriesState: false)
        }
        #expect(Catalog.standard.isFeedEvent(bare("@acme:alerts", "alert_raised")))
        #expect(Catalog.standard.isFeedEvent(bare("alerts", "alert_raised")))
        #expect(!Catalog.standard.isFeedEvent(bare("resource-status", "alert_raised")))
    }

    /// A live copy of an event the `recent` answer carried is dropped at the seam; others pass.
    @Test func theSeamDropsLiveCopiesOfWhatRecentSent() throws {
        let connection = Connection(id: 1, outboxCapacity: 100, conflateAbove: 50, claims: nil)
        let alerts = [try ChannelPattern(parsing: "alerts")]
        connection.record(added: alerts)
        connection.beginSeam()
        var answered = SeamFilter()
        let sent = SeamFilterTests.event(12, ["alerts", "machine:M-1"], key: "resource:machine:M-1", state: false).event
        answered.sentRecent([sent], patterns: alerts)
        connection.endSeam(answered)
        connection.offer(SeamFilterTests.event(11, ["alerts", "machine:M-2"], key: "resource:machine:M-2", state: false))
        connection.offer(SeamFilterTests.event(12, ["alerts", "machine:M-1"], key: "resource:machine:M-1", state: false))
        connection.offer(SeamFilterTests.event(13, ["alerts", "machine:M-1"], key: "resource:machine:M-1", state: false))
        let frames = (connection.outbox.take() ?? []).map { String(buffer: $0.framed) }
        #expect(frames == ["11 resource:machine:M-2", "13 resource:machine:M-1"])
    }
}
