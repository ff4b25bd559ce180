/// An event type's place in a supervisor's alert feed (`feed:`), checked when the catalog loads. The hub does not act
/// on it; it serves it in `GET /v1/catalog`, where the dashboard reads which events its feed shows and how severe
/// each is, so the systems' own vocabularies (`High`, `MAJOR`, a report that `FAIL`ed) meet in one scale.
///
///     feed: {severity: medium}                                              # always this severity
///     feed: {from: data.severity}                                           # the event's own, one of the levels
///     feed: {from: data.severity, values: {CRITICAL: critical, MAJOR: high, MINOR: low}}
///     feed: {from: data.status, values: {FAIL: high}, severity: info}       # FAIL is high, anything else info
///
/// The severity shown is `values` of the field's value, else that value if it names a level (any case), else
/// `severity`, else `info`.
extension CatalogBuilder {
    static let feedKeys = ["severity", "from", "values", "description"]
    static let feedLevels = ["info", "low", "medium", "high", "critical"]

    func checkFeed(_ node: CatalogNode, fields: [(key: String, value: CatalogNode)], entityTypes: [EntityType]) throws {
        let members = try node.members(allowed: Self.feedKeys)
        func member(_ key: String) -> CatalogNode? { members.first { $0.key == key }?.value }
        if let severity = member("severity") { try checkLevel(severity) }
        guard let fromNode = member("from") else {
            if let values = member("values") { throw values.error("values map the field that from names: add from (e.g. from: data.status)") }
            return
        }
        let path = try fromNode.string()
        guard path.hasPrefix("data."), case let name = String(path.dropFirst(5)), !name.isEmpty, !name.contains(".") else {
            throw fromNode.error("names a field of data, e.g. data.severity")
        }
        guard let declared = fields.first(where: { $0.key == name })?.value else {
            throw fromNode.error("names '\(path)', which data does not declare")
        }
        guard let values = member("values") else { return }
        // A status field takes the statuses of any of the type's entity types.
        let known = try listedValues(of: declared, statuses: entityTypes.flatMap { $0.statusValues ?? [] })
        for (value, level) in try values.members() {
            if let known, !known.contains(value) {
                throw level.error("'\(value)' is not a value of \(path) (\(known.joined(separator: ", ")))")
            }
            try checkLevel(level)
        }
    }

    private func checkLevel(_ node: CatalogNode) throws {
        let level = try node.string()
        guard Self.feedLevels.contains(level) else {
            throw node.error("'\(level)' is not a severity; one of \(Self.feedLevels.joined(separator: ", "))")
        }
    }
}
