// The validator as it was before the event catalog (commit 3ff8aa4): seed 003's six event types compiled into
// Swift enums and `DataRules`; its envelope checks follow `EventValidator`'s (dot-segment ids, field-by-field
// timestamps, 1f13498/4d8b3aa), so the two differ only in what the catalog replaced. It also does the per-event
// work issue 10 §3–§4 added beside the rules (the source rank, the tally entries, the late mark's offset), through the
// same functions, so the comparison stays one of rules. Kept only as the baseline of `statushub-bench validate`,
// which times it against the catalog-driven `EventValidator` on the same events and checks that both answer the same.

import Foundation
import StatusHubCore


/// Turns one decoded JSON event into a `ValidatedEvent`, or into every reason it cannot be one.
///
/// Validation reports all problems of an event at once (not just the first), each naming its field, so a
/// publisher fixes a payload in one round.
struct CompiledValidator: Sendable {
    /// Fields a publisher may send. `event_id` and `received_at` are the hub's to assign.
    static let envelopeFields: Set<String> = [
        "event_type", "entity_type", "entity_id", "timestamp", "data", "metadata", "line", "idempotency_key",
    ]

    typealias Validation = EventValidator.Validation

    init() {}

    /// `tenant` is the publisher's (from its API key), never the event's: an event cannot name its tenant.
    func validate(_ value: JSONValue, receivedAt: Date, tenant: String = Tenant.defaultName) -> Validation {
        guard case .object(let event) = value else {
            return .invalid([FieldError(field: "event", reason: "must be a JSON object, got \(value.typeName)")])
        }
        var errors: [FieldError] = []
        for key in event.keys.sorted() where !Self.envelopeFields.contains(key) {
            if key == "event_id" || key == "received_at" {
                errors.append(FieldError(field: key, reason: "is assigned by the hub; do not send it"))
            } else {
                // Found by fuzzing: an empty or huge key must still yield a field a publisher can read.
                let name = key.isEmpty || key.utf8.count > 64 ? "event" : key
                errors.append(FieldError(
                    field: name, reason: "unknown field '\(key.prefix(64))'; allowed: \(Self.envelopeFields.sorted().joined(separator: ", "))"))
            }
        }

        let eventType: CompiledEventType? = enumField(
            event, "event_type", { CompiledEventType(rawValue: $0).flatMap { CompiledEventType.publishable.contains($0) ? $0 : nil } },
            allowed: CompiledEventType.allowedList, &errors)
        let entityType: CompiledEntityType? = enumField(event, "entity_type", CompiledEntityType.init(rawValue:), allowed: CompiledEntityType.allowedList, &errors)
        let entityID = segmentField(event, "entity_id", required: true, &errors)
        let line = segmentField(event, "line", required: false, &errors)
        let timestamp = timestampField(event, &errors)
        let metadata = metadataField(event, &errors)
        var idempotencyKey: String?
        switch event["idempotency_key"] {
        case nil: break
        case .string(let key)? where Self.isValidIdempotencyKey(key): idempotencyKey = key
        default: errors.append(FieldError(field: "idempotency_key", reason: Self.idempotencyKeyRule))
        }

        var data: [String: JSONValue]?
        switch event["data"] {
        case nil: errors.append(FieldError(field: "data", reason: "is required"))
        case .object(let members)?: data = members
        case let other?: errors.append(FieldError(field: "data", reason: "must be an object, got \(other.typeName)"))
        }

        if let eventType, let entityType {
            if !eventType.entityTypes.contains(entityType) {
                errors.append(FieldError(
                    field: "entity_type",
                    reason: "'\(entityType.rawValue)' cannot carry '\(eventType.rawValue)'; allowed: \(eventType.entityTypes.map(\.rawValue).joined(separator: ", "))"))
            } else if let data {
                errors += CompiledDataRules.check(data, eventType: eventType, entityType: entityType)
            }
        }

        guard errors.isEmpty, let eventType, let entityType, let entityID, let timestamp, let data, let metadata else {
            return .invalid(errors)
        }
        // The event as the hub sends it on, minus `event_id` (see `StoredEvent.assembleJSON`), keys sorted so the
        // bytes are the same for the same event on every node. `idempotency_key` and `line` are left out when
        // absent, `tenant` for the default tenant (so its events are what they were before tenants).
        var members: [(key: String, value: JSONValue)] = [
            ("data", .object(data)), ("entity_id", .string(entityID)), ("entity_type", .string(entityType.rawValue)),
            ("event_type", .string(eventType.rawValue)),
        ]
        if let idempotencyKey { members.append(("idempotency_key", .string(idempotencyKey))) }
        // `late` (the engine's mark) would sort here; everything after it is the tail, written apart as the catalog
        // validator does so the mark's place is known.
        var tail: [(key: String, value: JSONValue)] = []
        if let line { tail.append(("line", .string(line))) }
        tail.append(("metadata", .object(metadata)))
        tail.append(("received_at", .string(Timestamps.format(receivedAt))))
        if tenant != Tenant.defaultName { tail.append(("tenant", .string(tenant))) }
        tail.append(("timestamp", .string(timestamp.text)))
        var head: [UInt8] = []
        head.reserveCapacity(512)
        JSONValue.write(members: members, into: &head)
        var rest: [UInt8] = []
        JSONValue.write(members: tail, into: &rest)
        var body: [UInt8] = []
        body.reserveCapacity(head.count + rest.count)
        body.append(contentsOf: head[1..<head.count - 1])
        body.append(UInt8(ascii: ","))
        body.append(contentsOf: rest[1...])
        let carriesState = eventType.catalogType.carriesState
        let lateMarkOffset = carriesState ? head.count - 1 : 0
        return .valid(ValidatedEvent(
            eventType: eventType.catalogType, entityType: entityType.catalogType, entityID: entityID, line: line,
            bodyAfterID: body, idempotencyKey: idempotencyKey, tenant: tenant,
            sourceRank: SourceOrder.rank(timestamp.moment, sequence: nil), lateMarkOffset: lateMarkOffset,
            tallies: carriesState
                ? TallyUpdate.make(
                    entityType: entityType.catalogType, entityID: entityID, line: line, data: data, tenant: tenant, catalog: .standard)
                : nil))
    }

    static let idempotencyKeyRule = EventValidator.idempotencyKeyRule

    static func isValidIdempotencyKey(_ key: String) -> Bool { EventValidator.isValidIdempotencyKey(key) }

    private func enumField<T>(
        _ event: [String: JSONValue], _ field: String, _ make: (String) -> T?, allowed: String, _ errors: inout [FieldError]
    ) -> T? {
        switch event[field] {
        case nil:
            errors.append(FieldError(field: field, reason: "is required; allowed: \(allowed)"))
        case .string(let text)?:
            if let value = make(text) { return value }
            errors.append(FieldError(field: field, reason: "unknown value '\(text)'; allowed: \(allowed)"))
        case let other?:
            errors.append(FieldError(field: field, reason: "must be a string, got \(other.typeName); allowed: \(allowed)"))
        }
        return nil
    }

    private func segmentField(_ event: [String: JSONValue], _ field: String, required: Bool, _ errors: inout [FieldError]) -> String? {
        switch event[field] {
        case nil:
            if required { errors.append(FieldError(field: field, reason: "is required")) }
        case .string(let text)?:
            if text == "." || text == ".." {
                errors.append(FieldError(field: field, reason: "'\(text)' is a dot segment, which URLs resolve away, so it could not be read back by path"))
            } else if ChannelName.isValidSegment(text) {
                return text
            } else {
                errors.append(FieldError(field: field, reason: "'\(text.prefix(64))' must be \(ChannelName.segmentRule)"))
            }
        case let other?:
            errors.append(FieldError(field: field, reason: "must be a string, got \(other.typeName)"))
        }
        return nil
    }

    private func timestampField(_ event: [String: JSONValue], _ errors: inout [FieldError]) -> (text: String, moment: Timestamps.Moment)? {
        switch event["timestamp"] {
        case nil:
            errors.append(FieldError(field: "timestamp", reason: "is required (ISO-8601, e.g. 2025-11-18T14:23:45.678Z)"))
        case .string(let text)?:
            switch Timestamps.read(text) {
            case .failure(let problem): errors.append(FieldError(field: "timestamp", reason: "'\(text.prefix(64))' \(problem.reason)"))
            case .success(let moment): return (text, moment)
            }
        case let other?:
            errors.append(FieldError(field: "timestamp", reason: "must be an ISO-8601 string, got \(other.typeName)"))
        }
        return nil
    }

    private func metadataField(_ event: [String: JSONValue], _ errors: inout [FieldError]) -> [String: JSONValue]? {
        guard let value = event["metadata"] else {
            errors.append(FieldError(field: "metadata", reason: "is required: an object with 'source' and 'triggered_by'"))
            return nil
        }
        guard case .object(let metadata) = value else {
            errors.append(FieldError(field: "metadata", reason: "must be an object, got \(value.typeName)"))
            return nil
        }
        var valid = true
        for field in ["source", "triggered_by"] {
            switch metadata[field] {
            case .string(let text)? where !text.isEmpty && text.utf8.count <= 256:
                continue
            case .string?:
                errors.append(FieldError(field: "metadata.\(field)", reason: "must be 1-256 bytes"))
            case nil:
                errors.append(FieldError(field: "metadata.\(field)", reason: "is required"))
            case let other?:
                errors.append(FieldError(field: "metadata.\(field)", reason: "must be a string, got \(other.typeName)"))
            }
            valid = false
        }
        return valid ? metadata : nil
    }
}


/// The rules each event type places on its `data` (seed 003 §3 enums, §9.1 validation rules).
enum CompiledDataRules {
    static func check(_ data: [String: JSONValue], eventType: CompiledEventType, entityType: CompiledEntityType) -> [FieldError] {
        var errors: [FieldError] = []
        switch eventType {
        case .resourceStatusChanged, .workOrderProgress:
            let allowed = entityType.statusValues ?? []
            requireEnum(data, "current_status", allowed, &errors)
            optionalEnum(data, "previous_status", allowed, &errors)
            if entityType == .operator { optionalRange(data, "efficiency_rating", 0...5, &errors) }
            if entityType == .machine { optionalRange(data, "oee_percentage", 0...100, &errors) }
            if eventType == .workOrderProgress {
                let produced = optionalRange(data, "quantity_produced", 0...Double.greatestFiniteMagnitude, &errors)
                let ordered = optionalRange(data, "quantity_ordered", 0...Double.greatestFiniteMagnitude, &errors)
                if let produced, let ordered, produced > ordered {
                    errors.append(FieldError(field: "data.quantity_produced", reason: "cannot exceed data.quantity_ordered (\(ordered))"))
                }
            }
        case .materialInventoryChanged:
            if data["available_quantity"] == nil {
                errors.append(FieldError(field: "data.available_quantity", reason: "is required"))
            }
            for field in ["available_quantity", "on_hand_quantity", "allocated_quantity"] {
                optionalRange(data, field, 0...Double.greatestFiniteMagnitude, &errors, rule: "cannot be negative")
            }
        case .allocationChanged:
            requireEnum(data, "change_type", CompiledAllocationChange.values, &errors)
            let hasOperator = data["operator_id"]?.stringValue.map { !$0.isEmpty } ?? false
            let hasMachine = data["machine_id"]?.stringValue.map { !$0.isEmpty } ?? false
            if !hasOperator && !hasMachine {
                errors.append(FieldError(field: "data.operator_id", reason: "an allocation names data.operator_id or data.machine_id (a string), or both"))
            }
        case .alertRaised:
            requireEnum(data, "severity", CompiledAlertSeverity.values, &errors)
            switch data["message"] {
            case .string(let text)? where !text.isEmpty: break
            case nil: errors.append(FieldError(field: "data.message", reason: "is required"))
            default: errors.append(FieldError(field: "data.message", reason: "must be a non-empty string"))
            }
        case .idleTimePredicted:
            if data["predicted_idle_minutes"] == nil {
                errors.append(FieldError(field: "data.predicted_idle_minutes", reason: "is required"))
            }
            optionalRange(data, "predicted_idle_minutes", 0...Double.greatestFiniteMagnitude, &errors, rule: "cannot be negative")
            optionalRange(data, "confidence", 0...1, &errors)
        case .statusStale:
            errors.append(FieldError(field: "event_type", reason: "status_stale is generated by the hub"))
        }
        return errors
    }

    private static func requireEnum(_ data: [String: JSONValue], _ field: String, _ allowed: [String], _ errors: inout [FieldError]) {
        if data[field] == nil {
            errors.append(FieldError(field: "data.\(field)", reason: "is required; allowed: \(allowed.joined(separator: ", "))"))
        } else {
            optionalEnum(data, field, allowed, &errors)
        }
    }

    private static func optionalEnum(_ data: [String: JSONValue], _ field: String, _ allowed: [String], _ errors: inout [FieldError]) {
        guard let value = data[field] else { return }
        guard case .string(let text) = value else {
            errors.append(FieldError(field: "data.\(field)", reason: "must be a string, got \(value.typeName); allowed: \(allowed.joined(separator: ", "))"))
            return
        }
        if !allowed.contains(text) {
            errors.append(FieldError(field: "data.\(field)", reason: "unknown value '\(text.prefix(64))'; allowed: \(allowed.joined(separator: ", "))"))
        }
    }

    @discardableResult
    private static func optionalRange(
        _ data: [String: JSONValue], _ field: String, _ range: ClosedRange<Double>, _ errors: inout [FieldError],
        rule: String? = nil
    ) -> Double? {
        guard let value = data[field] else { return nil }
        guard case .number(let number) = value, number.isFinite else {
            errors.append(FieldError(field: "data.\(field)", reason: "must be a number, got \(value.typeName)"))
            return nil
        }
        guard range.contains(number) else {
            let reason = rule ?? "must be between \(format(range.lowerBound)) and \(format(range.upperBound))"
            errors.append(FieldError(field: "data.\(field)", reason: "\(reason) (got \(format(number)))"))
            return nil
        }
        return number
    }

    private static func format(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }
}

/// The seed's WebSocket channels (003 §4.4). Every event belongs to exactly one.
enum CompiledEventCategory: String, CaseIterable, Sendable {
    case resourceStatus = "resource-status"
    case allocationChanges = "allocation-changes"
    case alerts
    case workOrderProgress = "work-order-progress"
    case idleTimePredictions = "idle-time-predictions"

    /// Categories that carry an entity's state: their events are written through to the latest-state cache.
    /// Alerts and predictions are about an entity, not its state, so they never overwrite it.
    var carriesState: Bool {
        switch self {
        case .resourceStatus, .allocationChanges, .workOrderProgress: true
        case .alerts, .idleTimePredictions: false
        }
    }
}

/// Event types the ingest gateway accepts, the category each maps to, and the entity types each may name.
enum CompiledEventType: String, CaseIterable, Sendable {
    case resourceStatusChanged = "resource_status_changed"
    case materialInventoryChanged = "material_inventory_changed"
    case allocationChanged = "allocation_changed"
    case workOrderProgress = "work_order_progress"
    case alertRaised = "alert_raised"
    case idleTimePredicted = "idle_time_predicted"
    /// Generated by the hub when an entity's cached state expires; publishers cannot send it.
    case statusStale = "status_stale"

    /// The types a publisher may send.
    static let publishable = allCases.filter { $0 != .statusStale }
    static let allowedList = publishable.map(\.rawValue).joined(separator: ", ")

    /// Whether events of this type replace their entity's cached state.
    var carriesState: Bool { self != .statusStale && category.carriesState }

    var category: CompiledEventCategory {
        switch self {
        case .resourceStatusChanged, .materialInventoryChanged: .resourceStatus
        case .allocationChanged: .allocationChanges
        case .workOrderProgress: .workOrderProgress
        case .alertRaised: .alerts
        case .idleTimePredicted: .idleTimePredictions
        // Nominal only: a stale event travels on the channels of the state that expired (see `StaleEvent`).
        case .statusStale: .resourceStatus
        }
    }

    var entityTypes: [CompiledEntityType] {
        switch self {
        case .resourceStatusChanged: [.operator, .machine]
        case .materialInventoryChanged: [.material]
        case .allocationChanged: [.allocation]
        case .workOrderProgress: [.workOrder]
        case .alertRaised: CompiledEntityType.allCases
        case .idleTimePredicted: [.operator, .machine]
        case .statusStale: CompiledEntityType.allCases
        }
    }
}

/// The kinds of entity the hub tracks, with the status values seed 003 §3 allows for each.
enum CompiledEntityType: String, CaseIterable, Sendable {
    case `operator`
    case machine
    case material
    case workOrder = "work_order"
    case allocation

    static let allowedList = allCases.map(\.rawValue).joined(separator: ", ")

    /// `current_status` / `previous_status` values (seed 003 §3.1, §3.2, §3.4, §3.5); nil where the entity has none.
    var statusValues: [String]? {
        switch self {
        case .operator: ["available", "busy", "break", "absent", "sick", "vacation", "offline"]
        case .machine: ["running", "idle", "maintenance", "breakdown", "offline"]
        case .workOrder: ["queued", "assigned", "in_progress", "paused", "completed", "cancelled"]
        case .material, .allocation: nil
        }
    }

    /// Latest-state cache key, as seed 003 §4.2 lays them out (allocations are ours: the seed keeps none).
    func cacheKey(entityID: String) -> String {
        switch self {
        case .operator, .machine, .material: "resource:\(rawValue):\(entityID)"
        case .workOrder: "workorder:\(entityID)"
        case .allocation: "allocation:\(entityID)"
        }
    }

    /// Key prefixes a snapshot scans (`resource:operator:*`, …).
    var cacheKeyPrefix: String { cacheKey(entityID: "") }
}

/// Allocation change kinds (seed 003 §3.5, `allocation_change_events.event_type`).
enum CompiledAllocationChange {
    static let values = ["created", "reassigned", "released", "completed", "paused", "resumed"]
}

/// Alert severities.
enum CompiledAlertSeverity {
    static let values = ["low", "medium", "high", "critical"]
}

extension CompiledEventType {
    /// The catalog's type of the same name: what the validated event carries either way.
    var catalogType: EventType {
        switch self {
        case .resourceStatusChanged: .resourceStatusChanged
        case .materialInventoryChanged: .materialInventoryChanged
        case .allocationChanged: .allocationChanged
        case .workOrderProgress: .workOrderProgress
        case .alertRaised: .alertRaised
        case .idleTimePredicted: .idleTimePredicted
        case .statusStale: .statusStale
        }
    }
}

extension CompiledEntityType {
    var catalogType: EntityType {
        switch self {
        case .operator: .operator
        case .machine: .machine
        case .material: .material
        case .workOrder: .workOrder
        case .allocation: .allocation
        }
    }
}
