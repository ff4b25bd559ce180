import Foundation
import StatusHubCore
import Testing

/// `status_since` (`StatusSince`, `CatalogBuilder.checkStatusSince`): each machine or operator state says since when
/// its entity has held its status, carried across heartbeats, on every engine.
@Suite("Status since: when an entity's status began")
struct StatusSinceTests {
    static func machine(_ id: String, _ status: String, previous: String? = nil, at time: String) -> ValidatedEvent {
        let previousPart = previous.map { #","previous_status":"\#($0)""# } ?? ""
        return SampleEvents.validated(
            #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"\#(id)","line":"Line-2","timestamp":"\#(time)","data":{"current_status":"\#(status)"\#(previousPart)},"metadata":{"source":"mes","triggered_by":"heartbeat"}}"#,
            catalog: catalogWithoutTallies)
    }

    /// The stamp an event carries, nil for none; also checks the JSON stays sorted around it.
    static func since(_ event: StoredEvent) -> String? {
        let json = event.jsonString
        guard let range = json.range(of: #""status_since":""#) else { return nil }
        let value = json[range.upperBound...].prefix { $0 != "\"" }
        #expect(json.contains(#""received_at":"#) && json.range(of: #""received_at":"#)!.lowerBound < range.lowerBound)
        #expect(range.upperBound < json.range(of: #""timestamp":"#)!.lowerBound, "keys stay sorted: \(json)")
        return String(value)
    }

    @Test(arguments: ContractEngine.allCases)
    func aHeartbeatCarriesTheStartOfItsStatus(_ kind: ContractEngine) async throws {
        try await withEngine(kind) { engine, sink in
            func at(_ minute: Int) -> String { "2025-11-18T14:\(String(format: "%02d", minute)):00Z" }
            let appended = try await engine.append([
                Self.machine("M-1", "running", at: at(0)),  // first sight: when it began is not known
                Self.machine("M-1", "running", previous: "running", at: at(1)),  // a heartbeat: still not known
                Self.machine("M-1", "breakdown", previous: "running", at: at(2)),  // a change: now
                Self.machine("M-1", "breakdown", at: at(3)),  // a heartbeat carries it
                Self.machine("M-1", "running", previous: "breakdown", at: at(1)),  // late: news, neither stamped nor held
                Self.machine("M-1", "breakdown", previous: "breakdown", at: at(4)),
                Self.machine("M-1", "idle", at: at(5)),  // a change the engine saw, though the event does not say so
                Self.machine("M-2", "idle", previous: "running", at: at(0)),  // first sight that says it changed
                Self.machine("M-3", "idle", previous: "idle", at: at(0)),  // first sight of a repeat: unknown
            ])
            #expect(appended.map(\.late) == [false, false, false, false, true, false, false, false, false])
            let events = try await sink.waitFor(count: 9)
            let byID = Dictionary(uniqueKeysWithValues: events.map { ($0.id, $0) })
            let stamps = appended.map { byID[$0.id].flatMap(Self.since) }
            #expect(stamps == [nil, nil, at(2), at(2), nil, at(2), at(5), at(0), nil])
            let latest = try #require(try await engine.latest(entityKey: "resource:machine:M-1"))
            #expect(Self.since(latest) == at(5))
            let snapshot = try await engine.snapshot(matching: [try ChannelPattern(parsing: "line:Line-2:*")]).events
            #expect(Set(snapshot.map { "\($0.entityKey) \(Self.since($0) ?? "-")" })
                == ["resource:machine:M-1 \(at(5))", "resource:machine:M-2 \(at(0))", "resource:machine:M-3 -"])
        }
    }

    /// After its state went stale the entity is forgotten: its next state's start is unknown again.
    @Test(arguments: [ContractEngine.memory, .redis])
    func staleForgetsWhenTheStatusBegan(_ kind: ContractEngine) async throws {
        try await withEngine(kind, configure: { $0.cacheTTL.machine = 1 }) { engine, sink in
            let first = try await engine.append([Self.machine("M-1", "running", previous: "idle", at: "2025-11-18T14:00:00Z")])[0]
            try await eventually("the state announced stale", timeout: .seconds(20)) {
                sink.received.contains { $0.jsonString.contains(#""event_type":"status_stale""#) }
            }
            #expect(Self.since(try #require(sink.received.first { $0.id == first.id })) == "2025-11-18T14:00:00Z")
            let next = try await engine.append([Self.machine("M-1", "running", at: "2025-11-18T14:10:00Z")])[0]
            try await eventually("the next state delivered") { sink.received.contains { $0.id == next.id } }
            #expect(Self.since(try #require(sink.received.first { $0.id == next.id })) == nil)
        }
    }

    /// What `status_since` may name is checked when the catalog loads.
    @Test func theCatalogDeclarationIsChecked() throws {
        let head = "  bad: {category: quality, entity_types: [machine], data: {state: {type: status}, note: {type: string}, count: {type: integer}}, "
        let cases: [(String, String, String)] = [
            ("status_since: {field: state}}", "event_types.bad.status_since", "only a state-carrying event type"),
            ("carries_state: true, status_since: {previous: state}}", "event_types.bad.status_since", "field is required"),
            ("carries_state: true, status_since: {field: colour}}", "event_types.bad.status_since.field", "'colour', which data does not declare"),
            ("carries_state: true, status_since: {field: count}}", "event_types.bad.status_since.field", "must be a status, enum or string field"),
            ("carries_state: true, status_since: {field: state, previous: gone}}", "event_types.bad.status_since.previous", "'gone', which data does not declare"),
            ("carries_state: true, status_since: {field: state, since: now}}", "event_types.bad.status_since.since", "unknown key 'since'"),
        ]
        for (declaration, path, reason) in cases { CatalogTests.expectRefused(head + declaration, at: path, because: reason) }
        #expect(CatalogTests.refusal(head + "carries_state: true, status_since: {field: note, previous: state}}") == nil)
        #expect(EventType.resourceStatusChanged.definition.statusSince?.field == "current_status")
    }

    /// A publisher cannot send the stamp: it is the hub's, like `late`.
    @Test func aPublisherCannotSendIt() async throws {
        try await withHub(engine: .memory) { hub in
            let event = #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-1","timestamp":"2025-11-18T14:00:00Z","status_since":"2025-11-18T13:00:00Z","data":{"current_status":"running"},"metadata":{"source":"mes","triggered_by":"system"}}"#
            let reply = try await HTTP.post(port: hub.port, event: event)
            #expect(reply.status == 400, "\(reply.text)")
            #expect(reply.text.contains(#""field":"status_since""#) && reply.text.contains("assigned by the hub"), "\(reply.text)")
        }
    }
}
