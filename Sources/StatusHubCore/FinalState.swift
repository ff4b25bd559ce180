/// A state that ends its entity's story, declared on the entity type in the catalog:
///
///     work_order:
///       ttl_seconds: 300
///       final: {current_status: [completed, cancelled]}
///
/// A completed work order or a released allocation gets no more news, so its silence says nothing about its source:
/// when a final state's TTL passes it leaves the cache quietly — no `status_stale`, no kept notice, off its counters
/// and indexes — where any other state goes stale. A supervisor's screen then loses a finished work order instead of
/// greying it as if the MES had gone quiet (and, after a reload, listing the day's finished orders as stale).
///
/// The engines decide at expiry from the state they hold (the memory engine under its lock; on Redis, the node whose
/// claim on the expired state wins, `StaleSweeper`), so every node agrees.
extension Catalog {
    /// Whether a state of `entityType` with `data` is its entity's last (`EntityType.Definition.final`).
    /// A boolean field ends it by `true` or `false` as written in the catalog (a CAPA task's `is_completed: [true]`).
    public func isFinal(entityType: EntityType, data: [String: JSONValue]) -> Bool {
        guard let final = entityType.definition.final else { return false }
        switch data[final.field] {
        case .string(let value)?: return final.values.contains(value)
        case .bool(let value)?: return final.values.contains(value ? "true" : "false")
        default: return false
        }
    }
}
