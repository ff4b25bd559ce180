/// An event type whose states say since when their entity has held its status (`status_since:`), checked when the
/// catalog loads. The engines act on it: each state of the type is stamped `"status_since"`, the source time at
/// which the entity's `field` took the value it has, carried from state to state while the value repeats (a
/// heartbeat), so a screen opened now can say "breakdown for 2 h" from the snapshot alone.
///
///     status_since: {field: current_status, previous: previous_status}
///
/// The hub knows when a value began if it held the entity's earlier, different value, or if the event itself says
/// it changed (`previous`, when declared, names another value). Otherwise — the entity's first state the hub sees,
/// or its first after it went stale — the start is unknown and no `status_since` is stamped until the value changes.
extension CatalogBuilder {
    static let statusSinceKeys = ["field", "previous", "description"]

    func checkStatusSince(_ node: CatalogNode, fields: [(key: String, value: CatalogNode)], carriesState: Bool) throws {
        guard carriesState else { throw node.error("only a state-carrying event type (carries_state: true) has a status to date") }
        let members = try node.members(allowed: Self.statusSinceKeys)
        guard members.contains(where: { $0.key == "field" }) else {
            throw node.error("field is required: the data field whose value's start is stamped (e.g. field: current_status)")
        }
        for key in ["field", "previous"] {
            guard let named = members.first(where: { $0.key == key })?.value else { continue }
            let name = try named.string()
            guard let declared = fields.first(where: { $0.key == name })?.value else {
                throw named.error("names '\(name)', which data does not declare")
            }
            let type = try declared.members().first { $0.key == "type" }?.value.string()
            let isEnum = try declared.members().contains { $0.key == "enum" }
            guard type == "status" || type == "string" || isEnum else {
                throw named.error("'\(name)' must be a status, enum or string field: its values are compared")
            }
        }
    }
}
