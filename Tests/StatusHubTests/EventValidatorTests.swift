import Foundation
import StatusHubCore
import Testing

@Suite("Event validation")
struct EventValidatorTests {
    func validate(_ json: String) -> EventValidator.Validation {
        let value = try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        return EventValidator().validate(value, receivedAt: Date(timeIntervalSince1970: 0))
    }

    func errors(_ json: String) -> [FieldError] {
        if case .invalid(let errors) = validate(json) { return errors }
        return []
    }

    @Test func seedEnvelopeIsAcceptedAndRouted() throws {
        guard case .valid(let event) = validate(SampleEvents.operatorStatus("O-156", line: "Line-2")) else {
            Issue.record("seed example refused")
            return
        }
        #expect(event.channels == ["resource-status", "operator:O-156", "line:Line-2:resource-status:operator:O-156"])
        #expect(event.entityKey == "resource:operator:O-156")
        #expect(event.carriesState)
        let json = StoredEvent(id: EventID(milliseconds: 5, sequence: 1), validated: event).jsonString
        #expect(json.hasPrefix(#"{"event_id":"5-1","data":{"#))
        #expect(json.contains(#""received_at":"1970-01-01T00:00:00.000Z""#))
        #expect(json.contains(#""location":"Line 2, Zone A""#))
        // The stored JSON is valid JSON and routes to the same channels.
        let reparsed = try #require(StoredEvent(storedJSON: Array(json.utf8)))
        #expect(reparsed.channels == event.channels)
    }

    @Test func alertsDoNotCarryState() {
        guard case .valid(let event) = validate(SampleEvents.alert("M-1")) else { Issue.record("refused"); return }
        #expect(event.channels.first == "alerts")
        #expect(!event.carriesState)
    }

    @Test func unknownStatusNamesFieldAndAllowedValues() {
        let found = errors(SampleEvents.machineStatus("M-1", "exploded"))
        #expect(found.count == 1)
        #expect(found.first?.field == "data.current_status")
        #expect(found.first?.reason.contains("running, idle, maintenance, breakdown, offline") == true)
    }

    @Test func unknownEntityTypeNamesAllowedValues() {
        let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: #""entity_type":"machine""#, with: #""entity_type":"robot""#)
        let found = errors(json)
        #expect(found.map(\.field) == ["entity_type"])
        #expect(found[0].reason.contains("operator, machine, material, work_order, allocation"))
    }

    @Test func missingAndMistypedFieldsAreAllReported() {
        let found = errors(#"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":42,"data":[],"metadata":{"source":"x"}}"#)
        let fields = Set(found.map(\.field))
        #expect(fields == ["entity_id", "timestamp", "data", "metadata.triggered_by"])
        #expect(found.first { $0.field == "entity_id" }?.reason == "must be a string, got number")
        #expect(found.first { $0.field == "data" }?.reason == "must be an object, got array")
    }

    @Test func hubAssignedAndUnknownFieldsAreRefused() {
        let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "{\"event_type\"", with: #"{"event_id":"x","colour":"red","event_type""#)
        let found = errors(json)
        #expect(found.map(\.field) == ["colour", "event_id"])
    }

    @Test func entityIDCannotSmuggleChannelSyntax() {
        let found = errors(SampleEvents.machineStatus("M:1*"))
        #expect(found.map(\.field) == ["entity_id"])
    }

    @Test func timestampMustBeISO8601() {
        let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: "yesterday")
        #expect(errors(json).map(\.field) == ["timestamp"])
        let whole = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: "2025-11-18T14:23:45Z")
        #expect(errors(whole).isEmpty)
    }

    /// States are ordered by source time, so one event stamped in the future (2052 for 2025) would outrank every real
    /// one of its entity until it went stale: a timestamp further ahead of the receiving clock than the bound is
    /// refused, naming `timestamp` and the setting; up to the bound (a device's clock a little fast), and any past
    /// time, is taken. Measured on the instant: a zone offset counts.
    @Test func timestampsFarAheadOfTheClockAreRefused() throws {
        let received = try #require(Timestamps.parse("2025-11-18T14:23:45.678Z"))
        let bounded = EventValidator(maxClockAheadSeconds: 300)
        func answer(_ timestamp: String, by validator: EventValidator = bounded) -> [FieldError] {
            let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: timestamp)
            let value = try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
            if case .invalid(let errors) = validator.validate(value, receivedAt: received) { return errors }
            return []
        }
        #expect(answer("2025-11-18T14:28:45.678Z").isEmpty)  // exactly 300 s ahead
        #expect(answer("2020-01-01T00:00:00Z").isEmpty)
        let justOver = answer("2025-11-18T14:28:45.679Z")
        #expect(justOver.map(\.field) == ["timestamp"])
        #expect(justOver.first?.reason.contains("ahead of this node's clock; at most 300 s (server.max_clock_ahead_seconds)") == true, "\(justOver)")
        let typo = answer("2052-11-18T14:23:45.678Z")
        #expect(typo.first?.reason.hasPrefix("'2052-11-18T14:23:45.678Z' is 9862 days ahead") == true, "\(typo)")
        // 16:23 at +02:00 is 14:23 UTC: not ahead at all; 16:23 UTC is two hours ahead.
        #expect(answer("2025-11-18T16:23:45.678+02:00").isEmpty)
        #expect(answer("2025-11-18T16:23:45.678Z").first?.reason.contains("is 2 h ahead") == true)
        // 0: no bound, as before the setting.
        #expect(answer("2052-11-18T14:23:45.678Z", by: EventValidator()).isEmpty)
    }

    /// Dates Foundation's parser rolls over and a browser's `Date` cannot read: refused, naming `timestamp`.
    @Test func impossibleTimestampsAreRefused() {
        let impossible = [
            "2025-11-18T25:00:00Z", "2025-02-30T10:00:00Z", "2025-11-18T14:23:60Z", "0000-01-01T00:00:00Z",
            "2025-13-01T00:00:00Z", "2025-11-18T14:60:00Z", "2023-02-29T00:00:00Z", "2025-11-18T14:23:45+24:00",
            "2025-11-18T14:23:45", "2025-11-18 14:23:45Z", "2025-11-18T14:23:45.Z",
            // What Foundation's parser refuses too (the validator no longer asks it): a lower-case `t`, more than
            // nine fraction digits, an offset past ±18:00.
            "2025-11-18t14:23:45Z", "2025-11-18T14:23:45.1234567891Z", "2025-11-18T14:23:45+18:01", "2025-11-18T14:23:45-19:00",
        ]
        for stamp in impossible {
            let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: stamp)
            let found = errors(json)
            #expect(found.map(\.field) == ["timestamp"], "\(stamp)")
            #expect(found.first?.reason.contains(stamp) == true, "\(found)")
        }
        for stamp in [
            "2024-02-29T23:59:59.999+05:30", "2000-02-29T00:00:00Z", "0001-01-01T00:00:00Z", "2025-11-18T14:23:45.123456-08:00",
            "2025-11-18T14:23:45.123456789z", "2025-11-18T14:23:45+18:00", "2025-11-18T14:23:45-18:00",
        ] {
            let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: stamp)
            #expect(errors(json).isEmpty, "\(stamp)")
            // What the validator accepts at its edges, Foundation's parser (which the hub's other readers use) reads too.
            #expect(Timestamps.parse(stamp) != nil, "\(stamp)")
        }
    }

    /// A `timestamp` field of `data` follows the envelope's rule: Foundation's parser, which checked them before, took
    /// an operator clocking in on February 30th (March 2nd to it) or at 24:00, which a dashboard reads as Invalid Date.
    @Test func impossibleTimestampsInDataAreRefused() {
        func shift(clockIn: String) -> String {
            #"{"event_type":"operator_shift_status_changed","entity_type":"operator_shift","entity_id":"10234","timestamp":"2025-11-18T06:00:00Z","data":{"operator_id":"O-156","current_status":"in_progress","actual_clock_in":"\#(clockIn)"},"metadata":{"source":"tna","triggered_by":"badge"}}"#
        }
        for stamp in ["2025-02-30T06:00:00Z", "2025-11-18T24:00:00Z", "2025-11-18T05:59:60Z", "0000-11-18T06:00:00Z", "2025-11-18T05:57:12"] {
            let found = errors(shift(clockIn: stamp))
            #expect(found.map(\.field) == ["data.actual_clock_in"], "\(stamp)")
            #expect(found.first?.reason.contains(stamp) == true, "\(found)")
        }
        #expect(errors(shift(clockIn: "2024-02-29T05:57:12.5+01:00")).isEmpty)
        let numbered = shift(clockIn: "N").replacingOccurrences(of: #""actual_clock_in":"N""#, with: #""actual_clock_in":1"#)
        #expect(errors(numbered).first?.reason == "must be an ISO-8601 date-time with a zone (e.g. 2025-11-18T14:23:45.678Z), got number")
    }

    /// Seed 003's optional columns hold NULL ("quality_status IS NULL OR …", a machine's first status has no previous
    /// one), and a publisher serializing such a row sends null: an optional field sent as null is one not sent, in
    /// `data` and in the envelope. A required one stays required.
    @Test func nullIsNoValue() {
        let firstQuality = #"{"event_type":"work_order_quality_changed","entity_type":"work_order","entity_id":"WO-1","line":null,"sequence":null,"idempotency_key":null,"timestamp":"2025-11-18T14:23:45Z","data":{"quality_status":"pending","previous_quality_status":null,"quality_inspection_required":null},"metadata":{"source":"mes","triggered_by":"system"}}"#
        #expect(errors(firstQuality).isEmpty, "\(errors(firstQuality))")
        guard case .valid(let event) = validate(firstQuality) else { return }
        #expect(event.line == nil && event.idempotencyKey == nil && event.channels == ["work-order-progress", "work_order:WO-1"])
        #expect(errors(SampleEvents.machineStatus("M-1", "running", extra: #","previous_status":null,"oee_percentage":null"#)).isEmpty)
        let unknownStatus = errors(SampleEvents.machineStatus("M-1").replacingOccurrences(of: #""current_status":"idle""#, with: #""current_status":null"#))
        #expect(unknownStatus.map(\.field) == ["data.current_status"])
        #expect(unknownStatus.first?.reason.hasSuffix("(null is no value)") == true, "\(unknownStatus)")
        let noBatchLine = #"{"event_type":"production_batch_recorded","entity_type":"production_batch","entity_id":"B-1","line":null,"timestamp":"2025-11-18T14:23:45Z","data":{"machine_id":"CNC-001","order_id":"ORD-1001","serial_range":{"start":1,"end":null},"materials_consumed":[{"material_id":"MAT-001","lot_number":"LOT-1","quantity":null}]},"metadata":{"source":"mes","triggered_by":"system"}}"#
        #expect(errors(noBatchLine).map(\.field) == ["line", "data.serial_range.end"])
        #expect(errors(SampleEvents.machineStatus("M-1").replacingOccurrences(of: #""entity_id":"M-1""#, with: #""entity_id":null"#)).map(\.field) == ["entity_id"])
    }

    @Test func eventTypeMustSuitEntityType() {
        let json = SampleEvents.machineStatus("M-1").replacingOccurrences(of: #""entity_type":"machine""#, with: #""entity_type":"material""#)
        let found = errors(json)
        #expect(found.map(\.field) == ["entity_type"])
        #expect(found[0].reason.contains("operator, machine"))
    }

    @Test func seedValidationRules() {
        // §9.1: OEE 0..100, efficiency 0..5, quantities not negative, produced <= ordered, allocation has a resource.
        #expect(errors(SampleEvents.machineStatus("M-1", extra: #","oee_percentage":120"#)).map(\.field) == ["data.oee_percentage"])
        let material = #"{"event_type":"material_inventory_changed","entity_type":"material","entity_id":"MAT-1","timestamp":"2025-11-18T14:23:45Z","data":{"available_quantity":-1},"metadata":{"source":"inv","triggered_by":"system"}}"#
        #expect(errors(material).first?.reason.hasPrefix("cannot be negative") == true)
        let workOrder = #"{"event_type":"work_order_progress","entity_type":"work_order","entity_id":"WO-1","timestamp":"2025-11-18T14:23:45Z","data":{"current_status":"in_progress","quantity_produced":11,"quantity_ordered":10},"metadata":{"source":"mes","triggered_by":"system"}}"#
        #expect(errors(workOrder).map(\.field) == ["data.quantity_produced"])
        let allocation = #"{"event_type":"allocation_changed","entity_type":"allocation","entity_id":"A-1","timestamp":"2025-11-18T14:23:45Z","data":{"change_type":"created"},"metadata":{"source":"mraos","triggered_by":"user"}}"#
        #expect(errors(allocation).map(\.field) == ["data.operator_id"])
        let goodAllocation = allocation.replacingOccurrences(of: #""change_type":"created""#, with: #""change_type":"created","machine_id":"M-1""#)
        #expect(errors(goodAllocation).isEmpty)
    }

    @Test func nonObjectEventIsRefused() {
        #expect(errors("[1]").map(\.field) == ["event"])
    }
}
