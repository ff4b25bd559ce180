/// An event as the engine stored and published it: its position, its routing, and the exact JSON bytes every
/// subscriber receives.
public struct StoredEvent: Sendable, Equatable {
    public let id: EventID
    public let entityKey: String
    public let channels: [String]
    public let json: [UInt8]

    public init(id: EventID, entityKey: String, channels: [String], json: [UInt8]) {
        self.id = id
        self.entityKey = entityKey
        self.channels = channels
        self.json = json
    }

    public init(id: EventID, validated event: ValidatedEvent) {
        self.init(
            id: id, entityKey: event.entityKey, channels: event.channels,
            json: Self.assembleJSON(id: id, bodyAfterID: event.bodyAfterID))
    }

    /// `{"event_id":"<id>",` followed by the body: the one place the id joins the JSON.
    public static func assembleJSON(id: EventID, bodyAfterID: some Collection<UInt8>) -> [UInt8] {
        var json: [UInt8] = []
        json.reserveCapacity(bodyAfterID.count + 40)
        json.append(contentsOf: #"{"event_id":""#.utf8)
        json.append(contentsOf: id.description.utf8)
        json.append(contentsOf: #"","#.utf8)
        json.append(contentsOf: bodyAfterID)
        return json
    }

    public var jsonString: String { String(decoding: json, as: UTF8.self) }
}

/// `<entity key> <channel> <channel>…`: the routing facts carried beside an event's JSON in history entries and
/// pub/sub messages. Channels and keys cannot contain spaces (see `ChannelName`), so a space separates them.
public enum RoutingHeader {
    public static func encode(entityKey: String, channels: [String]) -> String {
        ([entityKey] + channels).joined(separator: " ")
    }

    public static func decode(_ header: some Collection<UInt8>) -> (entityKey: String, channels: [String])? {
        let parts = header.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count >= 2 else { return nil }
        return (parts[0], Array(parts.dropFirst()))
    }
}

/// A pub/sub message: `<event id> <routing header>\n<event JSON>`. The subscriber side splits on the first
/// newline and never parses the JSON.
public enum PubSubMessage {
    public static func encode(_ event: StoredEvent) -> [UInt8] {
        var bytes = Array("\(event.id) \(RoutingHeader.encode(entityKey: event.entityKey, channels: event.channels))\n".utf8)
        bytes.append(contentsOf: event.json)
        return bytes
    }

    public static func decode(_ payload: some Collection<UInt8>) -> StoredEvent? {
        guard let newline = payload.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let header = payload[payload.startIndex..<newline]
        guard let space = header.firstIndex(of: UInt8(ascii: " ")),
            let id = EventID(String(decoding: header[header.startIndex..<space], as: UTF8.self)),
            let routing = RoutingHeader.decode(header[header.index(after: space)...])
        else { return nil }
        return StoredEvent(
            id: id, entityKey: routing.entityKey, channels: routing.channels,
            json: Array(payload[payload.index(after: newline)...]))
    }
}

extension StoredEvent {
    /// Whether this event is an entity's state (and so may be contained in a snapshot). The category channel
    /// always comes first (see `ChannelName.channels`).
    public var carriesState: Bool {
        channels.first.flatMap(EventCategory.init(rawValue:))?.carriesState ?? false
    }
}
