/// The catalog as `GET /v1/catalog` answers it, so dashboards and clients build their views from what the hub
/// validates against: entity types (cache key, TTL as applied, status enum), event types (category, whether they
/// carry state, entity types, line rule, `data` rules as declared) and the category channels, in load order.
extension Catalog {
    /// `ttlSeconds` gives the TTL the hub applies (the config's `cache_ttl.<name>` over the catalog's value).
    public func json(ttlSeconds: (EntityType) -> Int) -> JSONValue {
        .object([
            "entity_types": .array(entityTypes.map { entityJSON($0, ttlSeconds: ttlSeconds($0)) }),
            "event_types": .array(eventTypes.map(eventJSON)),
            "categories": .array(categories.map { category in
                var members: [String: JSONValue] = ["name": .string(category.name.rawValue)]
                members["description"] = category.description.map(JSONValue.string)
                members["latency_budget_ms"] = category.latencyBudgetMs.map { .number(Double($0)) }
                if category.conflates { members["conflates"] = .bool(true) }
                return .object(members)
            }),
            "tallies": .array(tallies.map(tallyJSON)),
        ])
    }

    /// A counter or active set: `name`, `kind`, `scope`, `entity_type`, `keys`, `when` / `until`, `ttl_seconds`.
    private func tallyJSON(_ tally: Tally) -> JSONValue {
        func condition(_ rules: [(field: String, values: [String])]) -> JSONValue {
            .object(Dictionary(uniqueKeysWithValues: rules.map { ($0.field, JSONValue.array($0.values.map(JSONValue.string))) }))
        }
        var members: [String: JSONValue] = [
            "name": .string(tally.name), "kind": .string(tally.kind.rawValue), "scope": .string(tally.scope.rawValue),
            "entity_type": .string(tally.entityType), "keys": .array(tally.keys.map(JSONValue.string)),
        ]
        if tally.kind == .counter { members["when"] = condition(tally.when) }
        members["until"] = tally.until.map(condition)
        members["ttl_seconds"] = tally.ttlSeconds.map { .number(Double($0)) }
        return .object(members)
    }

    private func entityJSON(_ type: EntityType, ttlSeconds: Int) -> JSONValue {
        let definition = type.definition
        var members: [String: JSONValue] = [
            "name": .string(definition.name),
            "cache_key": .string(definition.cacheKeyTemplate),
            "ttl_seconds": .number(Double(ttlSeconds)),
            "example_ids": .array(definition.exampleIDs.map(JSONValue.string)),
        ]
        members["description"] = definition.description.map(JSONValue.string)
        members["status"] = definition.statusValues.map { .array($0.map(JSONValue.string)) }
        members["final"] = definition.final.map { .object([$0.field: .array($0.values.map(JSONValue.string))]) }
        members["id_pattern"] = definition.idRule.map { .string($0.pattern) }
        return .object(members)
    }

    /// The declaration as written (`data`, `for_entity`, `rules`, `transitions`, `seed`, …) without its examples,
    /// with the resolved facts over it: `entity_types: any` listed out, the defaults of `carries_state` and `line`.
    private func eventJSON(_ type: EventType) -> JSONValue {
        let definition = type.definition
        var members = definition.declaration.objectValue ?? [:]
        members["name"] = .string(definition.name)
        members["category"] = .string(definition.category.rawValue)
        members["carries_state"] = .bool(definition.carriesState)
        members["publishable"] = .bool(definition.publishable)
        members["entity_types"] = .array(definition.entityTypes.map { .string($0.rawValue) })
        members["line"] = .string(definition.lineRequired ? "required" : "optional")
        return .object(members)
    }
}
