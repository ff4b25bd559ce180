import Foundation

/// What the hub sends on a WebSocket. Event frames are assembled from the stored bytes, never re-encoded.
public enum ServerMessage {
    /// `{"op":"event","event":<json>}` — built once per event and shared by every receiver.
    public static func event(_ event: StoredEvent) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(event.json.count + 24)
        bytes.append(contentsOf: #"{"op":"event","event":"#.utf8)
        bytes.append(contentsOf: event.json)
        // Last, so a reader of the frame's fixed head (`ServerSentEvents`) finds the event where it always was.
        if let token = event.resumeToken {
            bytes.append(contentsOf: #","position":""#.utf8)
            bytes.append(contentsOf: token.utf8)
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// `{"op":"snapshot","id":…,"position":…,"events":[…]}`, with `"more":true` on every part of a snapshot sent in
    /// several parts but the last. `resumeToken` (several partitions) is sent as the position.
    public static func snapshot(
        id: MessageID?, events: [StoredEvent], position: EventID? = nil, resumeToken: String? = nil, more: Bool = false
    ) -> [UInt8] {
        var bytes = Array(#"{"op":"snapshot","#.utf8)
        writeID(id, into: &bytes)
        if let position = resumeToken ?? position.map(\.description) { bytes += Array(#""position":"\#(position)","#.utf8) }
        if more { bytes += Array(#""more":true,"#.utf8) }
        writeEvents(events, into: &bytes)
        return bytes
    }

    /// `{"op":"recent","id":…,"events":[…]}`: the newest feed events a subscribe asked for with `recent`, oldest first.
    public static func recent(id: MessageID?, events: [StoredEvent]) -> [UInt8] {
        var bytes = Array(#"{"op":"recent","#.utf8)
        writeID(id, into: &bytes)
        writeEvents(events, into: &bytes)
        return bytes
    }

    /// `"id":…,` when there is one.
    private static func writeID(_ id: MessageID?, into bytes: inout [UInt8]) {
        guard let id else { return }
        bytes += Array(#""id":"#.utf8)
        id.json.write(into: &bytes)
        bytes.append(UInt8(ascii: ","))
    }

    /// `"events":[…]}`: the stored bytes of each, never re-encoded, and the message's end.
    private static func writeEvents(_ events: [StoredEvent], into bytes: inout [UInt8]) {
        bytes += Array(#""events":["#.utf8)
        for (position, event) in events.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes += event.json
        }
        bytes += Array("]}".utf8)
    }

    /// Patterns are echoed as the client wrote them, without their tenant scope (see `Tenant`).
    /// A subscribe with a `filter` has it echoed in its normal form.
    public static func subscribed(id: MessageID?, patterns: [ChannelPattern], filter: EventFilter? = nil) -> [UInt8] {
        var members = ["channels": channels(patterns)]
        if let filter { members["filter"] = .string(filter.canonical) }
        return reply("subscribed", id: id, members)
    }

    public static func unsubscribed(id: MessageID?, patterns: [ChannelPattern]) -> [UInt8] {
        reply("unsubscribed", id: id, ["channels": channels(patterns)])
    }

    /// The answer to `{"op":"auth"}`: the fresh token is in force until `expires`.
    public static func authenticated(id: MessageID?, expires: Date?) -> [UInt8] {
        reply("authenticated", id: id, expires.map { ["expires": .string(Timestamps.format($0))] } ?? [:])
    }

    public static func pong(id: MessageID?) -> [UInt8] { reply("pong", id: id) }

    /// The answer to `{"op":"report"}`: how many latency samples were taken.
    public static func reported(id: MessageID?, samples: Int) -> [UInt8] {
        reply("reported", id: id, ["samples": .number(Double(samples))])
    }

    /// The client cannot be brought up to date by replay: it should take a fresh snapshot.
    public static func resync(id: MessageID?, reason: ResyncReason) -> [UInt8] {
        reply("resync", id: id, ["reason": .string(reason.rawValue)])
    }

    public static func error(id: MessageID?, code: ErrorCode, message: String) -> [UInt8] {
        reply("error", id: id, ["code": .string(code.rawValue), "message": .string(message)])
    }

    private static func channels(_ patterns: [ChannelPattern]) -> JSONValue {
        .array(patterns.map { .string($0.unscoped.pattern.text) })
    }

    /// A reply other than an event, written by `JSONValue`'s writer: sorted keys, `/` unescaped — the bytes
    /// `JSONEncoder` with `.sortedKeys` wrote here before, without its set-up per reply (a visible share of a connect).
    private static func reply(_ op: String, id: MessageID?, _ members: [String: JSONValue] = [:]) -> [UInt8] {
        var members = members
        members["op"] = .string(op)
        if let id { members["id"] = id.json }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        JSONValue.object(members).write(into: &bytes)
        return bytes
    }
}

/// Why a `resync` was sent.
public enum ResyncReason: String, Sendable {
    /// `since` is older than the retained history (`*.history_max_length`, `*.history_max_age_seconds`).
    case historyGap = "history_gap"
    /// The engine lost events it cannot replay (e.g. Redis restarted without persistence).
    case engineGap = "engine_gap"
    /// The history could not be read just now (the engine did not answer): nothing is known lost, but what was missed
    /// cannot be replayed; the subscribe's snapshot follows when it asked for one.
    case historyUnavailable = "history_unavailable"
}
