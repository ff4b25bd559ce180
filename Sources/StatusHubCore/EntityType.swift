/// The kinds of entity the hub tracks, with the status values seed 003 §3 allows for each.
public enum EntityType: String, CaseIterable, Sendable, Codable {
    case `operator`
    case machine
    case material
    case workOrder = "work_order"
    case allocation

    public static let allowedList = allCases.map(\.rawValue).joined(separator: ", ")

    /// `current_status` / `previous_status` values (seed 003 §3.1, §3.2, §3.4, §3.5); nil where the entity has none.
    public var statusValues: [String]? {
        switch self {
        case .operator: ["available", "busy", "break", "absent", "sick", "vacation", "offline"]
        case .machine: ["running", "idle", "maintenance", "breakdown", "offline"]
        case .workOrder: ["queued", "assigned", "in_progress", "paused", "completed", "cancelled"]
        case .material, .allocation: nil
        }
    }

    /// Latest-state cache key, as seed 003 §4.2 lays them out (allocations are ours: the seed keeps none).
    public func cacheKey(entityID: String) -> String {
        switch self {
        case .operator, .machine, .material: "resource:\(rawValue):\(entityID)"
        case .workOrder: "workorder:\(entityID)"
        case .allocation: "allocation:\(entityID)"
        }
    }

    /// Key prefixes a snapshot scans (`resource:operator:*`, …).
    public var cacheKeyPrefix: String { cacheKey(entityID: "") }
}

/// Allocation change kinds (seed 003 §3.5, `allocation_change_events.event_type`).
public enum AllocationChange {
    public static let values = ["created", "reassigned", "released", "completed", "paused", "resumed"]
}

/// Alert severities.
public enum AlertSeverity {
    public static let values = ["low", "medium", "high", "critical"]
}
