/// Events as a reader may see them, by the claims its token carries (`Restriction`): whole, without the fields it
/// may not see, or not at all. Fan-out encodes each variant once per event (`RedactionVariants` in the server);
/// snapshots, replays and `/v1/state` redact per reader.
public enum Redaction {
    /// What restricts `event`, or nil when nothing does (the common case, decided from its category alone).
    /// `decoded` caches the event's parsed JSON for the caller.
    public static func restriction(of event: StoredEvent, decoded: inout JSONValue??, catalog: Catalog) -> Applicable? {
        guard let category = event.channels.first.map({ String(Tenant.split($0).rest) }), catalog.restrictedCategories.contains(category)
        else { return nil }
        if decoded == nil { decoded = .some(try? JSONValue.parse(event.json)) }
        guard let json = decoded!, let restricted = Self.restrictedPart(of: json),
            let typeName = restricted["event_type"]?.stringValue, let type = catalog.eventType(named: typeName),
            let entityName = restricted["entity_type"]?.stringValue
        else { return nil }
        let restriction = type.definition.restriction
        let fields = (restriction.fields[entityName] ?? []).filter { restricted["data"]?[$0.name] != nil }
        guard restriction.eventClaim != nil || !fields.isEmpty else { return nil }
        return Applicable(eventClaim: restriction.eventClaim, fields: fields)
    }

    /// The restrictions that apply to one event.
    public struct Applicable: Sendable, Equatable {
        public var eventClaim: String?
        public var fields: [Restriction.Field]

        /// Which variant a reader with `claims` gets (nil claims: every claim): nil when it may not see the event,
        /// else the names of the fields it may not see (empty: the event as stored).
        public func hidden(from claims: Set<String>?) -> [String]? {
            guard let claims else { return [] }
            if let eventClaim, !claims.contains(eventClaim) { return nil }
            return fields.filter { !claims.contains($0.claim) }.map(\.name)
        }
    }

    /// `event` for a reader with `claims`, or nil when it may not see it.
    public static func visible(_ event: StoredEvent, to claims: Set<String>?, catalog: Catalog) -> StoredEvent? {
        guard claims != nil else { return event }
        var decoded: JSONValue?? = nil
        guard let applicable = restriction(of: event, decoded: &decoded, catalog: catalog) else { return event }
        guard let hidden = applicable.hidden(from: claims) else { return nil }
        guard !hidden.isEmpty, let json = decoded ?? nil else { return event }
        return removing(hidden, from: event, decoded: json)
    }

    /// The event whose type's restrictions apply to `event`: itself, or for a `status_stale` notice the expired state
    /// it carries whole (`data.last_state`), which is no less restricted for having expired.
    static func restrictedPart(of event: JSONValue) -> JSONValue? {
        guard event["event_type"]?.stringValue == EventType.statusStaleName else { return event }
        return event["data"]?["last_state"]
    }

    /// `event` without the `data` fields named (a stale notice: its last state's): keys stay sorted with `event_id`
    /// first, as every stored event's.
    public static func removing(_ fields: [String], from event: StoredEvent, decoded: JSONValue) -> StoredEvent {
        guard case .object(var members) = decoded, case .object(var data)? = members["data"] else { return event }
        if members["event_type"]?.stringValue == EventType.statusStaleName {
            guard case .object(var lastState)? = data["last_state"], case .object(var lastData)? = lastState["data"] else { return event }
            for field in fields { lastData[field] = nil }
            lastState["data"] = .object(lastData)
            data["last_state"] = .object(lastState)
        } else {
            for field in fields { data[field] = nil }
        }
        members["data"] = .object(data)
        let id = members.removeValue(forKey: "event_id") ?? .string(event.id.description)
        var ordered: [(key: String, value: JSONValue)] = [("event_id", id)]
        ordered += members.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(event.json.count)
        JSONValue.write(members: ordered, into: &bytes)
        var redacted = StoredEvent(id: event.id, entityKey: event.entityKey, channels: event.channels, json: bytes, carriesState: event.carriesState)
        redacted.partition = event.partition
        redacted.resumeToken = event.resumeToken
        return redacted
    }
}
