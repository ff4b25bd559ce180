/// The README's catalog tables, written from the catalog (`statushub catalog --markdown`), so the protocol
/// reference lists exactly the types the hub validates against; `CatalogReadmeTests` fails when the README's
/// copy differs from this output.
extension Catalog {
    public var markdown: String {
        var lines = [
            "| entity type | cache key | TTL (s) | status values |",
            "|---|---|---|---|",
        ]
        for type in entityTypes {
            let definition = type.definition
            let status = definition.statusValues?.joined(separator: ", ") ?? "—"
            lines.append("| `\(type.rawValue)` | `\(definition.cacheKeyTemplate)` | \(definition.ttlSeconds) | \(status) |")
        }
        lines += [
            "",
            "| `event_type` | entity types | category channel | `data` rules | cached as latest state |",
            "|---|---|---|---|---|",
        ]
        for type in eventTypes where type.isPublishable {
            let definition = type.definition
            let entities = definition.entityTypes.count == entityTypes.count && entityTypes.count > 1
                ? "any" : definition.entityTypes.map(\.rawValue).joined(separator: ", ")
            var rules = Self.ruleSummary(definition.declaration)
            if definition.lineRequired { rules = "`line` required; " + rules }
            if let claim = definition.restriction.eventClaim { rules = "only for `\(claim)`; " + rules }
            lines.append(
                "| `\(type.rawValue)` | \(entities) | `\(type.category.rawValue)` | \(rules) | \(type.carriesState ? "yes" : "no") |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `data` rules in a line: required fields first, then by name; per-entity fields after `machine:`; then the
    /// cross-field rules.
    static func ruleSummary(_ declaration: JSONValue) -> String {
        var parts: [String] = []
        if let data = declaration["data"]?.objectValue { parts.append(fieldsSummary(data)) }
        if let perEntity = declaration["for_entity"]?.objectValue {
            for (entity, fields) in perEntity.sorted(by: { $0.key < $1.key }) {
                parts.append("\(entity): " + fieldsSummary(fields.objectValue ?? [:]))
            }
        }
        if case .array(let rules)? = declaration["rules"] {
            for rule in rules {
                if case .array(let names)? = rule["less_or_equal"] {
                    parts.append(names.compactMap(\.stringValue).map { "`\($0)`" }.joined(separator: " ≤ "))
                }
                if case .array(let names)? = rule["at_least_one_of"] {
                    parts.append("at least one of " + names.compactMap(\.stringValue).map { "`\($0)`" }.joined(separator: ", "))
                }
            }
        }
        if let field = declaration["transitions"]?["field"]?.stringValue {
            parts.append("`\(field)` transitions listed (not enforced)")
        }
        if let feed = declaration["feed"] { parts.append("alert feed: " + feedSummary(feed)) }
        if let field = declaration["status_since"]?["field"]?.stringValue { parts.append("states stamped `status_since` of `\(field)`") }
        if case .array(let names)? = declaration["hold"]?["until"] {
            parts.append("holds its entity until " + names.compactMap(\.stringValue).map { "`\($0)`" }.joined(separator: ", "))
        }
        return parts.isEmpty ? "—" : parts.joined(separator: "; ")
    }

    /// `feed` in a phrase: the field whose value is the severity, its mapping, and the severity otherwise.
    private static func feedSummary(_ feed: JSONValue) -> String {
        let fixed = feed["severity"]?.stringValue
        guard let from = feed["from"]?.stringValue else { return fixed ?? "info" }
        var text = "`\(from)`"
        if let values = feed["values"]?.objectValue, !values.isEmpty {
            text += " (" + values.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value.stringValue ?? "?")" }.joined(separator: ", ") + ")"
        }
        if let fixed { text += ", else \(fixed)" }
        return text
    }

    private static func fieldsSummary(_ fields: [String: JSONValue]) -> String {
        let ordered = fields.sorted { lhs, rhs in
            let (left, right) = (lhs.value["required"] == .bool(true), rhs.value["required"] == .bool(true))
            return left != right ? left : lhs.key < rhs.key
        }
        return ordered.map { name, rule in
            let kind = kindSummary(rule)
            let required = rule["required"] == .bool(true) ? " required" : ""
            let restricted = rule["restricted"]?.stringValue.map { ", only for `\($0)`" } ?? ""
            return "`\(name)`" + (kind.isEmpty ? "" : " \(kind)") + required + restricted
        }.joined(separator: ", ")
    }

    private static func kindSummary(_ rule: JSONValue) -> String {
        if case .array(let values)? = rule["enum"] {
            return "in " + values.compactMap(\.stringValue).joined(separator: " \\| ")
        }
        let type = rule["type"]?.stringValue ?? ""
        func bound(_ key: String) -> String? { rule[key]?.numberValue.map(NumberBounds.format) }
        switch type {
        case "status": return "(status)"
        case "number", "integer":
            let whole = type == "integer" ? "whole " : ""
            switch (bound("min"), bound("max")) {
            case (let low?, let high?): return "\(whole)\(low)–\(high)"
            case (let low?, nil): return "\(whole)≥ \(low)"
            case (nil, let high?): return "\(whole)≤ \(high)"
            case (nil, nil): return type == "integer" ? "(integer)" : "(number)"
            }
        case "string":
            switch (bound("min_length"), bound("max_length")) {
            case ("1", nil): return "non-empty"
            case (let low?, let high?): return low == high ? "\(low) chars" : "\(low)–\(high) chars"
            case (let low?, nil): return "≥ \(low) chars"
            case (nil, let high?): return "≤ \(high) chars"
            case (nil, nil): return "(string)"
            }
        case "array":
            let items = rule["items"]?["type"]?.stringValue.map { "of \($0)s" } ?? ""
            let low = bound("min_items").map { " (≥ \($0))" } ?? ""
            return "(list\(items.isEmpty ? "" : " " + items)\(low))"
        case "any": return ""
        default: return "(\(type))"
        }
    }
}
