import Foundation
import Yams

/// Collects the declarations of every catalog file, then resolves them into a `Catalog`: names are checked for
/// clashes across files, event types' references to entity types and categories are resolved, and `data` rules
/// are compiled per entity type (`type: status` becomes that entity type's status enum).
struct CatalogBuilder {
    private(set) var entityNodes: [(name: String, node: CatalogNode)] = []
    private var categoryNodes: [(name: String, node: CatalogNode)] = []
    private(set) var eventNodes: [(name: String, node: CatalogNode)] = []
    private var tallyNodes: [(name: String, kind: Tally.Kind, node: CatalogNode)] = []
    /// `entity_types.machine` → the file that declared it, to name both files of a clash.
    private var declaredIn: [String: String] = [:]

    static let fileKeys = ["seed", "description", "entity_types", "categories", "event_types", "counters", "active_sets"]
    static let counterKeys = ["description", "seed", "key", "entity_type", "when", "ttl_seconds"]
    static let setKeys = ["description", "seed", "keys", "entity_type", "until"]
    static let entityKeys = ["description", "seed", "cache_key", "ttl_seconds", "status", "id_pattern", "example_ids", "final"]
    static let categoryKeys = ["description", "seed"]
    static let eventKeys = [
        "description", "seed", "category", "carries_state", "entity_types", "line", "data", "for_entity", "rules",
        "transitions", "example_valid", "example_invalid", "published_by", "restricted", "feed", "status_since",
        "hold",
    ]
    static let fieldKeys = [
        "description", "type", "required", "enum", "min", "max", "min_length", "max_length", "fields", "items",
        "min_items", "max_items", "restricted",
    ]
    static let fieldTypes = ["string", "number", "integer", "boolean", "timestamp", "object", "array", "status", "any"]
    /// Names the hub uses itself: `line` addresses line channels (`line:Line-2:…`).
    static let reservedEntityNames: Set<String> = ["line"]

    mutating func read(_ source: (path: String, text: String)) throws {
        let root: CatalogNode
        do {
            guard let node = try Yams.compose(yaml: source.text) else { return }
            root = CatalogNode(node: node, file: source.path, path: "")
        } catch let error as CatalogError {
            throw error
        } catch {
            throw CatalogError(file: source.path, path: "", reason: "not valid YAML: \(error)")
        }
        for (key, section) in try root.members(allowed: Self.fileKeys) {
            switch key {
            case "entity_types": entityNodes += try declarations(section, kind: key)
            case "categories": categoryNodes += try declarations(section, kind: key)
            case "event_types": eventNodes += try declarations(section, kind: key)
            case "counters": tallyNodes += try declarations(section, kind: key).map { ($0.name, .counter, $0.node) }
            case "active_sets": tallyNodes += try declarations(section, kind: key).map { ($0.name, .set, $0.node) }
            default: _ = try section.string()
            }
        }
    }

    private mutating func declarations(_ section: CatalogNode, kind: String) throws -> [(name: String, node: CatalogNode)] {
        if section.isNull { return [] }
        return try section.members().map { name, node in
            let id = "\(kind).\(name)"
            if let first = declaredIn[id] {
                throw node.error("declared twice: already in \(first)")
            }
            declaredIn[id] = node.file
            let rule = kind == "categories" ? #"^[a-z0-9][a-z0-9_-]*$"# : #"^[a-z][a-z0-9_]*$"#
            guard name.utf8.count <= ChannelName.maxSegmentLength, name.range(of: rule, options: .regularExpression) != nil else {
                throw node.error(
                    kind == "categories"
                        ? "a category name is lowercase letters, digits, '-' and '_' (it is a channel segment)"
                        : "a name is lowercase letters, digits and '_', starting with a letter (it appears in channels and config keys)")
            }
            return (name, node)
        }
    }

    func build(sources: [(path: String, text: String)]) throws -> Catalog {
        var entityTypes: [EntityType] = []
        for (name, node) in entityNodes { entityTypes.append(try entityType(name, node, after: entityTypes)) }
        let entityByName = Dictionary(uniqueKeysWithValues: entityTypes.map { ($0.rawValue, $0) })

        var categories: [Catalog.Category] = []
        for (name, node) in categoryNodes {
            var description: String?
            var budget: Int?
            var conflates = false
            if !node.isNull {
                for (key, value) in try node.members(allowed: Self.categoryKeys + ["latency_budget_ms", "conflates"]) {
                    switch key {
                    case "description": description = try value.string()
                    case "conflates": conflates = try value.bool()
                    case "latency_budget_ms":
                        let number = try value.number()
                        guard number >= 1, number <= 3_600_000, number.rounded() == number else {
                            throw value.error("latency_budget_ms must be a whole number of milliseconds from 1 to 3600000")
                        }
                        budget = Int(number)
                    default: break
                    }
                }
            }
            categories.append(Catalog.Category(
                name: EventCategory(rawValue: name), description: description, latencyBudgetMs: budget, conflates: conflates))
        }

        var eventTypes: [EventType] = []
        for (name, node) in eventNodes {
            guard name != EventType.statusStaleName else {
                throw node.error("is the hub's own event type (sent when a cached state expires); a catalog cannot declare it")
            }
            eventTypes.append(try eventType(name, node, entityTypes: entityTypes, entityByName: entityByName, categories: categories))
        }
        guard !entityTypes.isEmpty, !eventTypes.isEmpty else {
            throw CatalogError(file: sources.last?.path ?? "catalog", path: "", reason: "the catalog declares no entity types or no event types")
        }
        try checkHoldReleases(eventTypes)
        try checkFinalFields(entityTypes, eventTypes: eventTypes)
        eventTypes.append(Self.statusStale(entityTypes: entityTypes))
        var tallies: [Tally] = []
        for (name, kind, node) in tallyNodes {
            let tally = try self.tally(name, kind: kind, node, entityByName: entityByName)
            if tally.kind == .counter {
                for other in tallies where other.kind == .counter && other.keys == tally.keys {
                    throw node.error("counts under the same key as counter '\(other.name)'")
                }
            }
            tallies.append(tally)
        }
        return Catalog(entityTypes: entityTypes, eventTypes: eventTypes, categories: categories, tallies: tallies, sources: sources)
    }

    /// `status_stale`: on any entity type, never publishable, never state; it travels on the channels of the
    /// state that expired (`StaleEvent`), so its category is nominal.
    private static func statusStale(entityTypes: [EntityType]) -> EventType {
        EventType(EventType.Definition(
            name: EventType.statusStaleName,
            description: "Sent by the hub when an entity's cached state expires; publishers cannot send it.",
            category: .resourceStatus, carriesState: false, publishable: false, lineRequired: false, entityTypes: entityTypes,
            schemas: entityTypes.map { DataSchema(fields: [], rules: [], entityName: $0.rawValue) },
            declaration: .object(["published_by": .string("hub")]), validExamples: [], invalidExamples: []))
    }

    // MARK: entity types

    private func entityType(_ name: String, _ node: CatalogNode, after earlier: [EntityType]) throws -> EntityType {
        guard !Self.reservedEntityNames.contains(name) else {
            throw node.error("'\(name)' is reserved: line channels are line:<line>:…")
        }
        var description: String?
        var template: String?
        var ttl: Int?
        var status: [String]?
        var idRule: EntityIDRule?
        var examples: [String] = []
        var final: (field: String, values: [String])?
        for (key, value) in try node.members(allowed: Self.entityKeys) {
            switch key {
            case "description": description = try value.string()
            case "cache_key": template = try value.string()
            case "ttl_seconds":
                ttl = try value.integer()
                guard ttl! >= 0 else { throw value.error("must not be negative (0: the state never expires)") }
            case "status":
                let values = try value.strings()
                guard !values.isEmpty else { throw value.error("a status enum needs at least one value") }
                guard Set(values).count == values.count else { throw value.error("lists a value twice") }
                status = values
            case "id_pattern":
                let pattern = try value.string()
                do { idRule = try EntityIDRule(pattern: pattern) } catch { throw value.error("not a valid regular expression") }
            case "example_ids":
                examples = try value.strings()
            case "final":
                final = try finalRule(value)
            default:
                _ = try value.string()
            }
        }
        guard let template else { throw node.error("cache_key is required (e.g. \"resource:\(name):{id}\")") }
        let keyNode = try node.members().first { $0.key == "cache_key" }!.value
        let prefix = template.dropLast(EntityType.idPlaceholder.count)
        guard template.hasSuffix(EntityType.idPlaceholder), !prefix.isEmpty, !prefix.contains("{"),
            prefix.utf8.allSatisfy({ ChannelName.isSegmentByte($0) || $0 == UInt8(ascii: ":") })
        else {
            throw keyNode.error("must be a key prefix of A-Z a-z 0-9 . _ - : ending in {id} (e.g. \"resource:\(name):{id}\")")
        }
        guard !prefix.hasPrefix("statushub:") else { throw keyNode.error("keys under statushub: are the hub's own") }
        for other in earlier where other.cacheKeyPrefix.hasPrefix(prefix) || prefix.hasPrefix(other.cacheKeyPrefix) {
            throw keyNode.error("overlaps the cache keys of entity type '\(other.rawValue)' (\(other.definition.cacheKeyTemplate)); a snapshot could not tell them apart")
        }
        guard let ttl else { throw node.error("ttl_seconds is required (cache_ttl.\(name) in the config overrides it)") }
        return EntityType(EntityType.Definition(
            name: name, description: description, cacheKeyTemplate: template, ttlSeconds: ttl, statusValues: status,
            idRule: idRule, exampleIDs: examples, final: final))
    }

    // MARK: event types

    private func eventType(
        _ name: String, _ node: CatalogNode, entityTypes: [EntityType], entityByName: [String: EntityType],
        categories: [Catalog.Category]
    ) throws -> EventType {
        let members = try node.members(allowed: Self.eventKeys)
        func member(_ key: String) -> CatalogNode? { members.first { $0.key == key }?.value }

        guard let categoryNode = member("category") else {
            throw node.error("category is required: every event type names the category channel it is published on")
        }
        let categoryName = try categoryNode.string()
        guard categories.contains(where: { $0.name.rawValue == categoryName }) else {
            throw categoryNode.error("unknown category '\(categoryName)'; declared: \(categories.map(\.name.rawValue).joined(separator: ", "))")
        }
        guard let entityNode = member("entity_types") else {
            throw node.error("entity_types is required: a list of entity type names, or 'any'")
        }
        var allowed: [EntityType] = []
        if case .scalar = entityNode.node, try entityNode.string() == "any" {
            allowed = entityTypes
        } else {
            for item in try entityNode.list() {
                let entityName = try item.string()
                guard let type = entityByName[entityName] else {
                    throw item.error("unknown entity type '\(entityName)'; declared: \(entityTypes.map(\.rawValue).joined(separator: ", "))")
                }
                guard !allowed.contains(type) else { throw item.error("lists '\(entityName)' twice") }
                allowed.append(type)
            }
            guard !allowed.isEmpty else { throw entityNode.error("names no entity type") }
        }
        let carriesState = try member("carries_state")?.bool() ?? false
        var lineRequired = false
        if let lineNode = member("line") {
            switch try lineNode.string() {
            case "required": lineRequired = true
            case "optional": lineRequired = false
            default: throw lineNode.error("must be 'required' or 'optional'")
            }
        }

        let dataFields = try member("data").map { try $0.members() } ?? []
        var perEntity: [String: [(key: String, value: CatalogNode)]] = [:]
        if let forEntity = member("for_entity") {
            for (entityName, fields) in try forEntity.members() {
                guard let type = entityByName[entityName], allowed.contains(type) else {
                    throw fields.error("'\(entityName)' is not one of this event type's entity types (\(allowed.map(\.rawValue).joined(separator: ", ")))")
                }
                perEntity[entityName] = try fields.members()
            }
        }
        let rules = try member("rules").map { try crossFieldRules($0, fields: dataFields) } ?? []
        if let transitions = member("transitions") { try checkTransitions(transitions, fields: dataFields, entityTypes: allowed) }
        if let feed = member("feed") { try checkFeed(feed, fields: dataFields + perEntity.values.joined(), entityTypes: allowed) }
        if let statusSince = member("status_since") { try checkStatusSince(statusSince, fields: dataFields, carriesState: carriesState) }
        if let hold = member("hold") { try checkHold(hold, name: name, carriesState: carriesState) }

        var restrictedFields: [String: [Restriction.Field]] = [:]
        for type in allowed {
            for (fieldName, fieldNode) in dataFields + (perEntity[type.rawValue] ?? []) {
                guard let claimNode = try fieldNode.members().first(where: { $0.key == "restricted" })?.value else { continue }
                restrictedFields[type.rawValue, default: []].append(Restriction.Field(name: fieldName, claim: try claim(claimNode)))
            }
        }
        let restrictedTo = try member("restricted").map(claim)

        var schemas: [DataSchema] = []
        for type in allowed {
            var fields: [FieldRule] = []
            for (fieldName, fieldNode) in dataFields + (perEntity[type.rawValue] ?? []) {
                guard !fields.contains(where: { $0.name == fieldName }) else {
                    throw fieldNode.error("declared twice for entity type '\(type.rawValue)'")
                }
                fields.append(try fieldRule(fieldName, fieldNode, parentPath: "data", entityType: type))
            }
            schemas.append(DataSchema(fields: fields, rules: rules, entityName: type.rawValue))
        }

        var valid: [JSONValue] = []
        if let examples = member("example_valid") {
            let items = if case .sequence = examples.node { try examples.list() } else { [examples] }
            for item in items {
                guard case .object = try item.json() else { throw item.error("an example is an event: a mapping") }
                valid.append(try item.json())
            }
        }
        var invalid: [JSONValue] = []
        if let examples = member("example_invalid") {
            for item in try examples.list() {
                let parts = try item.members(allowed: ["field", "event", "description"])
                guard let field = parts.first(where: { $0.key == "field" }), let event = parts.first(where: { $0.key == "event" }),
                    case .object = try event.value.json()
                else { throw item.error("an invalid example is {field: <the field refused>, event: {…}}") }
                invalid.append(.object(["field": .string(try field.value.string()), "event": try event.value.json()]))
            }
        }
        var declaration = try node.json()
        if case .object(var object) = declaration {
            object["example_valid"] = nil
            object["example_invalid"] = nil
            declaration = .object(object)
        }
        return EventType(EventType.Definition(
            name: name, description: try member("description")?.string(), category: EventCategory(rawValue: categoryName),
            carriesState: carriesState, publishable: try publishable(member("published_by")), lineRequired: lineRequired, entityTypes: allowed,
            schemas: schemas, declaration: declaration, validExamples: valid, invalidExamples: invalid,
            restriction: Restriction(eventClaim: restrictedTo, fields: restrictedFields)))
    }

    /// A claim a subscriber token must carry (`see: [pii]`) to receive what it guards.
    private func claim(_ node: CatalogNode) throws -> String {
        let name = try node.string()
        guard name.range(of: #"^[a-z][a-z0-9_-]{0,63}$"#, options: .regularExpression) != nil else {
            throw node.error("a claim is lowercase letters, digits, '_' and '-', starting with a letter (e.g. pii)")
        }
        return name
    }

    /// `published_by: hub` marks an event type only the hub sends (`counter_changed`); publishers are refused it.
    private func publishable(_ node: CatalogNode?) throws -> Bool {
        guard let node else { return true }
        switch try node.string() {
        case "hub": return false
        case "publishers": return true
        default: throw node.error("must be 'hub' or 'publishers'")
        }
    }

    // MARK: tallies

    private func tally(_ name: String, kind: Tally.Kind, _ node: CatalogNode, entityByName: [String: EntityType]) throws -> Tally {
        let members = try node.members(allowed: kind == .counter ? Self.counterKeys : Self.setKeys)
        func member(_ key: String) -> CatalogNode? { members.first { $0.key == key }?.value }
        guard let entityNode = member("entity_type") else { throw node.error("entity_type is required") }
        let entityName = try entityNode.string()
        guard entityByName[entityName] != nil else {
            throw entityNode.error("unknown entity type '\(entityName)'; declared: \(entityByName.keys.sorted().joined(separator: ", "))")
        }
        var keys: [String] = []
        if kind == .counter {
            guard let keyNode = member("key") else { throw node.error("key is required (e.g. \"stats:line:{line}:\(name)\")") }
            keys = [try keyNode.string()]
            let template = keys[0]
            guard !(template.contains("{line}") && template.contains("{shift}")) else {
                throw keyNode.error("a counter is per line or per shift, not both")
            }
            let stripped = template.replacingOccurrences(of: "{line}", with: "").replacingOccurrences(of: "{shift}", with: "")
            guard !stripped.contains("{"), !stripped.contains("}") else {
                throw keyNode.error("a counter key names only {line} or {shift}")
            }
        } else {
            guard let keysNode = member("keys") else { throw node.error("keys is required (e.g. [\"allocation:operator:{operator_id}:active\"])") }
            keys = try keysNode.strings()
            guard !keys.isEmpty else { throw keysNode.error("names no key") }
        }
        for key in keys where key.isEmpty || key.contains(where: { " \t=~".contains($0) }) || key.hasPrefix("statushub:") {
            throw node.error("key '\(key)' must be non-empty, without spaces, tabs, '=' or '~', and not under statushub:")
        }
        func condition(_ node: CatalogNode) throws -> [(field: String, values: [String])] {
            let fields = try node.members()
            guard !fields.isEmpty else { throw node.error("names no field") }
            return try fields.map { field, values in
                let list = try values.strings()
                guard !list.isEmpty else { throw values.error("lists no value") }
                return (field, list)
            }
        }
        var when: [(field: String, values: [String])] = []
        if kind == .counter {
            guard let whenNode = member("when") else { throw node.error("when is required: {<data field>: [values]} that count") }
            when = try condition(whenNode)
        }
        let until = try member("until").map(condition)
        if kind == .set, until == nil { throw node.error("until is required: {<data field>: [values]} that end the membership") }
        var ttl: Int?
        if let ttlNode = member("ttl_seconds") {
            ttl = try ttlNode.integer()
            guard ttl! > 0 else { throw ttlNode.error("must be positive (leave it out for no expiry)") }
        }
        return Tally(name: name, kind: kind, keys: keys, entityType: entityName, when: when, until: until, ttlSeconds: ttl)
    }

    // MARK: fields

    private func fieldRule(_ name: String, _ node: CatalogNode, parentPath: String, entityType: EntityType) throws -> FieldRule {
        guard !name.isEmpty, name.utf8.count <= 64 else { throw node.error("a field name is 1-64 characters") }
        let members = try node.members(allowed: Self.fieldKeys)
        if parentPath != "data", let restricted = members.first(where: { $0.key == "restricted" }) {
            throw restricted.value.error("only a top-level field of data can be restricted")
        }
        let required = try members.first { $0.key == "required" }?.value.bool() ?? false
        return FieldRule(name: name, path: "\(parentPath).\(name)", required: required, kind: try fieldKind(node, members, entityType: entityType))
    }

    private func fieldKind(_ node: CatalogNode, _ members: [(key: String, value: CatalogNode)], entityType: EntityType) throws -> FieldKind {
        func member(_ key: String) -> CatalogNode? { members.first { $0.key == key }?.value }
        func refuse(_ keys: [String], for type: String) throws {
            for key in keys { if let value = member(key) { throw value.error("does not apply to type \(type)") } }
        }
        let declaredType = try member("type")?.string()
        if let values = member("enum") {
            guard declaredType == nil || declaredType == "string" else { throw values.error("an enum is a list of strings; type must be absent or string") }
            let list = try values.strings()
            guard !list.isEmpty else { throw values.error("an enum needs at least one value") }
            guard Set(list).count == list.count else { throw values.error("lists a value twice") }
            try refuse(["min", "max", "min_length", "max_length", "fields", "items", "min_items", "max_items"], for: "enum")
            return .enumeration(list, list: list.joined(separator: ", "))
        }
        guard let type = declaredType else {
            throw node.error("needs a type (\(Self.fieldTypes.joined(separator: ", "))) or an enum")
        }
        switch type {
        case "status":
            try refuse(["min", "max", "min_length", "max_length", "fields", "items", "min_items", "max_items"], for: type)
            guard let values = entityType.statusValues else {
                throw member("type")!.error("'status' is the entity type's status enum, and entity type '\(entityType.rawValue)' declares none")
            }
            return .enumeration(values, list: values.joined(separator: ", "))
        case "number", "integer":
            try refuse(["min_length", "max_length", "fields", "items", "min_items", "max_items"], for: type)
            let bounds = NumberBounds(minimum: try member("min")?.number(), maximum: try member("max")?.number(), integer: type == "integer")
            if let low = bounds.minimum, let high = bounds.maximum, low > high { throw member("min")!.error("is greater than max") }
            return .number(bounds)
        case "string":
            try refuse(["min", "max", "fields", "items", "min_items", "max_items"], for: type)
            return .string(try lengthBounds(member("min_length"), member("max_length")))
        case "boolean", "timestamp", "any":
            try refuse(["min", "max", "min_length", "max_length", "fields", "items", "min_items", "max_items"], for: type)
            return type == "boolean" ? .boolean : type == "timestamp" ? .timestamp : .any
        case "object":
            try refuse(["min", "max", "min_length", "max_length", "items", "min_items", "max_items"], for: type)
            var fields: [FieldRule] = []
            for (name, child) in try member("fields")?.members() ?? [] {
                fields.append(try fieldRule(name, child, parentPath: "", entityType: entityType))
            }
            return .object(fields)
        case "array":
            try refuse(["min", "max", "min_length", "max_length", "fields"], for: type)
            var items: FieldKind?
            if let itemNode = member("items") {
                let itemMembers = try itemNode.members(allowed: Self.fieldKeys.filter { $0 != "required" })
                items = try fieldKind(itemNode, itemMembers, entityType: entityType)
            }
            return .array(items: items, count: try lengthBounds(member("min_items"), member("max_items")))
        default:
            throw member("type")!.error("unknown type '\(type)'; known: \(Self.fieldTypes.joined(separator: ", "))")
        }
    }

    private func lengthBounds(_ minimum: CatalogNode?, _ maximum: CatalogNode?) throws -> LengthBounds {
        let bounds = LengthBounds(minimum: try minimum?.integer(), maximum: try maximum?.integer())
        if let low = bounds.minimum, low < 0 { throw minimum!.error("must not be negative") }
        if let low = bounds.minimum, let high = bounds.maximum, low > high { throw minimum!.error("is greater than the maximum") }
        return bounds
    }

    // MARK: rules across fields

    private func crossFieldRules(_ node: CatalogNode, fields: [(key: String, value: CatalogNode)]) throws -> [CrossFieldRule] {
        try node.list().map { item in
            let members = try item.members()
            let kinds = members.filter { $0.key != "description" }
            guard kinds.count == 1, let (kind, argument) = kinds.first else {
                throw item.error("a rule is one of \(CrossFieldRule.kinds.joined(separator: ", ")), e.g. {less_or_equal: [a, b]}")
            }
            guard CrossFieldRule.kinds.contains(kind) else {
                throw argument.error("unknown rule '\(kind)'; known: \(CrossFieldRule.kinds.joined(separator: ", "))")
            }
            let names = try argument.strings()
            switch kind {
            case "less_or_equal":
                guard names.count == 2 else { throw argument.error("names exactly two fields: [smaller, larger]") }
                for name in names {
                    guard let declared = try declaredField(name, in: fields) else {
                        throw argument.error("names '\(name)', which data does not declare")
                    }
                    let type = try declared.members().first { $0.key == "type" }?.value.string()
                    guard type == "number" || type == "integer" else { throw argument.error("'\(name)' must be a number or integer field") }
                }
                return .lessOrEqual(names[0], names[1])
            case "at_least_one_of":
                for name in names where !fields.contains(where: { $0.key == name }) {
                    throw argument.error("names '\(name)', which data does not declare")
                }
                guard names.count >= 2 else { throw argument.error("names two or more fields") }
                return .atLeastOneOf(names)
            default:
                throw argument.error("unknown rule '\(kind)'; known: \(CrossFieldRule.kinds.joined(separator: ", "))")
            }
        }
    }

    /// The declaration of `name`, a field of `data` or, by its dotted path (`serial_range.start`), a field of an
    /// object inside it; nil when none is declared.
    private func declaredField(_ name: String, in fields: [(key: String, value: CatalogNode)]) throws -> CatalogNode? {
        if let field = fields.first(where: { $0.key == name }) { return field.value }
        var level = fields
        var found: CatalogNode?
        for component in name.split(separator: ".", omittingEmptySubsequences: false).map(String.init) {
            guard let field = level.first(where: { $0.key == component }) else { return nil }
            found = field.value
            level = try field.value.members().first { $0.key == "fields" }?.value.members() ?? []
        }
        return found
    }

    /// `transitions: {field: status, allowed: {OPEN: [IN_PROGRESS, CANCELLED], …}}`: a state machine recorded as
    /// data (dashboards read it from `GET /v1/catalog`). Checked for consistency here; not yet enforced on
    /// ingest, which needs each entity's previous state (issue 10 §3).
    /// The values a `data` field can take when the catalog lists them: its `enum`, or `statuses` for a `status` field.
    func listedValues(of declared: CatalogNode, statuses: [String]?) throws -> [String]? {
        let members = try declared.members()
        if let list = members.first(where: { $0.key == "enum" })?.value { return try list.strings() }
        if try members.first(where: { $0.key == "type" })?.value.string() == "status" { return statuses }
        return nil
    }

    private func checkTransitions(_ node: CatalogNode, fields: [(key: String, value: CatalogNode)], entityTypes: [EntityType]) throws {
        let members = try node.members(allowed: ["field", "allowed", "initial", "enforced", "description"])
        guard let fieldNode = members.first(where: { $0.key == "field" })?.value, let allowedNode = members.first(where: { $0.key == "allowed" })?.value else {
            throw node.error("transitions need field (an enum field of data) and allowed ({state: [next states]})")
        }
        let field = try fieldNode.string()
        guard let declared = fields.first(where: { $0.key == field })?.value else { throw fieldNode.error("names '\(field)', which data does not declare") }
        guard let values = try listedValues(of: declared, statuses: entityTypes.first?.statusValues) else {
            throw fieldNode.error("'\(field)' must be an enum or status field")
        }
        for (state, next) in try allowedNode.members() {
            guard values.contains(state) else { throw next.error("'\(state)' is not a value of \(field)") }
            for target in try next.strings() where !values.contains(target) {
                throw next.error("'\(target)' is not a value of \(field)")
            }
        }
        if let initial = members.first(where: { $0.key == "initial" })?.value {
            let state = try initial.string()
            guard values.contains(state) else { throw initial.error("'\(state)' is not a value of \(field)") }
        }
        if let enforced = members.first(where: { $0.key == "enforced" })?.value, try enforced.bool() {
            throw enforced.error("enforcing transitions is not implemented yet: it needs the entity's previous state at ingest")
        }
    }
}

