import Foundation
import StatusHubCore
import StatusHubServer
import Testing

@Suite("Resume, idempotent ingest and resync")
struct ResumeTests {
    @Test(arguments: EngineKind.allCases)
    func reconnectWithSinceGetsExactlyWhatWasMissed(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let first = try await TestSocket(port: hub.port)
            try await first.subscribe(["line:Line-2:*"])
            _ = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-1"), SampleEvents.alert("M-1")])
            _ = try await first.nextEvent()
            let lastSeen = try #require(try await first.nextEvent()["event_id"]?.stringValue)
            _ = await first.close()

            // While it is away: two matching events, one that is not.
            _ = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-2", "idle"), SampleEvents.machineStatus("M-3", line: "Line-9"), SampleEvents.alert("M-2"),
            ])
            let again = try await TestSocket(port: hub.port)
            again.send(#"{"op":"subscribe","id":"r","channels":["line:Line-2:*"],"since":"\#(lastSeen)"}"#)
            #expect(try await again.next()["op"] == .string("subscribed"))
            let replayed = [try await again.nextEvent(), try await again.nextEvent()]
            #expect(replayed.map { $0["entity_id"]?.stringValue } == ["M-2", "M-2"])
            #expect(replayed.map { $0["event_type"]?.stringValue } == ["resource_status_changed", "alert_raised"])
            // Then live, with nothing repeated at the seam.
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-4"))
            #expect(try await again.nextEvent()["entity_id"] == .string("M-4"))
            #expect(await again.drain(for: .milliseconds(200)).isEmpty)
            _ = await again.close()
        }
    }

    /// A replay Redis cannot serve just then (stopped past the command timeout and the shared read's retries) is
    /// answered `unavailable` and `resync` `history_unavailable` — not `engine_gap`, which says events were lost —
    /// (the snapshot that may follow is another read, left out: whether Redis is back by then is the machine's timing).
    @Test func aReplayRedisCannotServeIsNotCalledALoss() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url, configure: { $0.redis.commandTimeoutSeconds = 0.5 }) { hub in
                let first = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1"))
                let since = try #require(first.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue)
                let socket = try await TestSocket(port: hub.port)
                redis.pause()
                socket.send(#"{"op":"subscribe","id":"r","channels":["machine:*"],"since":"\#(since)"}"#)
                let error = try await socket.next(op: "error", timeout: .seconds(30))
                let resync = try await socket.next(op: "resync", timeout: .seconds(10))
                redis.resume()
                #expect(error["code"] == .string("unavailable"))
                #expect(resync["reason"] == .string("history_unavailable") && resync["id"] == .string("r"))
            }
        }
    }

    /// A resume longer than `websocket.conflate_above`, of a few machines' states, to a reader that reads it all:
    /// every event arrives. Pushed into the outbox at once, the replay crossed the threshold by itself and the
    /// machines' older states were conflated away (a restart storm's subscribers lost 59 of 336 events each).
    @Test(arguments: EngineKind.allCases)
    func aLongReplayIsNotConflatedForAReaderThatKeepsUp(_ kind: EngineKind) async throws {
        try await withHub(engine: kind, configure: { $0.websocket.conflateAbove = 16 }) { hub in
            let first = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-0"))
            let since = try #require(first.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue)
            let statuses = ["running", "idle", "down"]
            var stored: [EventID] = []
            for batch in 0..<4 {
                let reply = try await HTTP.post(port: hub.port, events: (0..<30).map {
                    SampleEvents.machineStatus("M-\($0 % 3)", statuses[(batch + $0 / 3) % 3])
                })
                stored += (reply.json["accepted"]?.arrayValue ?? []).compactMap { $0["event_id"]?.stringValue.flatMap(EventID.init) }
            }
            // Far more than the conflation threshold, of three machines (a repeated status is refused, not stored).
            #expect(stored.count > 4 * 16)
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","channels":["machine:*"],"since":"\#(since)"}"#)
            #expect(try await socket.next()["op"] == .string("subscribed"))
            var received: [EventID] = []
            while received.count < stored.count {
                guard let event = try? await socket.nextEvent() else { break }
                if let id = event["event_id"]?.stringValue.flatMap(EventID.init) { received.append(id) }
            }
            #expect(received == stored.sorted(), "\(received.count) of \(stored.count) replayed")
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = await socket.close()
        }
    }

    @Test func resumeUnderLoadHasNoGapAndNoDuplicateAtTheSeam() async throws {
        try await withHub(engine: .memory) { hub in
            let ids = try await HTTP.post(port: hub.port, events: (0..<10).map { SampleEvents.machineStatus("M-\($0)") })
                .json["accepted"]?.arrayValue ?? []
            let since = try #require(ids[2]["event_id"]?.stringValue)
            // Publish continuously while the subscriber resumes, so live events race the replay.
            let publisher = Task {
                for batch in 0..<20 {
                    _ = try await HTTP.post(port: hub.port, events: (0..<10).map { SampleEvents.machineStatus("L-\(batch)-\($0)") })
                }
            }
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","channels":["resource-status"],"since":"\#(since)"}"#)
            try await publisher.value
            var received: [EventID] = []
            while received.count < 7 + 200 {
                if let id = try await socket.nextEvent()["event_id"]?.stringValue.flatMap(EventID.init) { received.append(id) }
            }
            #expect(received == received.sorted())
            #expect(Set(received).count == received.count)
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = await socket.close()
        }
    }

    @Test(arguments: EngineKind.allCases)
    func sinceOlderThanHistoryIsToldToResyncAndGetsASnapshot(_ kind: EngineKind) async throws {
        try await withHub(engine: kind, configure: { $0.memory.historyMaxLength = 5; $0.redis.historyMaxLength = 5 }) { hub in
            let first = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-0"))
            let since = try #require(first.json["accepted"]?.arrayFirst?["event_id"]?.stringValue)
            for batch in 0..<25 {
                _ = try await HTTP.post(port: hub.port, events: (0..<100).map { SampleEvents.machineStatus("M-\(batch)-\($0 % 3)") })
            }
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","id":"r9","channels":["machine:M-0"],"since":"\#(since)","snapshot":true}"#)
            #expect(try await socket.next()["op"] == .string("subscribed"))
            #expect(try await socket.next() == ["op": .string("resync"), "id": .string("r9"), "reason": .string("history_gap")])
            let snapshot = try await socket.next()
            #expect(snapshot["op"] == .string("snapshot"))
            #expect(snapshot["position"]?.stringValue.flatMap(EventID.init) != nil)
            if case .array(let events)? = snapshot["events"] {
                #expect(events.map { $0["entity_id"]?.stringValue } == ["M-0"])
            } else {
                Issue.record("snapshot without events")
            }
            _ = await socket.close()
        }
    }

    @Test(arguments: EngineKind.allCases)
    func retriedPublishIsAcknowledgedOnceWithTheOriginalID(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let socket = try await TestSocket(port: hub.port)
            try await socket.subscribe(["machine:M-77"])
            let event = Data(SampleEvents.machineStatus("M-77").utf8)
            let first = try await HTTP.request("POST", port: hub.port, "/v1/events", body: event, headers: ["Idempotency-Key": "mes-run-1"])
            let retry = try await HTTP.request("POST", port: hub.port, "/v1/events", body: event, headers: ["Idempotency-Key": "mes-run-1"])
            #expect(first.status == 202)
            #expect(retry.status == 202)
            let original = first.json["accepted"]?.arrayFirst
            #expect(original?["duplicate"] == nil)
            #expect(retry.json["accepted"]?.arrayFirst?["event_id"] == original?["event_id"])
            #expect(retry.json["accepted"]?.arrayFirst?["duplicate"] == .bool(true))
            #expect(try await socket.nextEvent()["event_id"] == original?["event_id"])
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)

            // The field works per event in a batch; the header is for single events only.
            let keyed = SampleEvents.machineStatus("M-77").replacingOccurrences(of: "{\"event_type\"", with: #"{"idempotency_key":"k-2","event_type""#)
            let batch = try await HTTP.post(port: hub.port, events: [keyed, keyed])
            #expect(batch.status == 202)
            let both = batch.json["accepted"]?.arrayValue ?? []
            #expect(both.count == 2 && both[0]["event_id"] == both[1]["event_id"])
            let refused = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data("[\(keyed),\(keyed)]".utf8), headers: ["Idempotency-Key": "k-3"])
            #expect(refused.status == 400)
            #expect(refused.json["error"]?["field"] == .string("Idempotency-Key"))
            _ = await socket.close()
        }
    }

    /// An id the engine cannot place gets `resync`, on both engines: one newer than anything assigned, one older than
    /// the history. `0-0` means the whole history on both while nothing was trimmed.
    @Test(arguments: EngineKind.allCases)
    func sinceAnIDTheEngineCannotPlaceGetsResyncAndZeroReplaysEverything(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            _ = try await HTTP.post(port: hub.port, events: (0..<3).map { SampleEvents.machineStatus("M-\($0)") })
            for unknown in ["99999999999999-0", "1-0"] {
                let socket = try await TestSocket(port: hub.port)
                socket.send(#"{"op":"subscribe","id":"r","channels":["machine:*"],"since":"\#(unknown)"}"#)
                #expect(try await socket.next()["op"] == .string("subscribed"))
                #expect(try await socket.next() == ["op": .string("resync"), "id": .string("r"), "reason": .string("history_gap")])
                _ = await socket.close()
            }
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","id":"r","channels":["machine:*"],"since":"0-0"}"#)
            #expect(try await socket.next()["op"] == .string("subscribed"))
            let replayed = [try await socket.nextEvent(), try await socket.nextEvent(), try await socket.nextEvent()]
            #expect(replayed.map { $0["entity_id"]?.stringValue } == ["M-0", "M-1", "M-2"])
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = await socket.close()
        }
    }

    /// The memory engine's history starts with its process: a subscriber resuming from before a restart cannot be
    /// brought up to date by replay, and must be told so rather than answered with nothing.
    @Test func resumeAcrossAMemoryEngineRestartGetsResync() async throws {
        let lastSeen = try await withHub(engine: .memory) { hub in
            let reply = try await HTTP.post(port: hub.port, events: (0..<5).map { SampleEvents.machineStatus("M-\($0)") })
            return try #require(reply.json["accepted"]?.arrayValue?.last?["event_id"]?.stringValue)
        }
        try await withHub(engine: .memory) { hub in
            _ = try await HTTP.post(port: hub.port, events: (5..<15).map { SampleEvents.machineStatus("M-\($0)") })
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","id":"r","channels":["machine:*"],"since":"\#(lastSeen)"}"#)
            #expect(try await socket.next()["op"] == .string("subscribed"))
            #expect(try await socket.next() == ["op": .string("resync"), "id": .string("r"), "reason": .string("history_gap")])
            _ = await socket.close()
        }
    }

    /// The keys a 503 with an unknown outcome hands out (`hub:<call>:<position>`) are resent like any idempotency
    /// key. On Redis one naming a call that left no record is stored, and remembered; on the memory engine, whose
    /// outcome is always known and which never hands one out, it is an ordinary key. Either way: once, then
    /// duplicates.
    @Test(arguments: EngineKind.allCases)
    func aResendKeyOfACallThatNeverRanStoresOnce(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let socket = try await TestSocket(port: hub.port)
            try await socket.subscribe(["machine:M-78"])
            let event = Data(SampleEvents.machineStatus("M-78").utf8)
            let key = "hub:0123456789abcdef0123456789abcdef:0"
            let first = try await HTTP.request("POST", port: hub.port, "/v1/events", body: event, headers: ["Idempotency-Key": key])
            let retry = try await HTTP.request("POST", port: hub.port, "/v1/events", body: event, headers: ["Idempotency-Key": key])
            #expect(first.status == 202)
            #expect(first.json["accepted"]?.arrayFirst?["duplicate"] == nil)
            #expect(retry.json["accepted"]?.arrayFirst?["duplicate"] == .bool(true))
            #expect(retry.json["accepted"]?.arrayFirst?["event_id"] == first.json["accepted"]?.arrayFirst?["event_id"])
            #expect(try await socket.nextEvent()["event_id"] == first.json["accepted"]?.arrayFirst?["event_id"])
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = await socket.close()
        }
    }
}
