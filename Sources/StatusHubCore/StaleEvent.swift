import Foundation

/// The event the hub publishes when an entity's cached state expires (no status for its TTL): subscribers of the
/// entity's channels learn that what they show is no longer being refreshed.
///
/// `{"event_type":"status_stale","entity_type":…,"entity_id":…,"line":…,
///   "data":{"last_state":{…the expired event…},"last_seen":"<its received_at>"},
///   "metadata":{"source":"statushub","triggered_by":"ttl_expiry"}, …}`
public enum StaleEvent {
    /// The stale event for `last` (the state that expired), on the same channels, or nil if `last` is not an
    /// event the hub wrote. When `last` was final (`FinalState`) the event is marked `isFinal`: the engines do not
    /// store or send it, and the entity leaves quietly.
    public static func make(for last: StoredEvent, at now: Date, catalog: Catalog) -> ValidatedEvent? {
        guard let lastState = try? JSONValue.parse(last.json),
            let entityType = lastState["entity_type"]?.stringValue.flatMap(catalog.entityType(named:)),
            let staleType = catalog.eventType(named: EventType.statusStaleName),
            let entityID = lastState["entity_id"]?.stringValue
        else { return nil }
        let line = lastState["line"]?.stringValue
        let stamp = Timestamps.format(now)
        // Keys in sorted order, as `JSONValue.write` puts them everywhere else.
        var members: [(key: String, value: JSONValue)] = [
            ("data", .object(["last_seen": .string(lastState["received_at"]?.stringValue ?? stamp), "last_state": lastState])),
            ("entity_id", .string(entityID)), ("entity_type", .string(entityType.rawValue)),
            ("event_type", .string(EventType.statusStaleName)),
        ]
        if let line { members.append(("line", .string(line))) }
        members.append(("metadata", .object(["source": .string("statushub"), "triggered_by": .string("ttl_expiry")])))
        members.append(("received_at", .string(stamp)))
        if let tenant = lastState["tenant"]?.stringValue { members.append(("tenant", .string(tenant))) }
        members.append(("timestamp", .string(stamp)))
        var encoded: [UInt8] = []
        JSONValue.write(members: members, into: &encoded)
        return ValidatedEvent(
            eventType: staleType, entityType: entityType, entityID: entityID, line: line,
            channels: last.channels, carriesState: false, bodyAfterID: Array(encoded.dropFirst()), idempotencyKey: nil,
            tenant: Tenant.split(last.entityKey).tenant,
            isFinal: lastState["data"]?.objectValue.map { catalog.isFinal(entityType: entityType, data: $0) } ?? false)
    }
}
