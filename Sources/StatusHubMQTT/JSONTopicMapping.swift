import Foundation
import StatusHubCore

/// One `mqtt.topics` entry, checked against the catalog and compiled: the MQTT filter to subscribe, and the way
/// from a matching topic and its JSON payload to an event envelope.
struct JSONTopicMapping: Sendable {
    enum Level: Sendable, Equatable {
        case literal(String)
        case name(String)
    }

    let config: HubConfig.TopicMapping
    let levels: [Level]

    /// The filter to subscribe: each `{name}` level becomes `+`.
    var filter: String {
        levels.map { level in
            switch level {
            case .literal(let text): text
            case .name: "+"
            }
        }.joined(separator: "/")
    }

    /// Throws `ConfigError` naming the entry (`mqtt.topics[2].entity_id`) and what is wrong with it.
    init(_ config: HubConfig.TopicMapping, position: Int, catalog: Catalog) throws {
        let label = "mqtt.topics[\(position)]"
        self.config = config
        let parts = config.topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var levels: [Level] = []
        for part in parts {
            if part.hasPrefix("{"), part.hasSuffix("}"), part.count > 2 {
                levels.append(.name(String(part.dropFirst().dropLast())))
            } else if part.contains("+") || part.contains("#") || part.contains("{") || part.contains("}") {
                throw ConfigError(description: "config: \(label).topic level '\(part)' must be literal or one {name}; wildcards come from the names")
            } else {
                levels.append(.literal(part))
            }
        }
        guard !config.topic.isEmpty, !config.topic.hasPrefix("$") else {
            throw ConfigError(description: "config: \(label).topic must be a non-empty topic outside $SYS and $share")
        }
        self.levels = levels
        let known = Set(levels.compactMap { if case .name(let name) = $0 { name } else { nil } })
        for (field, template) in [("entity_id", config.entityId), ("line", config.line ?? "")] {
            for name in TopicTemplate.names(in: template) where !known.contains(name) {
                throw ConfigError(description: "config: \(label).\(field) uses {\(name)}, which the topic does not name; it names: \(known.sorted().joined(separator: ", "))")
            }
        }
        guard let eventType = catalog.publishableEventType(named: config.eventType) else {
            throw ConfigError(description: "config: \(label).event_type '\(config.eventType)' is not in the catalog; known: \(catalog.publishableList)")
        }
        guard let entityType = catalog.entityType(named: config.entityType) else {
            throw ConfigError(description: "config: \(label).entity_type '\(config.entityType)' is not in the catalog; known: \(catalog.entityTypeList)")
        }
        try CatalogAgreement.check(entityType, carries: eventType, label: label, eventKey: "event_type")
        for (field, renames) in config.values.sorted(by: { $0.key < $1.key }) {
            for (payloadValue, value) in renames.sorted(by: { $0.key < $1.key }) {
                try CatalogAgreement.check(
                    .string(value), asField: field, of: eventType, for: entityType, key: "\(label).values.\(field).\(payloadValue)")
            }
        }
    }

    /// The topic's names when it matches this mapping.
    func match(_ topic: String) -> [String: String]? {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == levels.count else { return nil }
        var names: [String: String] = [:]
        for (level, part) in zip(levels, parts) {
            switch level {
            case .literal(let text): guard part == text else { return nil }
            case .name(let name): names[name] = String(part)
            }
        }
        return names
    }

    enum Mapped {
        case event(JSONValue, hasSourceTimestamp: Bool)
        case refused(String)
    }

    /// The envelope for one message: the payload object (fields and values renamed) as `data`, its `timestamp`
    /// (if any) as the event's, the topic's names in `entity_id` and `line`.
    func map(topic: String, names: [String: String], payload: [UInt8], receivedAt: Date) -> Mapped {
        let value: JSONValue
        do {
            value = try JSONValue.parse(payload)
        } catch {
            return .refused("payload is not JSON: \(error)")
        }
        guard case .object(let members) = value else {
            return .refused("payload must be a JSON object, got \(value.typeName)")
        }
        var data: [String: JSONValue] = [:]
        var timestamp: JSONValue?
        for (field, value) in members {
            if field == "timestamp" {
                timestamp = value
                continue
            }
            let name = config.fields[field] ?? field
            if let renames = config.values[name], case .string(let text) = value, let renamed = renames[text] {
                data[name] = .string(renamed)
            } else {
                data[name] = value
            }
        }
        var envelope: [String: JSONValue] = [
            "event_type": .string(config.eventType),
            "entity_type": .string(config.entityType),
            "entity_id": .string(TopicTemplate.fill(config.entityId, with: names)),
            "timestamp": timestamp ?? .string(receivedAt.formatted(Self.iso8601)),
            "data": .object(data),
            "metadata": .object(["source": .string("mqtt"), "triggered_by": .string(String(topic.prefix(256)))]),
        ]
        if let line = config.line { envelope["line"] = .string(TopicTemplate.fill(line, with: names)) }
        return .event(.object(envelope), hasSourceTimestamp: timestamp != nil)
    }

    private static let iso8601 = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}
