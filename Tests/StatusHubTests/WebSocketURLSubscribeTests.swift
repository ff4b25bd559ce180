import Foundation
import StatusHubCore
import StatusHubServer
import Testing

/// `GET /v1/ws?channels=…`: the subscribe given in the upgrade's URL, with the parameters of `/v1/sse`.
@Suite("WebSocket subscribe in the URL")
struct WebSocketURLSubscribeTests {
    @Test(arguments: EngineKind.allCases)
    func theURLSubscribesWithSnapshotFilterAndResume(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", "breakdown"))
            // Not `line:Line-2:*`: a status change also moves the line's counters, whose events would interleave.
            let socket = try await TestSocket(port: hub.port, path: "/v1/ws?channels=line:Line-2:resource-status:*,alerts&snapshot=true")
            let subscribed = try await socket.next()
            #expect(subscribed["op"]?.stringValue == "subscribed")
            #expect(subscribed["id"] == nil)
            #expect(subscribed["channels"]?.arrayValue?.compactMap(\.stringValue) == ["line:Line-2:resource-status:*", "alerts"])
            let snapshot = try await socket.next(op: "snapshot")
            #expect(snapshot["events"]?.arrayValue?.compactMap { $0["entity_id"]?.stringValue } == ["M-1"])

            let accepted = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-2"), SampleEvents.alert("M-2")])
                .json["accepted"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } ?? []
            #expect(try await socket.nextEvent()["event_id"]?.stringValue == accepted[0])
            #expect(try await socket.nextEvent()["event_id"]?.stringValue == accepted[1])
            // Messages still subscribe on top of the URL's.
            try await socket.subscribe(["machine:M-9"])
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-9", line: "Line-9"))
            #expect(try await socket.nextEvent()["entity_id"]?.stringValue == "M-9")
            _ = await socket.close()

            // Missed while away, on two of its channels and one not; resumed by `since`, not re-snapshotted.
            let missed = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-3"), SampleEvents.machineStatus("M-4", line: "Line-9"), SampleEvents.alert("M-3", line: nil),
            ]).json["accepted"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } ?? []
            let again = try await TestSocket(
                port: hub.port, path: "/v1/ws?channels=line:Line-2:resource-status:*,alerts&since=\(accepted[1])")
            _ = try await again.next(op: "subscribed")
            #expect(try await again.nextEvent()["event_id"]?.stringValue == missed[0])
            #expect(try await again.nextEvent()["event_id"]?.stringValue == missed[2])
            #expect(await again.drain(for: .milliseconds(300)).isEmpty)
            _ = await again.close()

            // A filter in the URL judges live events as a message's would.
            let filtered = try await TestSocket(port: hub.port, path: "/v1/ws?channels=alerts&filter=data.severity+in+(critical)")
            #expect(try await filtered.next(op: "subscribed")["filter"]?.stringValue == #"data.severity in ("critical")"#)
            _ = try await HTTP.post(port: hub.port, events: [
                FilteredDeliveryTests.alert("M-5", severity: "low"), FilteredDeliveryTests.alert("M-6", severity: "critical"),
            ])
            #expect(try await filtered.nextEvent()["entity_id"]?.stringValue == "M-6")
            #expect(await filtered.drain(for: .milliseconds(300)).isEmpty)
            _ = await filtered.close()
        }
    }

    /// A query the hub cannot take is answered before any upgrade: a JSON 400 naming the parameter.
    @Test func aMalformedQueryGetsA400NamingTheParameter() async throws {
        try await withHub(engine: .memory) { hub in
            for (path, field) in [
                ("/v1/ws?channels=line::x", "channels"), ("/v1/ws?channels=alerts&filter=severity%3Dhigh", "filter"),
                ("/v1/ws?channels=alerts&since=yesterday", "since"), ("/v1/ws?channels=alerts&snapshot=maybe", "snapshot"),
                ("/v1/ws?chanels=alerts", "chanels"), ("/v1/ws?snapshot=true", "channels"), ("/v1/ws?channels=%zz", "channels"),
            ] {
                let answer = try await RawSocket.offPool {
                    let socket = try RawSocket(port: hub.port)
                    try socket.upgrade(path: path)
                    return socket.responseStatus()
                }
                #expect(answer.status == 400, "\(path)")
                #expect(answer.text.lowercased().contains("content-type: application/json"), "\(path)")
                #expect(answer.text.contains(#""field":"\#(field)""#), "\(path): \(answer.text)")
            }
            // Without a subscribe, as before: upgraded, and the client subscribes by message.
            let plain = try await TestSocket(port: hub.port, path: "/v1/ws")
            try await plain.subscribe(["alerts"])
            _ = await plain.close()
        }
    }

    /// The URL's patterns are held to the token's like a message's: the others are refused one by one.
    @Test func theURLsPatternsAreHeldToTheTokens() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try AccessControlTests.secured(issuer)) { hub in
            let token = try await issuer.hs256(patterns: ["line:Line-2:*"])
            let socket = try await TestSocket(port: hub.port, path: "/v1/ws?token=\(token)&channels=alerts,line:Line-2:alerts:*")
            let refused = try await socket.next()
            #expect(refused["op"]?.stringValue == "error")
            #expect(refused["code"]?.stringValue == "forbidden")
            #expect(refused["message"]?.stringValue?.contains("'alerts'") == true)
            let subscribed = try await socket.next(op: "subscribed")
            #expect(subscribed["channels"]?.arrayValue?.compactMap(\.stringValue) == ["line:Line-2:alerts:*"])
            #expect(try await AccessControlTests.post(hub.port, key: AccessControlTests.lineKey, [SampleEvents.alert("M-2")]).status == 202)
            #expect(try await socket.nextEvent()["entity_id"]?.stringValue == "M-2")
            _ = await socket.close()
            // No token: closed with 4401 after the upgrade, as without channels.
            #expect(try await RawSocket.closeCodeAfterUpgrade(port: hub.port, path: "/v1/ws?channels=alerts") == 4401)
        }
    }
}
