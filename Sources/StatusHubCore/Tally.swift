/// A live tally the hub keeps beside the cached states (seed 003 §4.2): a counter of the entities whose state
/// matches (`stats:line:{line}:machines_running`), or a set of the entities that are active for an owner
/// (`allocation:operator:{operator_id}:active`). Declared in the catalog (`counters`, `active_sets`), maintained
/// by the engines atomically with each state change, from the cached previous state (`TallyPlan`).
public struct Tally: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// An integer: +1 when a state starts to match, −1 when it stops (or goes stale).
        case counter
        /// A set of entity ids, under the owners each state names: every state but those `until` matches.
        case set
    }

    public enum Scope: String, Sendable {
        /// The key names `{line}`: one counter per production line.
        case line
        /// The key names `{shift}`: the running count, copied for the shift in effect (`ShiftSchedule`).
        case shift
        /// Neither: one per plant (tenant).
        case plant
    }

    public let name: String
    public let kind: Kind
    /// Key templates: `{line}`, `{shift}` (counters) and `{<data field>}` (sets) are filled per event; a template
    /// whose field is missing or not a channel segment yields no key for that event.
    public let keys: [String]
    public let entityType: String
    /// Counters: `data` field → values; the state counts when every listed field has one of its values.
    public let when: [(field: String, values: [String])]
    /// Sets: a state matching this (`change_type: [released, completed]`) is in no set.
    public let until: [(field: String, values: [String])]?
    /// Counters only: the key's TTL, refreshed by every state event that counts toward it; nil for none.
    public let ttlSeconds: Int?

    /// What its first key names; worked out once here, as every state event asks it (Foundation's substring search,
    /// per event, was a measurable share of ingest).
    public let scope: Scope

    init(
        name: String, kind: Kind, keys: [String], entityType: String, when: [(field: String, values: [String])],
        until: [(field: String, values: [String])]?, ttlSeconds: Int?
    ) {
        self.name = name
        self.kind = kind
        self.keys = keys
        self.entityType = entityType
        self.when = when
        self.until = until
        self.ttlSeconds = ttlSeconds
        let template = keys.first ?? ""
        scope = template.contains("{line}") ? .line : template.contains("{shift}") ? .shift : .plant
    }

    public static func == (lhs: Tally, rhs: Tally) -> Bool {
        lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.keys == rhs.keys && lhs.entityType == rhs.entityType
            && lhs.when.map(\.field) == rhs.when.map(\.field) && lhs.when.map(\.values) == rhs.when.map(\.values)
            && lhs.ttlSeconds == rhs.ttlSeconds
    }

    /// The running count of a shift counter lives under `current` in place of the shift id.
    public static let currentShift = "current"
}
