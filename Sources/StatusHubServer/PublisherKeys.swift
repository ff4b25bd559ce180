import Crypto
import StatusHubCore
import Synchronization

/// Who is publishing: the tenant its events belong to and what it may write.
struct Publisher: Sendable, Equatable {
    /// The API key's configured name; nil for an anonymous publisher (auth off).
    var name: String?
    var tenant: String
    /// Entity type names the key may publish; nil: all.
    var entityTypes: Set<String>?
    /// Lines the key may publish on; nil: any.
    let lines: Set<String>?
    /// The same, sorted once for the key rather than for each event it scopes (`scoping`).
    private let sortedLines: [String]?

    init(name: String?, tenant: String, entityTypes: Set<String>? = nil, lines: Set<String>? = nil) {
        self.name = name
        self.tenant = tenant
        self.entityTypes = entityTypes
        self.lines = lines
        self.sortedLines = lines?.sorted()
    }

    static let anonymous = Publisher(name: nil, tenant: Tenant.defaultName)

    /// Why this publisher may not write `event`, or nil when it may.
    func refusal(for event: ValidatedEvent) -> FieldError? {
        if let entityTypes, !entityTypes.contains(event.entityType.rawValue) {
            return FieldError(
                field: "entity_type",
                reason: "forbidden for this key: '\(event.entityType.rawValue)'; allowed: \(entityTypes.sorted().joined(separator: ", "))")
        }
        if let lines, !(event.line.map(lines.contains) ?? false) {
            return FieldError(
                field: "line",
                reason: "forbidden for this key: \(event.line.map { "'\($0)'" } ?? "an event without a line"); allowed: \((sortedLines ?? []).joined(separator: ", "))")
        }
        return nil
    }

    /// `event` carrying this key's line scope, which the engine checks against its entity's cached state: a state
    /// event would move the entity, and news (an alert, a prediction) would reach its `machine:<id>` subscribers as
    /// though its own line had spoken.
    func scoping(_ event: ValidatedEvent) -> ValidatedEvent {
        guard let sortedLines else { return event }
        var scoped = event
        scoped.writableLines = sortedLines
        return scoped
    }

    /// The refusal of an event whose entity's cached state (`state`) is on `heldLine` ("" for none), outside the
    /// key's lines.
    static func foreignEntity(_ event: ValidatedEvent, heldLine: String, state: EventID) -> FieldError {
        let held = heldLine.isEmpty ? "on no line" : "on line '\(heldLine)'"
        return FieldError(
            field: "entity_id",
            reason: "forbidden for this key: \(event.entityType.rawValue) '\(event.entityID)' is \(held) (its state is event \(state)); this key may publish only about entities on its lines (\((event.writableLines ?? []).joined(separator: ", "))) or without a cached state")
    }
}

/// The configured API keys, by SHA-256. A presented key is hashed and compared with every configured hash in
/// constant time, so neither timing nor logs reveal anything about the keys. Replaced whole on SIGHUP (`replace`), so
/// a key is rotated without a restart.
final class PublisherKeys: Sendable {
    private typealias Entry = (digest: [UInt8], publisher: Publisher)
    private let entries: Mutex<[Entry]>
    let required: Bool

    enum Outcome: Sendable, Equatable {
        case publisher(Publisher)
        /// 401, with the reason (never containing the key).
        case unauthorized(String)
    }

    init(config: HubConfig.Auth) {
        required = config.required
        entries = Mutex(Self.entries(config))
    }

    /// The keys of `config` from now on (whether keys are required stays as the node started).
    func replace(config: HubConfig.Auth) {
        let replacement = Self.entries(config)
        entries.withLock { $0 = replacement }
    }

    var count: Int { entries.withLock { $0.count } }

    private static func entries(_ config: HubConfig.Auth) -> [Entry] {
        config.apiKeys.compactMap { key in
            guard let digest = HubConfig.Auth.digest(fromHex: key.hash) else { return nil }
            return (digest, Publisher(
                name: key.name, tenant: key.tenant ?? Tenant.defaultName,
                entityTypes: key.entityTypes.map(Set.init),
                lines: key.lines.map(Set.init)))
        }
    }

    /// `authorization` is the `Authorization` header. Without one: anonymous when auth is not required.
    func authenticate(authorization: String?) -> Outcome {
        guard let authorization else {
            return required ? .unauthorized("is required: Authorization: Bearer <API key>") : .publisher(.anonymous)
        }
        guard let key = Self.bearer(authorization) else {
            return .unauthorized("must be 'Bearer <API key>'")
        }
        let presented = Array(SHA256.hash(data: Array(key.utf8)))
        var found: Publisher?
        entries.withLock { entries in
            for entry in entries where Self.constantTimeEqual(entry.digest, presented) {
                found = entry.publisher
            }
        }
        return found.map(Outcome.publisher) ?? .unauthorized("unknown API key")
    }

    /// The token of `Bearer <token>` (scheme case-insensitive), or nil.
    static func bearer(_ header: String) -> Substring? {
        let trimmed = header.drop(while: { $0 == " " })
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let token = trimmed.dropFirst(7).drop(while: { $0 == " " })
        return token.isEmpty ? nil : token
    }

    /// Compares every byte whatever the first difference.
    static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }

    /// Lowercase hex SHA-256 of `key`: what `auth.api_keys[].hash` holds (`statushub hash-key`).
    public static func hash(key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// What `statushub hash-key` prints for `auth.api_keys[].hash`.
public enum APIKeyHash {
    public static func hex(of key: String) -> String { PublisherKeys.hash(key: key) }
}
