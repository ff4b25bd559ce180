/// A state that holds its entity until a releasing event comes, declared on its event type in the catalog:
///
///     material_lot_quarantined:
///       carries_state: true
///       hold: {until: [material_lot_released]}
///
/// While an entity's cached state is of a holding type, a state event of any other type that is not in its `until`
/// list does not replace it: it is stored and published as news about the entity, marked `"held":true` (as a late
/// one is marked `"late":true`), and the hold, its source rank, tallies and status date stay. A quarantined lot
/// inspected again is still quarantined until it is released; a screen that showed the inspection as the lot's
/// state would have put a held lot back in use. The holding type itself replaces its own hold (a quarantine's
/// quantity corrected); a type in `until` replaces it and lifts it. A holding state does not expire
/// (`HubConfig.CacheTTL.seconds(for:)`): a hold is lifted by a release, never by a quiet day.
///
/// The engines check it in the same atomic step that would write the state (the memory engine's lock, the append
/// script), as they check source order.
public struct StateHold: Sendable, Equatable {
    /// The hold an event's state puts on its entity: its own type's name, when that type holds this entity type.
    public let sets: String?
    /// The holds its state may replace: its own, and those whose `until` names its type.
    public let passes: [String]

    public init(sets: String?, passes: [String]) {
        self.sets = sets
        self.passes = passes
    }

    /// Whether a state of this rule's event may replace one that holds its entity with `hold` (nil: none).
    public func mayReplace(heldBy hold: String?) -> Bool {
        guard let hold else { return true }
        return passes.contains(hold)
    }

    /// Per entity type under some hold, the rule of each state-carrying type that may name it. Entity types no hold
    /// names have none: their events skip the check.
    static func rules(eventTypes: [EventType]) -> [String: [String: StateHold]] {
        let holding = eventTypes.filter { $0.definition.holdUntil != nil }
        var rules: [String: [String: StateHold]] = [:]
        for entityType in Set(holding.flatMap(\.entityTypes)) {
            let holds = holding.filter { $0.entityTypes.contains(entityType) }
            for type in eventTypes where type.carriesState && type.entityTypes.contains(entityType) {
                let sets = holds.contains(type) ? type.rawValue : nil
                let released = holds.filter { $0.definition.holdUntil?.contains(type.rawValue) == true }.map(\.rawValue)
                rules[entityType.rawValue, default: [:]][type.rawValue] = StateHold(sets: sets, passes: (sets.map { [$0] } ?? []) + released)
            }
        }
        return rules
    }
}

extension Catalog {
    /// The hold rule of `eventType`'s states about `entityType`, nil when no hold applies to that entity type.
    public func hold(of eventType: EventType, on entityType: EntityType) -> StateHold? {
        guard !holdRules.isEmpty else { return nil }
        return holdRules[entityType.rawValue]?[eventType.rawValue]
    }
}
