import Foundation
import StatusHubCore
import Testing

/// `GET /v1/catalog` answers the catalog the hub loaded, with the TTLs it applies, under the read rules of
/// `/v1/state`: open while auth is optional, a valid subscriber token while it is required.
@Suite struct CatalogEndpointTests {
    @Test(arguments: EngineKind.allCases)
    func catalogIsServedAsLoaded(_ kind: EngineKind) async throws {
        try await withHub(engine: kind, configure: { $0.cacheTTL.machine = 42 }) { hub in
            let reply = try await HTTP.get(port: hub.port, "/v1/catalog")
            #expect(reply.status == 200, "\(reply.text)")
            let catalog = Catalog.standard
            let entities = reply.json["entity_types"]?.arrayValue ?? []
            #expect(entities.compactMap { $0["name"]?.stringValue } == catalog.entityTypes.map(\.rawValue))
            let machine = entities.first { $0["name"] == .string("machine") }
            #expect(machine?["cache_key"] == .string("resource:machine:{id}"))
            #expect(machine?["ttl_seconds"] == .number(42))
            #expect(machine?["status"] == .array(["running", "idle", "maintenance", "breakdown", "offline"].map(JSONValue.string)))
            #expect(entities.first { $0["name"] == .string("material") }?["ttl_seconds"] == .number(600))

            let events = reply.json["event_types"]?.arrayValue ?? []
            #expect(events.compactMap { $0["name"]?.stringValue } == catalog.eventTypes.map(\.rawValue))
            for type in catalog.eventTypes {
                let served = events.first { $0["name"] == .string(type.rawValue) }
                #expect(served?["category"] == .string(type.category.rawValue))
                #expect(served?["carries_state"] == .bool(type.carriesState))
                #expect(served?["publishable"] == .bool(type.isPublishable))
                #expect(served?["entity_types"] == .array(type.entityTypes.map { .string($0.rawValue) }))
                #expect(served?["line"] == .string(type.definition.lineRequired ? "required" : "optional"))
                #expect(served?["example_valid"] == nil)
            }
            let status = events.first { $0["name"] == .string("resource_status_changed") }
            #expect(status?["data"]?["current_status"]?["required"] == .bool(true))
            #expect(status?["for_entity"]?["machine"]?["oee_percentage"]?["max"] == .number(100))
            #expect(events.first { $0["name"] == .string("alert_raised") }?["entity_types"]?.arrayValue?.count == catalog.entityTypes.count)
            // Seed 002's CAPA flow, recorded as data for dashboards (not enforced on ingest).
            let capa = events.first { $0["name"] == .string("capa_status_changed") }
            #expect(capa?["transitions"]?["allowed"]?["IN_PROGRESS"] == .array(["PENDING_VERIFICATION", "CANCELLED"].map(JSONValue.string)))
            #expect(capa?["transitions"]?["initial"] == .string("OPEN"))
            #expect(reply.json["categories"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == catalog.categories.map(\.name.rawValue))
        }
    }

    @Test func catalogNeedsASubscriberTokenWhenAuthIsRequired() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try AccessControlTests.secured(issuer)) { hub in
            let anonymous = try await HTTP.get(port: hub.port, "/v1/catalog")
            #expect(anonymous.status == 401)
            #expect(anonymous.json["error"]?["field"] == .string("Authorization"))
            let forged = try await HTTP.request("GET", port: hub.port, "/v1/catalog", contentType: nil, headers: ["Authorization": "Bearer not.a.token"])
            #expect(forged.status == 401)
            // Any tenant and any patterns: the catalog holds no tenant data.
            let acme = try await issuer.hs256(tenant: "acme", patterns: ["operator:*"])
            let reader = try await HTTP.get(port: hub.port, "/v1/catalog?token=\(acme)")
            #expect(reader.status == 200)
            #expect(reader.json["event_types"]?.arrayValue?.isEmpty == false)
        }
    }
}
