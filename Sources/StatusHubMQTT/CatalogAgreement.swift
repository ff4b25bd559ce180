import StatusHubCore

/// What a mapping's names must agree on in the catalog beyond existing: an event type the mapping's entity type can
/// carry, and statuses that entity type has. A mapping that breaks one would start and then see every message
/// refused; it stops the node at start instead, naming the key.
enum CatalogAgreement {
    /// Refuses `entityType` when the catalog does not let it carry `eventType`; `eventKey` names the setting of the event.
    static func check(_ entityType: EntityType, carries eventType: EventType, label: String, eventKey: String) throws {
        guard !eventType.entityTypes.contains(entityType) else { return }
        throw ConfigError(description: "config: \(label).entity_type '\(entityType)' cannot carry \(label).\(eventKey) '\(eventType)'; the catalog allows it for: \(eventType.entityTypes.map(\.rawValue).joined(separator: ", "))")
    }

    /// Refuses `status` when `entityType` declares its statuses and this is not one; `key` names the setting.
    static func check(status: String, of entityType: EntityType, key: String) throws {
        guard let statuses = entityType.statusValues, !statuses.contains(status) else { return }
        throw ConfigError(description: "config: \(key) '\(status)' is not a status of '\(entityType)'; its statuses: \(statuses.joined(separator: ", "))")
    }

    /// Refuses a value a mapping puts in `data.<field>` that the catalog would refuse on every message, or a field
    /// the event type does not declare (a misspelt `values` key would leave every payload value unrenamed).
    static func check(_ value: JSONValue, asField field: String, of eventType: EventType, for entityType: EntityType, key: String) throws {
        switch eventType.problem(withField: field, value: value, for: entityType) {
        case nil: return
        case .undeclared(let fields)?:
            throw ConfigError(description: "config: \(key): '\(field)' is not a data field of \(eventType) for \(entityType); its fields: \(fields.joined(separator: ", "))")
        case .invalid(let error)?:
            throw ConfigError(description: "config: \(key) '\(value.stringValue ?? "")' cannot stand as \(error.field): \(error.reason)")
        }
    }
}
