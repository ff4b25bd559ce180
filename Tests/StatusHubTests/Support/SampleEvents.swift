import Foundation
import StatusHubCore

/// Seed-shaped events for tests, as JSON text and as validated events.
enum SampleEvents {
    /// Idle by default: a running machine on a line also moves the line's live counter, which publishes an event
    /// of its own (`TallyTests`); tests that count events pass "running" only where they mean it.
    static func machineStatus(
        _ id: String, _ status: String = "idle", line: String? = "Line-2", extra: String = ""
    ) -> String {
        let linePart = line.map { #","line":"\#($0)""# } ?? ""
        return #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"\#(id)","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"\#(status)"\#(extra)},"metadata":{"source":"mes","triggered_by":"system"}\#(linePart)}"#
    }

    static func operatorStatus(_ id: String, _ status: String = "available", line: String? = nil) -> String {
        let linePart = line.map { #","line":"\#($0)""# } ?? ""
        return #"{"event_type":"resource_status_changed","entity_type":"operator","entity_id":"\#(id)","timestamp":"2025-11-18T14:23:45.678Z","data":{"previous_status":"busy","current_status":"\#(status)","location":"Line 2, Zone A"},"metadata":{"source":"time_and_attendance","triggered_by":"system"}\#(linePart)}"#
    }

    static func alert(_ machine: String, line: String? = "Line-2", message: String = "spindle overheating") -> String {
        let linePart = line.map { #","line":"\#($0)""# } ?? ""
        return #"{"event_type":"alert_raised","entity_type":"machine","entity_id":"\#(machine)","timestamp":"2025-11-18T14:23:45.678Z","data":{"severity":"high","message":"\#(message)"},"metadata":{"source":"mes","triggered_by":"sensor"}\#(linePart)}"#
    }

    /// - Parameter catalog: the engine's: an event validated with another catalog may carry tally updates the
    ///   engine's does not know (on a Redis Cluster their keys are outside the partition's slot).
    static func validated(_ json: String, catalog: Catalog = .standard) -> ValidatedEvent {
        let value = try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        switch EventValidator(catalog: catalog).validate(value, receivedAt: Date(timeIntervalSince1970: 1_763_475_825)) {
        case .valid(let event): return event
        case .invalid(let errors): fatalError("sample event invalid: \(errors)")
        }
    }
}
