import Foundation
import NIOWebSocket
import StatusHubCore
import StatusHubServer
import Testing

@Suite("WebSocket subscribe and fan-out")
struct WebSocketTests {
    @Test(arguments: EngineKind.allCases)
    func subscribersGetOnlyWhatTheirPatternsMatchOnce(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let line2 = try await TestSocket(port: hub.port)
            let alerts = try await TestSocket(port: hub.port)
            let overlapping = try await TestSocket(port: hub.port)
            try await line2.subscribe(["line:Line-2:*"])
            try await alerts.subscribe(["line:*:alerts:*"])
            try await overlapping.subscribe(["alerts", "machine:M-7", "line:Line-2:*"])

            _ = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-9", line: "Line-3"),  // nobody above wants this
                SampleEvents.alert("M-7", line: "Line-2"),
                SampleEvents.machineStatus("M-8", line: "Line-2"),
            ])
            let first = try await line2.nextEvent()
            let second = try await line2.nextEvent()
            #expect(first["event_type"]?.stringValue == "alert_raised")
            #expect(second["entity_id"]?.stringValue == "M-8")
            #expect(try await alerts.nextEvent()["entity_id"]?.stringValue == "M-7")
            // Three of its patterns match the alert; it still arrives once.
            #expect(try await overlapping.nextEvent()["event_type"]?.stringValue == "alert_raised")
            #expect(try await overlapping.nextEvent()["entity_id"]?.stringValue == "M-8")
            #expect(await overlapping.drain(for: .milliseconds(200)).isEmpty)
            #expect(await alerts.drain(for: .milliseconds(50)).isEmpty)
            for socket in [line2, alerts, overlapping] { _ = await socket.close() }
        }
    }

    @Test(arguments: EngineKind.allCases)
    func snapshotThenLiveWithoutGapOrDuplicate(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            _ = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-1", "running"), SampleEvents.machineStatus("M-2", "idle", line: "Line-3"),
                SampleEvents.machineStatus("M-1", "maintenance"),
            ])
            let socket = try await TestSocket(port: hub.port)
            let all = try await socket.subscribe(["line:Line-2:*", "machine:M-2"], snapshot: true)
            // Line 2's live counter is one of its states too (M-1 ran, then stopped: 0).
            #expect(all.filter { $0["entity_type"] == .string("counter") }.map { $0["data"]?["value"] } == [.number(0)])
            let snapshot = all.filter { $0["entity_type"] != .string("counter") }
            #expect(snapshot.count == 2)
            let m1 = snapshot.first { $0["entity_id"]?.stringValue == "M-1" }
            #expect(m1?["data"]?["current_status"]?.stringValue == "maintenance")
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", "breakdown"))
            #expect(try await socket.nextEvent()["data"]?["current_status"]?.stringValue == "breakdown")
            _ = await socket.close()
        }
    }

    @Test(arguments: EngineKind.allCases)
    func everyReceiverGetsTheSameBytes(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let plain = try await TestSocket(port: hub.port)
            let compressed = try await TestSocket(port: hub.port, compression: true)
            try await plain.subscribe(["resource-status"])
            try await compressed.subscribe(["machine:*"])
            let reply = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-5", extra: #","note":"\#(String(repeating: "compressible ", count: 100))""#))
            #expect(reply.status == 202)
            let a = try await plain.nextEvent()
            let b = try await compressed.nextEvent()
            #expect(a == b)
            #expect(a["event_id"]?.stringValue == reply.json["accepted"]?.arrayFirst?["event_id"]?.stringValue)
            _ = await plain.close()
            _ = await compressed.close()
        }
    }

    @Test func unsubscribePingAndErrorsKeepTheConnection() async throws {
        try await withHub(engine: .memory, configure: { $0.websocket.maxSubscriptions = 2 }) { hub in
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"dance","id":"r1"}"#)
            var reply = try await socket.next()
            #expect(reply["op"] == .string("error"))
            #expect(reply["code"] == .string("unknown_op"))
            #expect(reply["id"] == .string("r1"))

            socket.send(#"{"op":"subscribe","id":"r2","channels":["line::x"]}"#)
            reply = try await socket.next()
            #expect(reply["code"] == .string("invalid_pattern"))
            #expect(reply["message"]?.stringValue?.contains("line::x") == true)

            socket.send("not json")
            #expect(try await socket.next()["code"] == .string("invalid_json"))

            socket.send(#"{"op":"subscribe","id":"r3","channels":["a","b","c"]}"#)
            #expect(try await socket.next()["code"] == .string("too_many_subscriptions"))

            socket.send(#"{"op":"ping","id":"r4"}"#)
            #expect(try await socket.next() == ["op": .string("pong"), "id": .string("r4")])

            try await socket.subscribe(["alerts"])
            socket.send(#"{"op":"unsubscribe","id":"r5","channels":["alerts"]}"#)
            #expect(try await socket.next()["op"] == .string("unsubscribed"))
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.alert("M-1"))
            #expect(await socket.drain(for: .milliseconds(200)).isEmpty)
            _ = await socket.close()
        }
    }

    /// Frames are gathered into batches — adaptively by default (`LoopFlusher`: after the work in progress on a
    /// busy loop), or after `websocket.write_delay_ms` — and still every one arrives once, in each publisher's
    /// order, on uncompressed and compressed connections alike, with several publishers at once on both engines.
    @Test(arguments: EngineKind.allCases, [0.0, 20.0])
    func batchedWritesLoseAndReorderNothing(engine: EngineKind, writeDelayMs: Double) async throws {
        try await withHub(engine: engine, configure: { $0.websocket.writeDelayMs = writeDelayMs }) { hub in
            var sockets: [TestSocket] = []
            for compression in [false, false, false, true] {
                let socket = try await TestSocket(port: hub.port, compression: compression)
                try await socket.subscribe(["machine:*"])
                sockets.append(socket)
            }
            let publishers = 4, rounds = 5, perRequest = 10
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for round in 0..<rounds {
                            let ids = (0..<perRequest).map { "M-\(publisher * 1000 + round * perRequest + $0)" }
                            let reply = try await HTTP.post(port: hub.port, events: ids.map { SampleEvents.machineStatus($0) })
                            #expect(reply.status == 202)
                        }
                    }
                }
                try await group.waitForAll()
            }
            for socket in sockets {
                var received: [Int: [Int]] = [:]
                for _ in 0..<(publishers * rounds * perRequest) {
                    let id = try await socket.nextEvent()["entity_id"]?.stringValue ?? ""
                    let number = Int(id.dropFirst(2)) ?? -1
                    received[number / 1000, default: []].append(number % 1000)
                }
                for publisher in 0..<publishers {
                    #expect(received[publisher] == Array(0..<(rounds * perRequest)), "publisher \(publisher)")
                }
                #expect(await socket.drain(for: .milliseconds(100)).isEmpty)
                _ = await socket.close()
            }
        }
    }

    @Test func oversizeFrameClosesWith1009AndOthersCarryOn() async throws {
        try await withHub(engine: .memory, configure: { $0.websocket.maxFrameBytes = 1024 }) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            let offender = try await TestSocket(port: hub.port)
            offender.send(#"{"op":"ping","id":"\#(String(repeating: "x", count: 4096))"}"#)
            let close = try await offender.closedByHub()
            #expect(close?.closeCode == .messageTooLarge)
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.alert("M-1"))
            #expect(try await bystander.nextEvent()["entity_id"] == .string("M-1"))
            _ = await bystander.close()
        }
    }

    @Test func binaryFrameIsRefusedWithCloseCode() async throws {
        try await withHub(engine: .memory) { hub in
            let socket = try await TestSocket(port: hub.port)
            socket.send(frame: .binary(.init(bytes: [1, 2, 3])))
            let close = try await socket.closedByHub()
            #expect(close?.closeCode == .unacceptableData)
        }
    }
}

extension JSONValue {
    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    var arrayFirst: JSONValue? { arrayValue?.first }
}
