/// The seed's WebSocket channels (003 §4.4). Every event belongs to exactly one.
public enum EventCategory: String, CaseIterable, Sendable {
    case resourceStatus = "resource-status"
    case allocationChanges = "allocation-changes"
    case alerts
    case workOrderProgress = "work-order-progress"
    case idleTimePredictions = "idle-time-predictions"

    /// Categories that carry an entity's state: their events are written through to the latest-state cache.
    /// Alerts and predictions are about an entity, not its state, so they never overwrite it.
    public var carriesState: Bool {
        switch self {
        case .resourceStatus, .allocationChanges, .workOrderProgress: true
        case .alerts, .idleTimePredictions: false
        }
    }
}

/// Event types the ingest gateway accepts, the category each maps to, and the entity types each may name.
public enum EventType: String, CaseIterable, Sendable {
    case resourceStatusChanged = "resource_status_changed"
    case materialInventoryChanged = "material_inventory_changed"
    case allocationChanged = "allocation_changed"
    case workOrderProgress = "work_order_progress"
    case alertRaised = "alert_raised"
    case idleTimePredicted = "idle_time_predicted"

    public static let allowedList = allCases.map(\.rawValue).joined(separator: ", ")

    public var category: EventCategory {
        switch self {
        case .resourceStatusChanged, .materialInventoryChanged: .resourceStatus
        case .allocationChanged: .allocationChanges
        case .workOrderProgress: .workOrderProgress
        case .alertRaised: .alerts
        case .idleTimePredicted: .idleTimePredictions
        }
    }

    public var entityTypes: [EntityType] {
        switch self {
        case .resourceStatusChanged: [.operator, .machine]
        case .materialInventoryChanged: [.material]
        case .allocationChanged: [.allocation]
        case .workOrderProgress: [.workOrder]
        case .alertRaised: EntityType.allCases
        case .idleTimePredicted: [.operator, .machine]
        }
    }
}
