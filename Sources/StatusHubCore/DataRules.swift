/// The rules each event type places on its `data` (seed 003 §3 enums, §9.1 validation rules).
enum DataRules {
    static func check(_ data: [String: JSONValue], eventType: EventType, entityType: EntityType) -> [FieldError] {
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
            requireEnum(data, "change_type", AllocationChange.values, &errors)
            let hasOperator = data["operator_id"]?.stringValue.map { !$0.isEmpty } ?? false
            let hasMachine = data["machine_id"]?.stringValue.map { !$0.isEmpty } ?? false
            if !hasOperator && !hasMachine {
                errors.append(FieldError(field: "data.operator_id", reason: "an allocation names data.operator_id or data.machine_id (a string), or both"))
            }
        case .alertRaised:
            requireEnum(data, "severity", AlertSeverity.values, &errors)
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
