import Foundation

extension StoredEvent {
    private struct RoutingFields: Decodable {
        var event_id: String
        var event_type: String
        var entity_type: String
        var entity_id: String
        var line: String?
        var tenant: String?
    }

    /// A kept `status_stale` notice travels on its expired state's channels, of that state's category.
    private struct StaleRouting: Decodable {
        struct Data: Decodable {
            struct LastState: Decodable { var event_type: String }
            var last_state: LastState
        }
        var data: Data
    }

    /// Rebuilds routing from an event's own JSON, for the places that hold only the JSON (the latest-state cache
    /// a snapshot reads). The live path never needs this: it carries a `RoutingHeader`.
    public init?(storedJSON json: [UInt8], catalog: Catalog = .standard) {
        guard let fields = try? JSONDecoder().decode(RoutingFields.self, from: Data(json)),
            let id = EventID(fields.event_id),
            let eventType = catalog.eventType(named: fields.event_type),
            let entityType = catalog.entityType(named: fields.entity_type)
        else { return nil }
        let prefix = Tenant.prefix(fields.tenant ?? Tenant.defaultName)
        var category = eventType.category
        if fields.event_type == EventType.statusStaleName {
            guard let stale = try? JSONDecoder().decode(StaleRouting.self, from: Data(json)),
                let expired = catalog.eventType(named: stale.data.last_state.event_type)
            else { return nil }
            category = expired.category
        }
        self.init(
            id: id,
            entityKey: prefix + entityType.cacheKey(entityID: fields.entity_id),
            channels: ChannelName.channels(
                category: category, entityType: entityType, entityID: fields.entity_id, line: fields.line
            ).map { prefix + $0 },
            json: json, carriesState: eventType.carriesState)
    }

    /// Whether any of the event's channels matches any of `patterns`.
    public func matches(any patterns: [ChannelPattern]) -> Bool {
        channels.contains { channel in patterns.contains { $0.matches(channel) } }
    }
}
