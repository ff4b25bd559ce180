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
        id: String?, events: [StoredEvent], position: EventID? = nil, resumeToken: String? = nil, more: Bool = false
    ) -> [UInt8] {
        var bytes = Array(#"{"op":"snapshot","#.utf8)
        if let id {
            bytes += Array(#""id":"#.utf8)
            JSONValue.write(string: id, into: &bytes)
            bytes.append(UInt8(ascii: ","))
        }
        if let position = resumeToken ?? position.map(\.description) { bytes += Array(#""position":"\#(position)","#.utf8) }
        if more { bytes += Array(#""more":true,"#.utf8) }
        bytes += Array(#""events":["#.utf8)
        for (position, event) in events.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes += event.json
        }
        bytes += Array("]}".utf8)
        return bytes
    }

    /// Patterns are echoed as the client wrote them, without their tenant scope (see `Tenant`).
    /// A subscribe with a `filter` has it echoed in its normal form.
    public static func subscribed(id: String?, patterns: [ChannelPattern], filter: EventFilter? = nil) -> [UInt8] {
        encode(Reply(op: "subscribed", id: id, channels: patterns.map(\.unscoped.pattern.text), filter: filter?.canonical))
    }

    public static func unsubscribed(id: String?, patterns: [ChannelPattern]) -> [UInt8] {
        encode(Reply(op: "unsubscribed", id: id, channels: patterns.map(\.unscoped.pattern.text)))
    }

    /// The answer to `{"op":"auth"}`: the fresh token is in force until `expires`.
    public static func authenticated(id: String?, expires: Date?) -> [UInt8] {
        encode(Reply(op: "authenticated", id: id, expires: expires.map { Timestamps.format($0) }))
    }

    public static func pong(id: String?) -> [UInt8] { encode(Reply(op: "pong", id: id)) }

    /// The answer to `{"op":"report"}`: how many latency samples were taken.
    public static func reported(id: String?, samples: Int) -> [UInt8] { encode(Reply(op: "reported", id: id, samples: samples)) }

    /// The client cannot be brought up to date by replay: it should take a fresh snapshot.
    public static func resync(id: String?, reason: ResyncReason) -> [UInt8] {
        encode(Reply(op: "resync", id: id, reason: reason.rawValue))
    }

    public static func error(id: String?, code: ErrorCode, message: String) -> [UInt8] {
        encode(Reply(op: "error", id: id, code: code.rawValue, message: message))
    }

    /// A reply other than an event: its members written by `JSONValue`'s writer (sorted keys, `/` unescaped — what
    /// `JSONEncoder` with `.sortedKeys` wrote here before, without its per-call set-up, a visible share of a connect).
    private struct Reply {
        var op: String
        var id: String?
        var channels: [String]?
        var code: String?
        var message: String?
        var reason: String?
        var expires: String?
        var filter: String?
        var samples: Int?
    }

    private static func encode(_ reply: Reply) -> [UInt8] {
        // In key order, as the writer expects of members it is handed.
        var members: [(key: String, value: JSONValue)] = []
        if let channels = reply.channels { members.append(("channels", .array(channels.map(JSONValue.string)))) }
        if let code = reply.code { members.append(("code", .string(code))) }
        if let expires = reply.expires { members.append(("expires", .string(expires))) }
        if let filter = reply.filter { members.append(("filter", .string(filter))) }
        if let id = reply.id { members.append(("id", .string(id))) }
        if let message = reply.message { members.append(("message", .string(message))) }
        members.append(("op", .string(reply.op)))
        if let reason = reply.reason { members.append(("reason", .string(reason))) }
        if let samples = reply.samples { members.append(("samples", .number(Double(samples)))) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        JSONValue.write(members: members, into: &bytes)
        return bytes
    }
}

/// Why a `resync` was sent.
public enum ResyncReason: String, Sendable {
    /// `since` is older than the retained history (`*.history_max_length`, `*.history_max_age_seconds`).
    case historyGap = "history_gap"
    /// The engine lost events it cannot replay (e.g. Redis restarted without persistence).
    case engineGap = "engine_gap"
}
