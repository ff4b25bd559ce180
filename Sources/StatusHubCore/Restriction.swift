/// What of an event type a subscriber may see (seed 003 §12.1: operator names are PII, allocation changes are for
/// audit roles, material costs for managers), declared in the catalog as claims a subscriber token carries
/// (`"see": ["pii", "audit"]`): `restricted: <claim>` on an event type withholds its events from tokens without the
/// claim; on a top-level `data` field, it removes that field.
public struct Restriction: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var claim: String
    }

    /// The claim needed to receive the event type at all.
    public var eventClaim: String?
    /// Per entity type name: the `data` fields removed for tokens without their claim.
    public var fields: [String: [Field]]

    public init(eventClaim: String? = nil, fields: [String: [Field]] = [:]) {
        self.eventClaim = eventClaim
        self.fields = fields
    }

    public var isEmpty: Bool { eventClaim == nil && fields.isEmpty }
}
