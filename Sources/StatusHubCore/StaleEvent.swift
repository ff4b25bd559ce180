import Foundation

/// The event the hub publishes when an entity's cached state expires (no status for its TTL): subscribers of the
/// entity's channels learn that what they show is no longer being refreshed.
///
/// `{"event_type":"status_stale","entity_type":…,"entity_id":…,"line":…,
///   "data":{"last_state":{…the expired event…},"last_seen":"<its received_at>"},
///   "metadata":{"source":"statushub","triggered_by":"ttl_expiry"}, …}`
public enum StaleEvent {
    private struct Fields: Decodable {
        var entity_type: String
        var entity_id: String
        var line: String?
        var received_at: String?
        var tenant: String?
    }

    private struct Body: Encodable {
        struct Data: Encodable {
            var last_seen: String
            var last_state: JSONValue
        }
        var data: Data
        var entity_id: String
        var entity_type: String
        var event_type = EventType.statusStale.rawValue
        var line: String?
        var metadata: JSONValue = .object(["source": .string("statushub"), "triggered_by": .string("ttl_expiry")])
        var received_at: String
        var tenant: String?
        var timestamp: String
    }

    /// The stale event for `last` (the state that expired), on the same channels, or nil if `last` is not an
    /// event the hub wrote.
    public static func make(for last: StoredEvent, at now: Date) -> ValidatedEvent? {
        guard let fields = try? JSONDecoder().decode(Fields.self, from: Data(last.json)),
            let entityType = EntityType(rawValue: fields.entity_type),
            let lastState = try? JSONDecoder().decode(JSONValue.self, from: Data(last.json))
        else { return nil }
        let stamp = Timestamps.format(now)
        let body = Body(
            data: .init(last_seen: fields.received_at ?? stamp, last_state: lastState), entity_id: fields.entity_id,
            entity_type: entityType.rawValue, line: fields.line, received_at: stamp, tenant: fields.tenant, timestamp: stamp)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let encoded = try? encoder.encode(body) else { return nil }
        return ValidatedEvent(
            eventType: .statusStale, entityType: entityType, entityID: fields.entity_id, line: fields.line,
            channels: last.channels, carriesState: false, bodyAfterID: Array(encoded.dropFirst()), idempotencyKey: nil,
            tenant: Tenant.split(last.entityKey).tenant)
    }
}
