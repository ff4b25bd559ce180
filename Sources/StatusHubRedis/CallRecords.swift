import StatusHubCore
import Synchronization

/// What makes a retry safe when an append call's outcome is unknown (sent, and no answer: a timeout, a lost
/// connection).
///
/// Every ingest call of the append script carries a fresh token and records, under `<stream>:call:<token>`, the
/// ids it assigned in call order — one key per call, not per event. When the call's answer is lost, the publisher
/// is told to resend each event that has no idempotency key of its own with the hub key `hub:<token>:<position>`;
/// the script, seeing such a key, looks the record up: a recorded id means the first attempt was stored (the
/// resend is a duplicate of that id), no record means it never ran (the resend is stored, and its key remembered
/// like any idempotency key, so a retry of the retry is safe too).
///
/// A record is only worth keeping while its call might go unanswered, so the next call deletes the records of
/// the calls this node got answers for (inside the same script run: no extra round trip). Redis therefore holds
/// about one record per node at any time, plus one per call whose answer was lost, each for the idempotency
/// window — which is what lets the window be as long as the idempotency keys' at no memory cost.
///
/// The records are shared by the tenants of a call (group commit mixes them), so each entry carries its event's
/// tenant prefix and a lookup only matches an entry of its own tenant: a hub key never reveals, or stands for,
/// another tenant's event.
final class CallRecords: Sendable {
    static let hubKeyPrefix = "hub:"

    private let answered = Mutex<[String]>([])

    /// A new call token: 128 random bits (the system's CSPRNG), so a token cannot be guessed from another.
    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return hex(high) + hex(low)
    }

    /// The key the publisher resends the event at `position` (0-based) of call `token` with.
    static func hubKey(token: String, position: Int) -> String { "\(hubKeyPrefix)\(token):\(position)" }

    /// The token and position a hub key names, or nil for any other key (a publisher's own key that merely
    /// starts with `hub:` is an ordinary idempotency key).
    static func parse(hubKey key: Substring) -> (token: String, position: Int)? {
        guard key.hasPrefix(hubKeyPrefix) else { return nil }
        let rest = key.dropFirst(hubKeyPrefix.count)
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        let token = rest[..<colon]
        let digits = rest[rest.index(after: colon)...]
        guard token.utf8.count == 32, token.utf8.allSatisfy(isLowerHex),
            (1...4).contains(digits.utf8.count), digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let position = Int(digits), position < AppendScript.chunkSize
        else { return nil }
        return (String(token), position)
    }

    /// Tokens of answered calls, whose records the next call deletes; the list is emptied.
    func takeAnswered() -> [String] {
        answered.withLock { answered in
            defer { answered.removeAll(keepingCapacity: true) }
            return answered
        }
    }

    /// Tokens whose records can go: their calls were answered, or a call that was to delete them failed.
    func noteAnswered(_ tokens: some Sequence<String>) {
        answered.withLock { $0.append(contentsOf: tokens) }
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}

/// An append call was sent and its answer never came: its events may or may not be stored.
struct AppendOutcomeUnknown: Error, CustomStringConvertible {
    /// Per event of the append, the hub key to resend it with; nil for events with their own idempotency key
    /// (resent with it) and when idempotency is off (nothing can make the resend safe then).
    var resendKeys: [String?]
    var cause: any Error

    var description: String { "\(cause)" }
}
