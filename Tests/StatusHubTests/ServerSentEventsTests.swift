import Foundation
import Logging
import ServiceLifecycle
import StatusHubServer
import StatusHubCore
import Testing

@Suite("GET /v1/sse: the subscription as Server-Sent Events")
struct ServerSentEventsTests {
    @Test(arguments: EngineKind.allCases)
    func snapshotLiveEventsWithIDsAndResumeByLastEventID(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", "breakdown"))
            // Not `line:Line-2:*`: a status change also moves the line's counters, whose events would interleave.
            let stream = try await SSEClient(port: hub.port, path: "/v1/sse?channels=line:Line-2:resource-status:*,alerts&snapshot=true")
            #expect(stream.status == 200)
            #expect(stream.head.lowercased().contains("content-type: text/event-stream"))
            #expect(try await stream.next().data.isEmpty)  // retry: 2000
            let subscribed = try await stream.next(op: "subscribed")
            #expect(subscribed.data == #"{"channels":["line:Line-2:resource-status:*","alerts"],"op":"subscribed"}"#)
            let snapshot = try await stream.next(op: "snapshot")
            #expect(snapshot.data.contains(#""entity_id":"M-1""#))
            // The snapshot's position is where a reconnect resumes.
            #expect(snapshot.id != nil && snapshot.data.contains(#""position":"\#(snapshot.id!)""#))

            let accepted = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-2"), SampleEvents.alert("M-2")])
                .json["accepted"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } ?? []
            let first = try await stream.next(op: "event")
            let second = try await stream.next(op: "event")
            #expect([first.id, second.id] == accepted.map(Optional.some))
            #expect(first.data.hasPrefix(#"{"op":"event","event":{"event_id":"\#(accepted[0])""#))
            stream.close()

            // Missed while away: two of its channels, one not.
            let missed = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-3"), SampleEvents.machineStatus("M-4", line: "Line-9"), SampleEvents.alert("M-3", line: nil),
            ]).json["accepted"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } ?? []
            let again = try await SSEClient(
                port: hub.port, path: "/v1/sse?channels=line:Line-2:resource-status:*,alerts&snapshot=true", headers: ["Last-Event-ID": accepted[1]])
            _ = try await again.next(op: "subscribed")
            let replayed = [try await again.next(op: "event"), try await again.next(op: "event")]
            #expect(replayed.map(\.id) == [missed[0], missed[2]])
            // Resumed, not re-snapshotted; nothing else.
            #expect(await again.drain(for: 0.3).isEmpty)
            again.close()
        }
    }

    @Test func filtersHeartbeatsAndRefusals() async throws {
        try await withHub(engine: .memory, configure: { $0.websocket.pingIntervalSeconds = 0.2 }) { hub in
            let filtered = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&filter=data.severity+in+(critical)")
            #expect(try await filtered.next(op: "subscribed").data.contains(#""filter":"data.severity in (\"critical\")""#))
            // Heartbeat comments while nothing happens.
            var comment = try await filtered.next()
            while !comment.comment { comment = try await filtered.next() }
            _ = try await HTTP.post(port: hub.port, events: [
                FilteredDeliveryTests.alert("M-1", severity: "low"), FilteredDeliveryTests.alert("M-2", severity: "critical"),
            ])
            #expect(try await filtered.next(op: "event").data.contains(#""entity_id":"M-2""#))
            #expect(await filtered.drain(for: 0.3).isEmpty)
            filtered.close()

            for (path, field) in [
                ("/v1/sse", "channels"), ("/v1/sse?channels=line::x", "channels"), ("/v1/sse?channels=alerts&filter=severity%3Dhigh", "filter"),
                ("/v1/sse?channels=alerts&since=yesterday", "since"), ("/v1/sse?channels=alerts&color=red", "color"),
            ] {
                let refused = try await SSEClient(port: hub.port, path: path)
                #expect(refused.status == 400, "\(path)")
                #expect(try await refused.errorBody().contains(#""field":"\#(field)""#), "\(path)")
            }
        }
    }

    @Test func tokensAreCheckedLikeTheWebSocket() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: {
            $0.auth.required = true
            $0.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            let anonymous = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts")
            #expect(anonymous.status == 401)
            #expect(try await anonymous.errorBody().contains(#""field":"token""#))
            let bad = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=not.a.jwt")
            #expect(bad.status == 401)
            let token = try await issuer.hs256(patterns: ["line:Line-2:*"])
            let outside = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=\(token)")
            #expect(outside.status == 403)
            #expect(try await outside.errorBody().contains("outside this token's patterns"))
            let allowed = try await SSEClient(port: hub.port, path: "/v1/sse?channels=line:Line-2:alerts:*", headers: ["Authorization": "Bearer \(token)"])
            #expect(allowed.status == 200)
            _ = try await allowed.next(op: "subscribed")
            allowed.close()
        }
    }

    /// `token=` with nothing after it is no token, as on `/v1/ws` and `/v1/state`: an open node streams to it
    /// anonymously (a page that fills the parameter from an empty setting), where `/v1/sse` alone answered 401
    /// "not a JWT"; a node that requires tokens refuses it as it refuses no token.
    @Test func anEmptyTokenParameterIsNoToken() async throws {
        try await withHub(engine: .memory) { hub in
            let open = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=")
            #expect(open.status == 200)
            _ = try await open.next(op: "subscribed")
            open.close()
            #expect(try await HTTP.get(port: hub.port, "/v1/state?pattern=alerts&token=").status == 200)
        }
        try await withHub(engine: .memory, configure: {
            $0.auth.required = true
            $0.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            let refused = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=")
            #expect(refused.status == 401)
            let noToken = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts")
            let (refusedBody, noTokenBody) = (try await refused.errorBody(), try await noToken.errorBody())
            #expect(refusedBody == noTokenBody, "\(refusedBody)")
        }
    }

    @Test func aStreamEndsWhenItsTokenExpires() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: {
            $0.auth.required = true
            $0.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            // Long enough that a starved CI run still opens the stream before it expires (3 s did not, once).
            let token = try await issuer.hs256(patterns: ["*"], expiresIn: 15)
            let stream = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=\(token)")
            #expect(stream.status == 200)
            _ = try await stream.next(op: "subscribed")
            let expired = try await stream.next(op: "error", timeout: 40)
            #expect(expired.data.contains("token expired"))
        }
    }

    /// A token valid for ages (`exp` 1e17 s away, as an issuer's "never" can be): the wait until it expires did not
    /// fit Int64 in milliseconds, and the conversion trapped and stopped the node under every stream it held.
    @Test func aTokenThatExpiresInAgesKeepsItsStreamAndTheNode() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: {
            $0.auth.required = true
            $0.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            let token = try await issuer.hs256(patterns: ["*"], expiresIn: 1e17)
            let stream = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts&token=\(token)")
            #expect(stream.status == 200)
            _ = try await stream.next(op: "subscribed")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await HTTP.request("GET", port: hub.port, "/health", contentType: nil).status == 200)
            stream.close()
        }
    }

    /// The slow-consumer rules of the WebSocket: a stream that is not read overflows its outbox and is cut, while a
    /// healthy stream (and a WebSocket) on the same node gets every event.
    @Test func aStreamThatIsNotReadIsCutAndNobodyElseWaits() async throws {
        // Heartbeats off the table (one ping in 10 minutes), as in SlowConsumerTests: a starved CI-like run closed the
        // healthy WebSocket, the only other way the hub ends such a connection being a late pong.
        try await withHub(engine: .memory, configure: {
            $0.websocket.outboxCapacity = 1024
            $0.websocket.pingIntervalSeconds = 600
        }) { hub in
            let healthy = try await TestSocket(port: hub.port)
            try await healthy.subscribe(["resource-status"])
            let stalled = try await SSEClient(port: hub.port, path: "/v1/sse?channels=resource-status")
            #expect(stalled.status == 200)
            try await Task.sleep(for: .milliseconds(100))
            // ~8 MB of events: more than the socket buffers between the hub and a client that reads nothing.
            let padding = String(repeating: "p", count: 700)
            for batch in 0..<20 {
                let events = (0..<500).map { SampleEvents.machineStatus("M-\(batch)-\($0)", extra: #","pad":"\#(padding)""#) }
                #expect(try await HTTP.post(port: hub.port, events: events).status == 202)
                for _ in 0..<500 { _ = try await healthy.nextEvent() }
            }
            // Now read: what was in the buffers, then the end of the stream.
            var events = 0
            while let message = try? await stalled.next(timeout: 15) {
                if message.data.contains(#""op":"event""#) { events += 1 }
            }
            #expect(stalled.closed)
            #expect(events < 10_000)
            let metrics = try await HTTP.get(port: hub.port, "/metrics")
            #expect(metrics.text.contains("statushub_slow_consumer_closes_total 1"))
            #expect(metrics.text.contains("statushub_sse_connections 0"))
            _ = await healthy.close()
        }
    }

    @Test func aStoppingNodeSendsWhatIsQueuedThenACloseEvent() async throws {
        var config = HubConfig()
        config.server.host = "127.0.0.1"
        config.server.port = 0
        config.server.shutdownGraceSeconds = 3
        var logger = Logger(label: "test-hub")
        logger.logLevel = .warning
        let engine = MemoryEngine(config: config)
        let hub = try StatusHub(config: config, engine: engine)
        let ports = AsyncStream<Int>.makeStream()
        let group = ServiceGroup(configuration: .init(services: hub.makeServices(logger: logger) { ports.continuation.yield($0) }, logger: logger))
        let running = Task { try await group.run() }
        var iterator = ports.stream.makeAsyncIterator()
        let port = try #require(await iterator.next())
        while !engine.isReady { try await Task.sleep(for: .milliseconds(5)) }
        let stream = try await SSEClient(port: port, path: "/v1/sse?channels=resource-status")
        _ = try await stream.next(op: "subscribed")
        #expect(try await HTTP.post(port: port, events: (0..<20).map { SampleEvents.machineStatus("M-\($0)") }).status == 202)
        await group.triggerGracefulShutdown()
        var events = 0
        var message = try await stream.next()
        while message.event == nil {
            if message.data.contains(#""op":"event""#) { events += 1 }
            message = try await stream.next()
        }
        #expect(events == 20)
        #expect(message.event == "close" && message.data.contains("1001"))
        try await running.value
    }
}
