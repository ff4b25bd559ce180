/// An event as the engine stored and published it: its position, its routing, and the exact JSON bytes every
/// subscriber receives.
public struct StoredEvent: Sendable, Equatable {
    public let id: EventID
    public let entityKey: String
    public let channels: [String]
    public let json: [UInt8]
    /// Whether this event is its entity's state (what a snapshot holds), as opposed to news about it
    /// (alerts, predictions, stale notices).
    public let carriesState: Bool
    /// On a hub with several partitions: the partition the event is from (its id orders only within it), and the
    /// resume token that resumes right after it (`PartitionPositions`), sent with the event. 0 and nil otherwise.
    public var partition = 0
    public var resumeToken: String?

    /// `carriesState` defaults to what the category channel (always first) implies in the shipped catalog.
    public init(id: EventID, entityKey: String, channels: [String], json: [UInt8], carriesState: Bool? = nil) {
        self.id = id
        self.entityKey = entityKey
        self.channels = channels
        self.json = json
        self.carriesState = carriesState ?? (channels.first.map { Catalog.standard.categoryCarriesState(EventCategory(rawValue: $0)) } ?? false)
    }

    /// `event` as stored, stamped `"status_since":since` when its type dates its status and the start is known.
    public init(id: EventID, validated event: ValidatedEvent, statusSince since: String? = nil) {
        let body = if let since, let stamp = event.statusSince { stamp.stamping(event.bodyAfterID, since: since) } else { event.bodyAfterID }
        self.init(
            id: id, entityKey: event.entityKey, channels: event.channels,
            json: Self.assembleJSON(id: id, bodyAfterID: body), carriesState: event.carriesState)
    }

    /// `event` stored as late: older by source time than its entity's cached state, so it is news, not state, and
    /// says so with `"late":true`.
    public init(id: EventID, lateEvent event: ValidatedEvent) {
        self.init(id: id, news: event, marked: Self.lateMark, at: event.lateMarkOffset)
    }

    /// `event` stored as held: its entity's cached state holds it (`StateHold`) and this event's type does not lift
    /// the hold, so it is news, not state, and says so with `"held":true`.
    public init(id: EventID, heldEvent event: ValidatedEvent) {
        self.init(id: id, news: event, marked: Self.heldMark, at: event.heldMarkOffset)
    }

    private init(id: EventID, news event: ValidatedEvent, marked mark: [UInt8], at offset: Int) {
        var body = event.bodyAfterID
        body.insert(contentsOf: mark, at: offset)
        self.init(
            id: id, entityKey: event.entityKey, channels: event.channels,
            json: Self.assembleJSON(id: id, bodyAfterID: body), carriesState: false)
    }

    public static let lateMark = Array(#""late":true,"#.utf8)
    public static let heldMark = Array(#""held":true,"#.utf8)

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

/// `[~]<entity key> <channel> <channel>…`: the routing facts carried beside an event's JSON in history entries
/// and pub/sub messages; `~` marks an event that is not its entity's state. Channels and keys cannot contain
/// spaces or `~` (see `ChannelName`), so neither is ambiguous.
public enum RoutingHeader {
    public static func encode(entityKey: String, channels: [String], carriesState: Bool) -> String {
        ([carriesState ? entityKey : "~" + entityKey] + channels).joined(separator: " ")
    }

    /// On concrete byte arrays: this runs for every event a node hears, and a generic `Collection` from another
    /// module is not specialized (it showed as 7 % of ingest in `perf`).
    public static func decode(_ header: [UInt8]) -> (entityKey: String, channels: [String], carriesState: Bool)? {
        decode(header[...])
    }

    public static func decode(_ header: ArraySlice<UInt8>) -> (entityKey: String, channels: [String], carriesState: Bool)? {
        let parts = header.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count >= 2 else { return nil }
        let news = parts[0].hasPrefix("~")
        return (news ? String(parts[0].dropFirst()) : parts[0], Array(parts.dropFirst()), !news)
    }
}

/// A pub/sub message: `<event id> <routing header>\n<event JSON>`. The subscriber side splits on the first
/// newline and never parses the JSON.
public enum PubSubMessage {
    public static func encode(_ event: StoredEvent) -> [UInt8] {
        let header = RoutingHeader.encode(entityKey: event.entityKey, channels: event.channels, carriesState: event.carriesState)
        var bytes = Array("\(event.id) \(header)\n".utf8)
        bytes.append(contentsOf: event.json)
        return bytes
    }

    public static func decode(_ payload: [UInt8]) -> StoredEvent? {
        guard let newline = payload.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let header = payload[payload.startIndex..<newline]
        guard let space = header.firstIndex(of: UInt8(ascii: " ")),
            let id = EventID(String(decoding: header[header.startIndex..<space], as: UTF8.self)),
            let routing = RoutingHeader.decode(header[header.index(after: space)...])
        else { return nil }
        return StoredEvent(
            id: id, entityKey: routing.entityKey, channels: routing.channels,
            json: Array(payload[payload.index(after: newline)...]), carriesState: routing.carriesState)
    }
}
