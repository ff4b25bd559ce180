import Foundation
import StatusHubCore

/// A subscribe given in a URL's query rather than as a message: `GET /v1/sse?channels=…` (its only way) and
/// `GET /v1/ws?channels=…` (subscribed as the session opens, without the client's `subscribe` message and its
/// round trip, the way Nchan's and Centrifugo's connect-time subscriptions work). The same parameters and refusals
/// for both, so a dashboard can move between them by changing the path.
struct SubscribeQuery: Equatable {
    /// Why the query was refused: the 400's field and reason.
    struct Refusal: Error, Equatable {
        var field: String
        var reason: String
    }

    /// Empty only for a WebSocket URL that subscribes to nothing (its client sends `subscribe` messages).
    var patterns: [ChannelPattern] = []
    var snapshot = false
    var since: ResumePoint?
    var filter: EventFilter?
    var recent = 0
    var token: String?

    /// Whether the URL subscribes at all.
    var subscribes: Bool { !patterns.isEmpty }

    /// `channels` (comma-separated, repeatable), `snapshot`, `since` (or the `Last-Event-ID` header, which wins:
    /// it is where a reconnecting `EventSource` left off), `filter`, `recent`, `token`. Form-encoded: `+` is a space.
    /// `channels` is required unless `channelsOptional` (a WebSocket URL), and then `snapshot`, `since`, `filter` and
    /// `recent` need it: alone they would subscribe to nothing. At most `maxPatterns` distinct patterns (a repeat
    /// counts once): the subscribe would refuse more anyway, after the work of parsing and matching them all.
    init(
        parsing query: String, lastEventID: String? = nil, channelsOptional: Bool = false,
        maxPatterns: Int = HubConfig.WebSocket().maxSubscriptions
    ) throws(Refusal) {
        var seen = Set<ChannelPattern>()
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0]
            let raw = parts.count > 1 ? String(parts[1]) : ""
            guard let value = Self.formDecoded(raw) else {
                throw Refusal(field: String(key.prefix(64)), reason: "is not valid percent-encoding")
            }
            switch key {
            case "channels":
                for text in value.split(separator: ",") {
                    do {
                        let trimmed = text.first == " " || text.last == " " ? text.trimmingCharacters(in: .whitespaces) : String(text)
                        let pattern = try ChannelPattern(parsing: trimmed)
                        if seen.insert(pattern).inserted { patterns.append(pattern) }
                    } catch {
                        throw Refusal(field: "channels", reason: error.reason)
                    }
                    guard patterns.count <= maxPatterns else {
                        throw Refusal(field: "channels", reason: Self.tooManyPatterns(maxPatterns))
                    }
                }
            case "snapshot":
                switch value {
                case "true", "1", "": snapshot = true
                case "false", "0": snapshot = false
                default: throw Refusal(field: "snapshot", reason: "must be true or false, got '\(value.prefix(32))'")
                }
            case "since":
                guard let point = ResumePoint(value) else {
                    throw Refusal(field: "since", reason: "must be \(ResumePoint.rule), got '\(value.prefix(64))'")
                }
                since = point
            case "filter":
                do {
                    filter = try EventFilter.parse(value)
                } catch {
                    throw Refusal(field: "filter", reason: "invalid filter '\(value.prefix(64))': \(error.reason)")
                }
            case "recent":
                guard let count = Int(value), (0...ClientMessage.maxRecent).contains(count) else {
                    throw Refusal(field: "recent", reason: "must be \(ClientMessage.recentRule), got '\(value.prefix(32))'")
                }
                recent = count
            case "token":
                // `token=` alone is no token, on every endpoint: a page that fills the parameter from an empty
                // setting reads anonymously (where that is allowed) rather than failing on a blank JWT.
                token = value.isEmpty ? nil : value
            default:
                throw Refusal(field: String(key.prefix(64)), reason: "unknown parameter; use channels, snapshot, since, filter, recent, token")
            }
        }
        if let lastEventID, !lastEventID.isEmpty {
            guard let point = ResumePoint(lastEventID) else {
                throw Refusal(field: "Last-Event-ID", reason: "must be \(ResumePoint.rule)")
            }
            since = point
        }
        guard patterns.isEmpty else { return }
        if !channelsOptional {
            throw Refusal(field: "channels", reason: "is required: comma-separated patterns, e.g. channels=line:Line-2:*,alerts")
        }
        if snapshot || since != nil || filter != nil || recent > 0 {
            let given = snapshot ? "snapshot" : since != nil ? "since" : filter != nil ? "filter" : "recent"
            throw Refusal(field: "channels", reason: "is required with \(given): the patterns it applies to, e.g. channels=line:Line-2:*")
        }
    }

    /// The reason a request naming more than `limit` distinct patterns is refused with, wherever it names them.
    static func tooManyPatterns(_ limit: Int) -> String {
        "more than \(limit) distinct patterns; one request may name at most \(limit) (websocket.max_subscriptions)"
    }

    /// A form value with `+` as a space and percent-escapes decoded; nil for a malformed escape. A value with
    /// neither (the usual `channels=line:Line-2:*`) is taken as it is: Foundation's decoding was 3 % of the hub's
    /// CPU for a connection's whole life when it subscribed in its URL (loadtest/RESULTS.md).
    static func formDecoded(_ raw: String) -> String? {
        guard raw.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return raw }
        return raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
