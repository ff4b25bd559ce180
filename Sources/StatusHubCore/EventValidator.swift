import Foundation
import Synchronization

/// Turns one decoded JSON event into a `ValidatedEvent`, or into every reason it cannot be one.
///
/// Validation reports all problems of an event at once (not just the first), each naming its field, so a
/// publisher fixes a payload in one round.
public struct EventValidator: Sendable {
    /// Fields a publisher may send. `event_id` and `received_at` are the hub's to assign.
    public static let envelopeFields: Set<String> = [
        "event_type", "entity_type", "entity_id", "timestamp", "data", "metadata", "line", "idempotency_key",
        "sequence",
    ]

    public enum Validation: Sendable {
        case valid(ValidatedEvent)
        case invalid([FieldError])
    }

    /// The event and entity types this validator accepts, and the rules on their `data`.
    public let catalog: Catalog
    /// Seconds a `timestamp` may be ahead of the time the event was received (0: no bound;
    /// `server.max_clock_ahead_seconds`).
    public let maxClockAheadSeconds: Double

    public init(catalog: Catalog = .standard, maxClockAheadSeconds: Double = 0) {
        self.catalog = catalog
        self.maxClockAheadSeconds = maxClockAheadSeconds
    }

    /// `tenant` is the publisher's (from its API key), never the event's: an event cannot name its tenant.
    public func validate(_ value: JSONValue, receivedAt: Date, tenant: String = Tenant.defaultName) -> Validation {
        guard case .object(let event) = value else {
            return .invalid([FieldError(field: "event", reason: "must be a JSON object, got \(value.typeName)")])
        }
        var errors: [FieldError] = []
        for key in event.keys.sorted() where !Self.envelopeFields.contains(key) {
            if key == "event_id" || key == "received_at" || key == "late" || key == "held" || key == "status_since" {
                errors.append(FieldError(field: key, reason: "is assigned by the hub; do not send it"))
            } else {
                // Found by fuzzing: an empty or huge key must still yield a field a publisher can read.
                let name = key.isEmpty || key.utf8.count > 64 ? "event" : key
                errors.append(FieldError(
                    field: name, reason: "unknown field '\(key.prefix(64))'; allowed: \(Self.envelopeFields.sorted().joined(separator: ", "))"))
            }
        }

        let catalog = catalog
        let eventType: EventType? = enumField(
            event, "event_type", catalog.publishableEventType(named:), allowed: catalog.publishableList, &errors)
        let entityType: EntityType? = enumField(event, "entity_type", catalog.entityType(named:), allowed: catalog.entityTypeList, &errors)
        var entityID = segmentField(event, "entity_id", required: true, &errors)
        if let id = entityID, let rule = entityType?.definition.idRule, !rule.accepts(id) {
            errors.append(FieldError(
                field: "entity_id", reason: "'\(id.prefix(64))' does not match the \(entityType!.rawValue) id rule \(rule.pattern)"))
            entityID = nil
        }
        let line = segmentField(event, "line", required: false, &errors)
        if let eventType, eventType.definition.lineRequired, line == nil, event["line"] == nil || event["line"] == .null {
            errors.append(FieldError(field: "line", reason: "is required: \(eventType.rawValue) events belong to a line"))
        }
        let stamped = timestampField(event, receivedAt: receivedAt, &errors)
        let timestamp = stamped?.text
        let metadata = metadataField(event, &errors)
        var idempotencyKey: String?
        switch event["idempotency_key"] {
        case nil, .null?: break
        case .string(let key)? where Self.isValidIdempotencyKey(key): idempotencyKey = key
        default: errors.append(FieldError(field: "idempotency_key", reason: Self.idempotencyKeyRule))
        }

        var sequence: Int?
        switch event["sequence"] {
        case nil, .null?: break
        case .number(let value)? where value >= 0 && value <= 9_007_199_254_740_991 && value.rounded() == value:
            sequence = Int(value)
        default: errors.append(FieldError(field: "sequence", reason: Self.sequenceRule))
        }

        var data: [String: JSONValue]?
        switch event["data"] {
        case nil: errors.append(FieldError(field: "data", reason: "is required"))
        case .object(let members)?: data = members
        case let other?: errors.append(FieldError(field: "data", reason: "must be an object, got \(other.typeName)"))
        }

        if let eventType, let entityType {
            if let schema = eventType.schema(for: entityType) {
                if let data {
                    let dataErrors = schema.check(data)
                    if !dataErrors.isEmpty { errors += dataErrors }
                }
            } else {
                errors.append(FieldError(
                    field: "entity_type",
                    reason: "'\(entityType.rawValue)' cannot carry '\(eventType.rawValue)'; allowed: \(eventType.entityTypes.map(\.rawValue).joined(separator: ", "))"))
            }
        }

        guard errors.isEmpty, let eventType, let entityType, let entityID, let timestamp, let data, let metadata else {
            return .invalid(errors)
        }
        // The event as the hub sends it on, minus `event_id` (see `StoredEvent.assembleJSON`), keys sorted so the
        // bytes are the same for the same event on every node. `idempotency_key` and `line` are left out when
        // absent, `tenant` for the default tenant (so its events are what they were before tenants).
        let members: [(key: String, value: JSONValue)] = [
            ("data", .object(data)), ("entity_id", .string(entityID)), ("entity_type", .string(entityType.rawValue)),
            ("event_type", .string(eventType.rawValue)),
        ]
        // `held` (the engine's mark) would sort here, `late` after the idempotency key; everything after it is the tail.
        var tail: [(key: String, value: JSONValue)] = []
        if let line { tail.append(("line", .string(line))) }
        tail.append(("metadata", .object(metadata)))
        tail.append(("received_at", .string(Timestamps.format(receivedAt))))
        if let sequence { tail.append(("sequence", .number(Double(sequence)))) }
        // `status_since` (the engine's stamp) would sort here; the rest is the end.
        var end: [(key: String, value: JSONValue)] = []
        if tenant != Tenant.defaultName { end.append(("tenant", .string(tenant))) }
        end.append(("timestamp", .string(timestamp)))
        // The body after the opening brace, `head,tail,end}`, written straight into one buffer; the late mark's place
        // is where the head ends, the status stamp's where the tail does.
        var body: [UInt8] = []
        body.reserveCapacity(512)
        JSONValue.write(memberList: members, into: &body)
        let hold = eventType.carriesState ? catalog.hold(of: eventType, on: entityType) : nil
        let heldMarkOffset = hold == nil ? 0 : body.count + 1
        if let idempotencyKey {
            body.append(UInt8(ascii: ","))
            JSONValue.write(memberList: [("idempotency_key", .string(idempotencyKey))], into: &body)
        }
        let lateMarkOffset = eventType.carriesState ? body.count + 1 : 0
        body.append(UInt8(ascii: ","))
        JSONValue.write(memberList: tail, into: &body)
        body.append(UInt8(ascii: ","))
        let statusSinceOffset = body.count
        JSONValue.write(memberList: end, into: &body)
        body.append(UInt8(ascii: "}"))
        let statusSince = eventType.definition.statusSince.flatMap { declared -> StatusSince? in
            guard case .string(let value)? = data[declared.field], !value.utf8.contains(where: { $0 == 9 || $0 == 10 }) else { return nil }
            let previous = declared.previous.flatMap { data[$0]?.stringValue }
            return StatusSince(value: value, timestamp: timestamp, changed: previous.map { $0 != value } ?? false, offset: statusSinceOffset)
        }
        let prefix = Tenant.prefix(tenant)
        return .valid(ValidatedEvent(
            eventType: eventType, entityType: entityType, entityID: entityID, line: line,
            channels: ChannelName.channels(category: eventType.category, entityType: entityType, entityID: entityID, line: line)
                .map { prefix + $0 },
            carriesState: eventType.carriesState, bodyAfterID: body,
            idempotencyKey: idempotencyKey.map { prefix + $0 }, tenant: tenant,
            sourceRank: stamped.map { SourceOrder.rank($0.moment, sequence: sequence) }, lateMarkOffset: lateMarkOffset,
            tallies: eventType.carriesState
                ? TallyUpdate.make(entityType: entityType, entityID: entityID, line: line, data: data, tenant: tenant, catalog: catalog)
                : nil,
            statusSince: statusSince, hold: hold, heldMarkOffset: heldMarkOffset,
            isFinal: eventType.carriesState && catalog.isFinal(entityType: entityType, data: data)))
    }

    public static let sequenceRule = "must be a whole number from 0 to 9007199254740991 (the publisher's order of the entity's events)"

    public static let idempotencyKeyRule = "must be a string of 1-128 printable ASCII characters"

    public static func isValidIdempotencyKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 128 && key.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// A copy of `event` carrying `key` (the `Idempotency-Key` header of a single-event request).
    public func withIdempotencyKey(_ value: JSONValue, key: String) -> JSONValue {
        guard case .object(var members) = value, members["idempotency_key"] == nil || members["idempotency_key"] == .null else { return value }
        members["idempotency_key"] = .string(key)
        return .object(members)
    }

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
        case .null?:
            // An optional field sent as null is one not sent, as in `data` (`DataSchema`).
            if required { errors.append(FieldError(field: field, reason: "is required (null is no value)")) }
        case .string(let text)?:
            if ChannelName.isDotSegment(text) {
                errors.append(FieldError(field: field, reason: "'\(text)' \(ChannelName.dotSegmentRule)"))
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

    private func timestampField(_ event: [String: JSONValue], receivedAt: Date, _ errors: inout [FieldError])
        -> (text: String, moment: Timestamps.Moment)?
    {
        switch event["timestamp"] {
        case nil:
            errors.append(FieldError(field: "timestamp", reason: "is required (ISO-8601, e.g. 2025-11-18T14:23:45.678Z)"))
        case .string(let text)?:
            switch Timestamps.read(text) {
            case .failure(let problem):
                errors.append(FieldError(field: "timestamp", reason: "'\(text.prefix(64))' \(problem.reason)"))
            case .success(let moment):
                let ahead = moment.secondsSince1970 - receivedAt.timeIntervalSince1970
                // Compared in whole milliseconds: the two clocks' Doubles differ in their last bits.
                guard maxClockAheadSeconds == 0 || (ahead * 1000).rounded() <= maxClockAheadSeconds * 1000 else {
                    errors.append(FieldError(
                        field: "timestamp",
                        reason: "'\(text.prefix(64))' is \(Self.span(ahead)) ahead of this node's clock; at most \(Self.span(maxClockAheadSeconds)) "
                            + "(server.max_clock_ahead_seconds): a state from the future would outrank every real one until it went stale"))
                    return nil
                }
                return (text, moment)
            }
        case let other?:
            errors.append(FieldError(field: "timestamp", reason: "must be an ISO-8601 string, got \(other.typeName)"))
        }
        return nil
    }

    /// `300.001 s`, `3.5 h`, `9862 days`: a span a publisher reads at a glance, to the millisecond while that
    /// could be the difference from the bound.
    static func span(_ seconds: Double) -> String {
        func figure(_ value: Double, places: Int) -> String {
            var text = String(format: "%.\(places)f", value)
            while text.contains("."), text.last == "0" || text.last == "." { text.removeLast() }
            return text
        }
        switch seconds {
        case ..<7200: return "\(figure(seconds, places: 3)) s"
        case ..<(2 * 86_400): return "\(figure(seconds / 3600, places: 1)) h"
        default: return "\(figure(seconds / 86_400, places: 0)) days"
        }
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

/// ISO-8601 parsing and formatting with and without fractional seconds.
public enum Timestamps {
    private static let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let whole = Date.ISO8601FormatStyle()

    static let shape = "is not an ISO-8601 date-time with a zone (e.g. 2025-11-18T14:23:45.678Z)"

    /// Why `text` is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` naming a real moment, or nil.
    ///
    /// Checked here, field by field, because Foundation's ISO-8601 parser rolls fields over instead of refusing
    /// them (`T25:00:00Z` is the next day's 01:00, `2025-02-30` is March 2nd, `:60` the next minute) and takes
    /// year 0000, all of which a browser's `Date` reads as Invalid Date. It accepts nothing Foundation's parser
    /// refuses (an upper-case `T`, at most nine fraction digits, offsets up to ±18:00), so what passes here also
    /// parses there (`Timestamps.parse`) and the validator need not run both: the second parse was an eighth of
    /// validation's CPU (loadtest/RESULTS.md).
    public static func problem(_ text: String) -> String? {
        if case .failure(let problem) = read(text) { return problem.reason }
        return nil
    }

    /// The fields of a valid timestamp, as `problem` checks them: what `SourceOrder` ranks by, read once.
    public struct Moment: Sendable, Equatable {
        public var year, month, day, hour, minute, second: Int
        /// The fraction digits as written (at most nine).
        public var fraction: [UInt8]
        /// The zone's offset east of UTC.
        public var offsetSeconds: Int
    }

    public struct Problem: Error, Sendable { public var reason: String }

    /// `text`'s fields, or why it is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` naming a real moment.
    public static func read(_ text: String) -> Result<Moment, Problem> {
        let bytes = Array(text.utf8)
        func number(at start: Int, digits: Int) -> Int? {
            guard start + digits <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<start + digits] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func at(_ index: Int, _ characters: String) -> Bool { index < bytes.count && characters.utf8.contains(bytes[index]) }
        func refuse(_ reason: String) -> Result<Moment, Problem> { .failure(Problem(reason: reason)) }
        guard let year = number(at: 0, digits: 4), at(4, "-"), let month = number(at: 5, digits: 2), at(7, "-"),
            let day = number(at: 8, digits: 2), at(10, "T"), let hour = number(at: 11, digits: 2), at(13, ":"),
            let minute = number(at: 14, digits: 2), at(16, ":"), let second = number(at: 17, digits: 2)
        else { return refuse(shape) }
        var index = 19
        var fraction: [UInt8] = []
        if at(index, ".") {
            index += 1
            let digits = index
            while at(index, "0123456789") {
                fraction.append(bytes[index])
                index += 1
            }
            guard index > digits, fraction.count <= 9 else { return refuse(shape) }
        }
        var offsetSeconds = 0
        if at(index, "Zz") {
            index += 1
        } else if at(index, "+-"), let offsetHours = number(at: index + 1, digits: 2), at(index + 3, ":"),
            let offsetMinutes = number(at: index + 4, digits: 2)
        {
            guard offsetHours * 60 + offsetMinutes <= 18 * 60, offsetMinutes <= 59 else {
                return refuse("has no such zone offset (at most ±18:00)")
            }
            offsetSeconds = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        } else {
            return refuse(shape)
        }
        guard index == bytes.count else { return refuse(shape) }
        guard year >= 1 else { return refuse("has year 0000; years run from 0001") }
        guard (1...12).contains(month) else { return refuse("has no month \(month) (01-12)") }
        let monthDays = [31, year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...monthDays[month - 1]).contains(day) else { return refuse("has no day \(day) in that month (01-\(monthDays[month - 1]))") }
        guard hour <= 23 else { return refuse("has no hour \(hour) (00-23)") }
        guard minute <= 59 else { return refuse("has no minute \(minute) (00-59)") }
        guard second <= 59 else { return refuse("has no second \(second) (00-59; leap seconds are not accepted)") }
        return .success(Moment(
            year: year, month: month, day: day, hour: hour, minute: minute, second: second, fraction: fraction,
            offsetSeconds: offsetSeconds))
    }

    public static func parse(_ text: String) -> Date? {
        (try? fractional.parse(text)) ?? (try? whole.parse(text))
    }

    public static func format(_ date: Date) -> String {
        // A batch's events share their `received_at`, and Foundation's formatter (calendar arithmetic, per call) was
        // a few percent of batched ingest's CPU: the last moment formatted is kept.
        if let (moment, text) = lastFormatted.withLock({ $0 }), moment == date { return text }
        let text = fractional.format(date)
        lastFormatted.withLock { $0 = (date, text) }
        return text
    }

    private static let lastFormatted = Mutex<(Date, String)?>(nil)
}
