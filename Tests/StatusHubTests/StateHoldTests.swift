import Foundation
import StatusHubCore
import Testing

/// A state that holds its entity until a releasing type comes (`hold:` in the catalog, `StateHold`).
@Suite("Holds: a quarantined lot stays quarantined until it is released")
struct StateHoldTests {
    @Test func theShippedQuarantineHoldsALotUntilItsRelease() throws {
        let catalog = Catalog.standard
        func rule(_ event: String, _ entity: String) throws -> StateHold? {
            catalog.hold(of: try #require(catalog.eventType(named: event)), on: try #require(catalog.entityType(named: entity)))
        }
        #expect(try rule("material_lot_quarantined", "material_lot") == StateHold(sets: "material_lot_quarantined", passes: ["material_lot_quarantined"]))
        #expect(try rule("material_lot_released", "material_lot") == StateHold(sets: nil, passes: ["material_lot_quarantined"]))
        #expect(try rule("material_lot_inspected", "material_lot") == StateHold(sets: nil, passes: []))
        #expect(try rule("resource_status_changed", "machine") == nil, "no hold names machines: their events skip the check")
        let inspected = try rule("material_lot_inspected", "material_lot")
        #expect(inspected?.mayReplace(heldBy: nil) == true)
        #expect(inspected?.mayReplace(heldBy: "material_lot_quarantined") == false)
        #expect(catalog.markdown.contains("holds its entity until `material_lot_released`"))
    }

    @Test func aHoldIsCheckedWhenTheCatalogLoads() throws {
        let lift = "  lift: {category: quality, carries_state: true, entity_types: [lot]}\n"
        let cases: [(String, String, String)] = [
            ("  bad: {category: quality, entity_types: [lot], hold: {until: [lift]}}\n" + lift,
             "event_types.bad.hold", "only a state-carrying event type"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {}}\n" + lift,
             "event_types.bad.hold", "until is required"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: []}}\n" + lift,
             "event_types.bad.hold.until", "names no event type"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [bad]}}\n" + lift,
             "event_types.bad.hold.until[0]", "is this type itself"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [lift, lift]}}\n" + lift,
             "event_types.bad.hold.until[1]", "lists 'lift' twice"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [lifts]}}\n" + lift,
             "event_types.bad.hold.until[0]", "unknown event type 'lifts'"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [news]}}\n" +
             "  news: {category: quality, entity_types: [lot]}\n",
             "event_types.bad.hold.until[0]", "'news' carries no state"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [other]}}\n" +
             "  other: {category: quality, carries_state: true, entity_types: [machine]}\n",
             "event_types.bad.hold.until[0]", "names none of the entity types 'bad' holds (lot)"),
            ("  bad: {category: quality, carries_state: true, entity_types: [lot], hold: {until: [lift], for: ever}}\n" + lift,
             "event_types.bad.hold.for", "unknown key 'for'"),
        ]
        for (events, path, reason) in cases { CatalogTests.expectRefused(events, at: path, because: reason) }
        // Declared before the type that lifts it, in any order; served as written.
        let catalog = try CatalogTests.catalog("""
              hold: {category: quality, carries_state: true, entity_types: [lot, machine], hold: {until: [lift]}}
              lift: {category: quality, carries_state: true, entity_types: [lot]}
              other: {category: quality, carries_state: true, entity_types: [lot]}
            """)
        let hold = try #require(catalog.eventType(named: "hold"))
        let lot = try #require(catalog.entityType(named: "lot"))
        #expect(catalog.hold(of: try #require(catalog.eventType(named: "other")), on: lot) == StateHold(sets: nil, passes: []))
        #expect(catalog.hold(of: hold, on: try #require(catalog.entityType(named: "machine"))) == StateHold(sets: "hold", passes: ["hold"]))
        guard case .array(let types)? = catalog.json(ttlSeconds: { _ in 0 })["event_types"] else {
            Issue.record("GET /v1/catalog's shape has no event_types list")
            return
        }
        #expect(types.first { $0["name"] == .string("hold") }?["hold"] == .object(["until": .array([.string("lift")])]))
    }

    /// Over HTTP and WebSocket, on both engines: the publisher's answer, the live event, `/v1/state` and a snapshot.
    @Test(arguments: EngineKind.allCases)
    func anInspectionOfAQuarantinedLotIsNewsUntilItsRelease(engine: EngineKind) async throws {
        try await withHub(engine: engine) { hub in
            func lot(_ type: String, _ data: String, secondsAgo: Double, extra: String = "") -> String {
                #"{"event_type":"\#(type)","entity_type":"material_lot","entity_id":"LOT-2025-001","# +
                    #""timestamp":"\#(Timestamps.format(Date().addingTimeInterval(-secondsAgo)))","data":\#(data),"metadata":{"source":"qms","triggered_by":"user"}\#(extra)}"#
            }
            let socket = try await TestSocket(port: hub.port)
            _ = try await socket.subscribe(["material_lot:*"])
            let quarantined = try await HTTP.post(port: hub.port, event: lot(
                "material_lot_quarantined", #"{"reason":"High severity issues linked to this lot","quantity_quarantined":2340}"#, secondsAgo: 30))
            #expect(quarantined.status == 202, "\(quarantined.text)")
            let inspected = try await HTTP.post(port: hub.port, event: lot("material_lot_inspected", #"{"inspection_passed":true}"#, secondsAgo: 20))
            #expect(inspected.status == 202, "\(inspected.text)")
            #expect(inspected.json["accepted"]?.arrayValue?.first?["held"] == .bool(true), "\(inspected.text)")
            #expect(try await socket.nextEvent()["held"] == nil)
            let news = try await socket.nextEvent()
            #expect(news["event_type"] == .string("material_lot_inspected") && news["held"] == .bool(true))
            // A filter may pick held events out, or leave them out.
            #expect(try EventFilter.parse("held = true").admits(.object(news)))
            #expect(!(try EventFilter.parse("held missing").admits(.object(news))))
            let state = try await HTTP.get(port: hub.port, "/v1/state/material_lot/LOT-2025-001")
            #expect(state.json["event_type"] == .string("material_lot_quarantined"), "\(state.text)")
            let snapshot = try await TestSocket(port: hub.port)
            #expect(try await snapshot.subscribe(["material_lot:LOT-2025-001"], snapshot: true).map { $0["event_type"] }
                == [.string("material_lot_quarantined")])
            _ = await snapshot.close()

            let refused = try await HTTP.post(port: hub.port, event: lot("material_lot_inspected", "{}", secondsAgo: 5, extra: #","held":false"#))
            #expect(refused.status == 400 && refused.text.contains(#""field":"held""#) && refused.text.contains("assigned by the hub"), "\(refused.text)")

            let released = try await HTTP.post(port: hub.port, event: lot("material_lot_released", #"{"disposition":"released_to_use"}"#, secondsAgo: 10))
            #expect(released.json["accepted"]?.arrayValue?.first?["held"] == nil, "\(released.text)")
            let after = try await HTTP.post(port: hub.port, event: lot("material_lot_inspected", #"{"inspection_passed":true}"#, secondsAgo: 1))
            #expect(after.json["accepted"]?.arrayValue?.first?["held"] == nil, "\(after.text)")
            #expect(try await HTTP.get(port: hub.port, "/v1/state/material_lot/LOT-2025-001").json["event_type"]
                == .string("material_lot_inspected"))
            _ = await socket.close()
        }
    }
}
