import Foundation

/// What a WebSocket client may send. Decoding is pure: the session only acts on the result.
public enum ClientMessage: Sendable, Equatable {
    /// `filter` (`EventFilter`) narrows the subscribe's patterns to the events it admits; `recent` asks for the newest
    /// that many feed events on them (alerts raised before the subscribe, which no snapshot holds).
    case subscribe(
        id: MessageID?, patterns: [ChannelPattern], snapshot: Bool, since: ResumePoint? = nil, filter: EventFilter? = nil, recent: Int = 0)
    case unsubscribe(id: MessageID?, patterns: [ChannelPattern])
    case ping(id: MessageID?)
    /// A fresh token, replacing the connection's without reconnecting.
    case auth(id: MessageID?, token: String)
    /// Latency a client observed (publish to screen), in milliseconds per category, since its last report.
    case report(id: MessageID?, samples: [String: [Double]])

    public static let ops = ["subscribe", "unsubscribe", "ping", "auth", "report"]
    /// Samples one `report` may carry, over all categories.
    public static let maxReportSamples = 1000
    /// The most feed events a subscribe's `recent` may ask for.
    public static let maxRecent = 100
    public static let recentRule = "a whole number from 0 to \(maxRecent)"
    /// Longest token `auth` accepts.
    public static let maxTokenBytes = 8192

    /// A message that cannot be acted on; the session answers with an `error` and keeps the connection.
    public struct Refusal: Error, Sendable, Equatable {
        public var id: MessageID?
        public var code: ErrorCode
        public var message: String

        public init(id: MessageID?, code: ErrorCode, message: String) {
            self.id = id
            self.code = code
            self.message = message
        }
    }

    public static func decode(_ text: some Collection<UInt8>) -> Result<ClientMessage, Refusal> {
        let value: JSONValue
        do {
            value = try JSONValue.parse(text)
        } catch {
            return .failure(Refusal(
                id: nil, code: .invalidJSON, message: "message \(error.isLimit ? "is over a limit" : "is not valid JSON"): \(error)"))
        }
        guard case .object(let message) = value else {
            return .failure(Refusal(id: nil, code: .invalidMessage, message: "message must be a JSON object, got \(value.typeName)"))
        }
        let id: MessageID?
        switch MessageID.from(message["id"]) {
        case .success(let given): id = given
        case .failure: return .failure(Refusal(id: nil, code: .invalidMessage, message: "'id' must be \(MessageID.rule)"))
        }
        func refuse(_ code: ErrorCode, _ text: String) -> Result<ClientMessage, Refusal> {
            .failure(Refusal(id: id, code: code, message: text))
        }
        guard let op = message["op"] else { return refuse(.invalidMessage, "'op' is required; one of: \(ops.joined(separator: ", "))") }
        guard case .string(let opName) = op else { return refuse(.invalidMessage, "'op' must be a string") }
        switch opName {
        case "ping":
            return .success(.ping(id: id))
        case "report":
            guard case .object(let byCategory)? = message["samples_ms"], byCategory.count <= 64 else {
                return refuse(.invalidMessage, "'samples_ms' must be an object of at most 64 categories, each a list of milliseconds")
            }
            var samples: [String: [Double]] = [:]
            var total = 0
            for (category, value) in byCategory {
                guard case .array(let items) = value else { return refuse(.invalidMessage, "'samples_ms.\(category.prefix(64))' must be a list of milliseconds") }
                var values: [Double] = []
                for item in items {
                    guard case .number(let milliseconds) = item, milliseconds >= 0, milliseconds <= 3_600_000 else {
                        return refuse(.invalidMessage, "'samples_ms.\(category.prefix(64))' holds a value that is not a number of milliseconds from 0 to 3600000")
                    }
                    values.append(milliseconds)
                }
                total += values.count
                guard total <= maxReportSamples else {
                    return refuse(.invalidMessage, "a report may carry at most \(maxReportSamples) samples; send more often")
                }
                samples[category] = values
            }
            return .success(.report(id: id, samples: samples))
        case "auth":
            guard case .string(let token)? = message["token"], !token.isEmpty, token.utf8.count <= maxTokenBytes else {
                return refuse(.invalidMessage, "'token' must be a non-empty string of at most \(maxTokenBytes) bytes")
            }
            return .success(.auth(id: id, token: token))
        case "subscribe", "unsubscribe":
            guard let channels = message["channels"] else { return refuse(.invalidMessage, "'channels' is required: an array of patterns") }
            guard case .array(let items) = channels, !items.isEmpty else {
                return refuse(.invalidMessage, "'channels' must be a non-empty array of patterns")
            }
            var patterns: [ChannelPattern] = []
            for item in items {
                guard case .string(let text) = item else { return refuse(.invalidPattern, "every channel pattern must be a string, got \(item.typeName)") }
                do {
                    let pattern = try ChannelPattern(parsing: text)
                    if !patterns.contains(pattern) { patterns.append(pattern) }
                } catch {
                    return refuse(.invalidPattern, error.reason)
                }
            }
            if opName == "unsubscribe" { return .success(.unsubscribe(id: id, patterns: patterns)) }
            var snapshot = false
            switch message["snapshot"] {
            case nil, .null?: snapshot = false
            case .bool(let wanted)?: snapshot = wanted
            default: return refuse(.invalidMessage, "'snapshot' must be true or false")
            }
            var since: ResumePoint?
            switch message["since"] {
            case nil, .null?: since = nil
            case .string(let text)?:
                guard let position = ResumePoint(text) else {
                    return refuse(.invalidMessage, "'since' must be \(ResumePoint.rule), got '\(text.prefix(64))'")
                }
                since = position
            default: return refuse(.invalidMessage, "'since' must be an event_id string")
            }
            var filter: EventFilter?
            switch message["filter"] {
            case nil, .null?: filter = nil
            case .string(let text)?:
                do {
                    filter = try EventFilter.parse(text)
                } catch {
                    return refuse(.invalidFilter, "invalid filter '\(text.prefix(64))': \(error.reason)")
                }
            default: return refuse(.invalidFilter, "'filter' must be a string like \"data.severity in (high, critical)\"")
            }
            var recent = 0
            switch message["recent"] {
            case nil, .null?: recent = 0
            case .number(let number)? where number.rounded() == number && (0...Double(maxRecent)).contains(number): recent = Int(number)
            default: return refuse(.invalidMessage, "'recent' must be \(recentRule)")
            }
            return .success(.subscribe(id: id, patterns: patterns, snapshot: snapshot, since: since, filter: filter, recent: recent))
        default:
            return refuse(.unknownOp, "unknown op '\(opName.prefix(64))'; one of: \(ops.joined(separator: ", "))")
        }
    }
}

/// `code` of a server `error` message.
public enum ErrorCode: String, Sendable, Codable {
    case invalidJSON = "invalid_json"
    case invalidMessage = "invalid_message"
    case unknownOp = "unknown_op"
    case invalidPattern = "invalid_pattern"
    case tooManySubscriptions = "too_many_subscriptions"
    case unavailable = "unavailable"
    /// A pattern outside the token's allowed patterns, or a token refused on `auth`.
    case forbidden = "forbidden"
    /// More messages than `websocket.max_messages_per_second`; keep it up and the socket is closed with 1008.
    case rateLimited = "rate_limited"
    /// A subscribe's `filter` that does not parse (`EventFilter`): the message names what is wrong and where.
    case invalidFilter = "invalid_filter"
}
