import Foundation
import StatusHubCore
import Testing

/// States that end their entity's story (`final:` on an entity type, `FinalState`): the catalog's checks and what it
/// serves. The engines' quiet expiry is `EngineContractTests.aFinalStateLeavesQuietlyAtItsTTL`; the page's,
/// `tests/browser`'s finished work order.
@Suite("Final states: a finished work order leaves quietly")
struct FinalStateTests {
    static let progress = "  progress: {category: quality, carries_state: true, entity_types: [order], data: {state: {type: string}}}\n"

    static func entities(_ final: String) -> String {
        "  order: {cache_key: \"order:{id}\", ttl_seconds: 300, \(final)}\n"
    }

    @Test func theShippedWorkOrdersAndAllocationsEnd() throws {
        let catalog = Catalog.standard
        let order = try #require(catalog.entityType(named: "work_order"))
        #expect(catalog.isFinal(entityType: order, data: ["current_status": .string("completed")]))
        #expect(catalog.isFinal(entityType: order, data: ["current_status": .string("cancelled")]))
        #expect(!catalog.isFinal(entityType: order, data: ["current_status": .string("in_progress")]))
        #expect(!catalog.isFinal(entityType: order, data: [:]))
        let allocation = try #require(catalog.entityType(named: "allocation"))
        #expect(catalog.isFinal(entityType: allocation, data: ["change_type": .string("released")]))
        #expect(!catalog.isFinal(entityType: try #require(catalog.entityType(named: "machine")), data: ["current_status": .string("offline")]))
        // The records of seeds 000/001 and 002 whose status closes them.
        let closing: [(entity: String, field: String, value: String)] = [
            ("quality_issue", "current_status", "closed"), ("quarantine_disposition", "current_state", "CLOSED"),
            ("capa", "status", "CANCELLED"), ("step_rollback", "status", "COMPLETED"), ("step_override", "status", "EXPIRED"),
            // Seed 003's shifts and reservations, seed 002's reports and first pieces.
            ("operator_shift", "current_status", "completed"), ("operator_shift", "current_status", "absent"),
            ("material_reservation", "current_status", "consumed"), ("material_reservation", "current_status", "expired"),
            ("quality_report", "status", "PASS"), ("quality_report", "status", "FAIL"),
            ("fpi_record", "status", "PASSED"), ("fpi_record", "status", "WAIVED"),
        ]
        for (entity, field, value) in closing {
            #expect(catalog.isFinal(entityType: try #require(catalog.entityType(named: entity)), data: [field: .string(value)]), "\(entity)")
        }
        // Still open: a late operator's shift goes on; an active reservation, a pending report, and a failed first
        // piece (it blocks its step until someone acts) can go stale.
        let open: [(entity: String, field: String, value: String)] = [
            ("operator_shift", "current_status", "late"), ("material_reservation", "current_status", "active"),
            ("quality_report", "status", "PENDING"), ("fpi_record", "status", "FAILED"),
        ]
        for (entity, field, value) in open {
            #expect(!catalog.isFinal(entityType: try #require(catalog.entityType(named: entity)), data: [field: .string(value)]), "\(entity)")
        }
        // Seed 002's CAPA task closes by a boolean.
        let task = try #require(catalog.entityType(named: "capa_task"))
        #expect(catalog.isFinal(entityType: task, data: ["is_completed": .bool(true)]))
        #expect(!catalog.isFinal(entityType: task, data: ["is_completed": .bool(false)]))
        // The validator marks the state; a news event about the same order is never final.
        let event = SampleEvents.validated(
            #"{"event_type":"work_order_progress","entity_type":"work_order","entity_id":"WO-1","line":"Line-2","timestamp":"2025-11-18T14:00:00Z","data":{"current_status":"completed"},"metadata":{"source":"mes","triggered_by":"system"}}"#)
        #expect(event.isFinal)
    }

    @Test func aFinalRuleIsCheckedWhenTheCatalogLoads() throws {
        let cases: [(String, String, String)] = [
            ("final: {state: [done], other: [x]}", "entity_types.order.final", "names one data field"),
            ("final: [done]", "entity_types.order.final", "must be a mapping"),
            ("final: {state: []}", "entity_types.order.final.state", "at least one non-empty value"),
            ("final: {state: [done, done]}", "entity_types.order.final.state", "lists a value twice"),
            ("final: {colour: [done]}", "entity_types.order.final", "no state-carrying event type about 'order' declares data.colour"),
        ]
        for (final, path, reason) in cases {
            CatalogTests.expectRefused(Self.progress, entities: Self.entities(final), at: path, because: reason)
        }
        // A boolean field ends the story by true or false (YAML's true, read as "true"); another value never matches.
        let finished = "  progress: {category: quality, carries_state: true, entity_types: [order], data: {done: {type: boolean}}}\n"
        CatalogTests.expectRefused(
            finished, entities: Self.entities("final: {done: [yes please]}"), at: "entity_types.order.final", because: "data.done is a boolean")
        let boolean = try CatalogTests.catalog(finished, entities: Self.entities("final: {done: [true]}"))
        let order = try #require(boolean.entityType(named: "order"))
        #expect(boolean.isFinal(entityType: order, data: ["done": .bool(true)]))
        #expect(!boolean.isFinal(entityType: order, data: ["done": .bool(false)]))
        let catalog = try CatalogTests.catalog(Self.progress, entities: Self.entities("final: {state: [done, dropped]}"))
        guard case .array(let types)? = catalog.json(ttlSeconds: { _ in 0 })["entity_types"] else {
            Issue.record("GET /v1/catalog's shape has no entity_types list")
            return
        }
        #expect(types.first { $0["name"] == .string("order") }?["final"] == .object(["state": .array([.string("done"), .string("dropped")])]))
    }
}
