/// An entity type whose stories end (`final:`, `FinalState`), checked when the catalog loads: one `data` field and
/// the values that end it, and, once every event type is declared, that some state-carrying type about the entity
/// has that field.
///
///     final: {current_status: [completed, cancelled]}
extension CatalogBuilder {
    func finalRule(_ node: CatalogNode) throws -> (field: String, values: [String]) {
        let members = try node.members()
        guard members.count == 1, let (field, valuesNode) = members.first else {
            throw node.error("names one data field and the values that end the entity's story (e.g. final: {current_status: [completed, cancelled]})")
        }
        guard field.range(of: #"^[a-z][a-z0-9_]*$"#, options: .regularExpression) != nil else {
            throw valuesNode.error("'\(field)' is not a data field name")
        }
        let values = try valuesNode.strings()
        guard !values.isEmpty, values.allSatisfy({ !$0.isEmpty }) else { throw valuesNode.error("needs at least one non-empty value") }
        guard Set(values).count == values.count else { throw valuesNode.error("lists a value twice") }
        return (field, values)
    }

    /// A `final` field no state-carrying type about the entity declares could never match: a typo, refused.
    func checkFinalFields(_ entityTypes: [EntityType], eventTypes: [EventType]) throws {
        for (name, node) in entityNodes {
            guard let entity = entityTypes.first(where: { $0.rawValue == name }), let final = entity.definition.final else { continue }
            let declarations = eventTypes.compactMap { type -> JSONValue? in
                guard type.carriesState, type.entityTypes.contains(entity) else { return nil }
                return type.definition.declaration["data"]?[final.field] ?? type.definition.declaration["for_entity"]?[name]?[final.field]
            }
            let finalNode = try node.members().first { $0.key == "final" }!.value
            guard !declarations.isEmpty else {
                throw finalNode.error("no state-carrying event type about '\(name)' declares data.\(final.field)")
            }
            // A boolean field's values are `true` or `false`; any other could never match.
            if declarations.contains(where: { $0["type"] == .string("boolean") }), !final.values.allSatisfy({ $0 == "true" || $0 == "false" }) {
                throw finalNode.error("data.\(final.field) is a boolean: its final values are true or false")
            }
        }
    }
}
