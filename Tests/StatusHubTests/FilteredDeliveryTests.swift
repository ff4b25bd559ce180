import Foundation
import StatusHubCore
import StatusHubServer
import Testing

@testable import StatusHubServer

@Suite("Server-side filters through a live hub")
struct FilteredDeliveryTests {
    static func alert(_ machine: String, severity: String) -> String {
        #"{"event_type":"alert_raised","entity_type":"machine","entity_id":"\#(machine)","line":"Line-2","timestamp":"2025-11-18T14:23:45.678Z","data":{"severity":"\#(severity)","message":"m"},"metadata":{"source":"mes","triggered_by":"sensor"}}"#
    }

    @Test(arguments: EngineKind.allCases)
    func liveEventsSnapshotAndReplayPassTheFilter(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            // Cached states for the snapshot: one breakdown, one running.
            _ = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-1", "breakdown"), SampleEvents.machineStatus("M-2", "running")])
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","id":"f","channels":["line:Line-2:*"],"snapshot":true,"filter":"data.current_status = breakdown or"}"#)
            let refusal = try await socket.next()
            #expect(refusal["op"] == .string("error") && refusal["code"] == .string("invalid_filter") && refusal["id"] == .string("f"))
            #expect(refusal["message"]?.stringValue?.contains("at byte") == true)

            socket.send(#"{"op":"subscribe","id":"f","channels":["line:Line-2:resource-status:*"],"snapshot":true,"filter":"data.current_status = breakdown"}"#)
            let subscribed = try await socket.next()
            #expect(subscribed["filter"] == .string(#"data.current_status = "breakdown""#))
            let snapshot = try await socket.next(op: "snapshot")
            let states = snapshot["events"]?.arrayValue?.compactMap { $0["entity_id"]?.stringValue } ?? []
            #expect(states == ["M-1"])

            // A second, unfiltered-by-status subscribe for critical alerts only.
            socket.send(#"{"op":"subscribe","id":"a","channels":["alerts"],"filter":"data.severity in (high, critical)"}"#)
            _ = try await socket.next(op: "subscribed")
            _ = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-3", "running"), Self.alert("M-3", severity: "low"),
                SampleEvents.machineStatus("M-4", "breakdown"), Self.alert("M-4", severity: "critical"),
            ])
            let first = try await socket.nextEvent()
            let second = try await socket.nextEvent()
            #expect(first["entity_id"] == .string("M-4") && first["event_type"] == .string("resource_status_changed"))
            #expect(second["entity_id"] == .string("M-4") && second["event_type"] == .string("alert_raised"))
            #expect(await socket.drain(for: .milliseconds(300)).isEmpty)
            let lastSeen = try #require(first["event_id"]?.stringValue)
            _ = await socket.close()

            // Resume: the replay passes the same filter.
            let again = try await TestSocket(port: hub.port)
            again.send(#"{"op":"subscribe","channels":["alerts"],"since":"0-0","filter":"data.severity = low"}"#)
            _ = try await again.next(op: "subscribed")
            let replayed = try await again.nextEvent()
            #expect(replayed["entity_id"] == .string("M-3") && replayed["event_type"] == .string("alert_raised"))
            #expect(await again.drain(for: .milliseconds(300)).isEmpty)
            _ = lastSeen
            _ = await again.close()
        }
    }

    /// 1,000 connections sharing 10 filters (written 20 ways, so interning is what makes them one): one event is
    /// decoded once and each distinct filter evaluated once.
    @Test func eachDistinctFilterIsEvaluatedOncePerEventHoweverManyShareIt() throws {
        let pattern = try ChannelPattern(parsing: "resource-status")
        let connections = (0..<1000).map { index in
            let table = SubscriptionFilters()
            let spelling = index % 20 < 10 ? "data.current_status != x\(index % 10)" : "data.current_status   !=  'x\(index % 10)'"
            table.set(try! EventFilter.parse(spelling), for: [pattern])
            return table
        }
        let event = StoredEvent(id: EventID(milliseconds: 1, sequence: 0), validated: SampleEvents.validated(SampleEvents.machineStatus("M-1")))
        var verdicts = FilterVerdicts(event: event)
        let admitted = connections.filter { $0.admit(&verdicts, patterns: [pattern]) }.count
        #expect(admitted == 1000)
        #expect(verdicts.evaluations == 10 && verdicts.decodedOnce)
        // Unfiltered connections never decode the event.
        var untouched = FilterVerdicts(event: event)
        #expect(SubscriptionFilters().admit(&untouched, patterns: [pattern]) && !untouched.decodedOnce)
    }

    @Test func aFilteredAndAnUnfilteredPatternOfOneConnectionDeliverOnce() async throws {
        try await withHub(engine: .memory) { hub in
            let socket = try await TestSocket(port: hub.port)
            socket.send(#"{"op":"subscribe","channels":["alerts"],"filter":"data.severity = critical"}"#)
            _ = try await socket.next(op: "subscribed")
            socket.send(#"{"op":"subscribe","channels":["machine:M-9"]}"#)
            _ = try await socket.next(op: "subscribed")
            // Low alert of M-9: the unfiltered pattern takes it; low alert of M-8: nobody.
            _ = try await HTTP.post(port: hub.port, events: [Self.alert("M-8", severity: "low"), Self.alert("M-9", severity: "low"), Self.alert("M-8", severity: "critical")])
            #expect(try await socket.nextEvent()["entity_id"] == .string("M-9"))
            #expect(try await socket.nextEvent()["entity_id"] == .string("M-8"))
            #expect(await socket.drain(for: .milliseconds(300)).isEmpty)
            // Re-subscribing `alerts` without a filter lifts it.
            socket.send(#"{"op":"subscribe","channels":["alerts"]}"#)
            _ = try await socket.next(op: "subscribed")
            _ = try await HTTP.post(port: hub.port, event: Self.alert("M-7", severity: "low"))
            #expect(try await socket.nextEvent()["entity_id"] == .string("M-7"))
            _ = await socket.close()
        }
    }
}
