/// A state-carrying event type whose states hold their entity until a releasing type comes (`hold:`, `StateHold`),
/// checked when the catalog loads: the form on the type itself, then, once every type is declared, what `until`
/// names.
///
///     hold: {until: [material_lot_released]}
extension CatalogBuilder {
    static let holdKeys = ["until", "description"]

    func checkHold(_ node: CatalogNode, name: String, carriesState: Bool) throws {
        guard carriesState else { throw node.error("only a state-carrying event type (carries_state: true) can hold its entity") }
        let members = try node.members(allowed: Self.holdKeys)
        guard let until = members.first(where: { $0.key == "until" })?.value else {
            throw node.error("until is required: the event types that lift the hold (e.g. until: [material_lot_released])")
        }
        var seen: Set<String> = []
        let items = try until.list()
        guard !items.isEmpty else { throw until.error("names no event type: nothing could lift the hold") }
        for item in items {
            let released = try item.string()
            guard released != name else { throw item.error("is this type itself, which renews its hold; name the types that lift it") }
            guard seen.insert(released).inserted else { throw item.error("lists '\(released)' twice") }
        }
    }

    /// Each name in a hold's `until` is a declared, state-carrying event type that may name an entity type the hold
    /// does: any other could never lift it.
    func checkHoldReleases(_ eventTypes: [EventType]) throws {
        let byName = Dictionary(uniqueKeysWithValues: eventTypes.map { ($0.rawValue, $0) })
        for (name, node) in eventNodes {
            guard let holding = byName[name], let hold = try node.members().first(where: { $0.key == "hold" })?.value,
                let until = try hold.members().first(where: { $0.key == "until" })?.value
            else { continue }
            for item in try until.list() {
                let released = try item.string()
                guard let type = byName[released], type.isPublishable else {
                    throw item.error("unknown event type '\(released)'; a hold is lifted by a declared event type")
                }
                guard type.carriesState else { throw item.error("'\(released)' carries no state, so it cannot replace the hold") }
                guard type.entityTypes.contains(where: holding.entityTypes.contains) else {
                    throw item.error("'\(released)' names none of the entity types '\(name)' holds (\(holding.entityTypes.map(\.rawValue).joined(separator: ", ")))")
                }
            }
        }
    }
}
