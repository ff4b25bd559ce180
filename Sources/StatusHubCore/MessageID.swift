/// The `id` a client put on a WebSocket message, echoed on every reply to it exactly as it was sent: a client that
/// correlates by `===` (a JavaScript `Map` of pending requests, JSON-RPC habits) finds `5` answered as `5`, not `"5"`.
public enum MessageID: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    case text(String)
    /// A whole number within ±(2^53 − 1): the integers a JSON reader keeps exactly (a browser's `Number`).
    case number(Int64)

    public static let maxTextBytes = 128
    public static let maxNumber: Int64 = 9_007_199_254_740_991
    public static let rule = "a string of at most \(maxTextBytes) bytes, or a whole number up to 2^53 − 1"

    /// The id a message's `id` member names; nil when it is absent or null, `.failure` when it cannot be echoed as sent
    /// (1e300 would come back as something else, 1.5 is no id a client counts with).
    public static func from(_ member: JSONValue?) -> Result<MessageID?, InvalidMessageID> {
        switch member {
        case nil, .null?: .success(nil)
        case .string(let text)? where text.utf8.count <= maxTextBytes: .success(.text(text))
        case .number(let number)? where number.rounded() == number && abs(number) <= Double(maxNumber):
            .success(.number(Int64(number)))
        default: .failure(InvalidMessageID())
        }
    }

    public struct InvalidMessageID: Error {}

    public init(stringLiteral value: String) { self = .text(value) }

    public var json: JSONValue {
        switch self {
        case .text(let text): .string(text)
        case .number(let number): .number(Double(number))
        }
    }

    public var description: String {
        switch self {
        case .text(let text): text
        case .number(let number): String(number)
        }
    }
}
