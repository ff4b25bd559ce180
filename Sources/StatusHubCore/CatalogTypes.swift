import Foundation

/// A kind of entity the hub tracks, as a catalog declares it (`config/catalog/`): its id rule, cache key, TTL and
/// status enum. Two entity types are the same when their names are; the definition travels with the value, so
/// the hot path (cache key, TTL) never looks anything up.
public struct EntityType: Hashable, Sendable, CustomStringConvertible {
    public let definition: Definition

    public final class Definition: Sendable {
        public let name: String
        public let description: String?
        /// The cache key template as declared (`resource:machine:{id}`), and what precedes `{id}`.
        public let cacheKeyTemplate: String
        public let cacheKeyPrefix: String
        /// Default latest-state TTL in seconds; `cache_ttl.<name>` overrides it.
        public let ttlSeconds: Int
        /// `current_status` / `previous_status` values; nil where the entity has none.
        public let statusValues: [String]?
        /// An optional rule on top of the channel-segment rule every id obeys.
        public let idRule: EntityIDRule?
        public let exampleIDs: [String]
        /// The `data` field and values that make a state its entity's last (`final:`, `FinalState`); nil: none does.
        public let final: (field: String, values: [String])?

        init(
            name: String, description: String?, cacheKeyTemplate: String, ttlSeconds: Int, statusValues: [String]?,
            idRule: EntityIDRule?, exampleIDs: [String], final: (field: String, values: [String])? = nil
        ) {
            self.name = name
            self.description = description
            self.cacheKeyTemplate = cacheKeyTemplate
            self.cacheKeyPrefix = String(cacheKeyTemplate.dropLast(EntityType.idPlaceholder.count))
            self.ttlSeconds = ttlSeconds
            self.statusValues = statusValues
            self.idRule = idRule
            self.exampleIDs = exampleIDs
            self.final = final
        }
    }

    init(_ definition: Definition) { self.definition = definition }

    static let idPlaceholder = "{id}"

    public var rawValue: String { definition.name }
    public var description: String { definition.name }
    public var statusValues: [String]? { definition.statusValues }

    /// Latest-state cache key (`resource:machine:M-203`).
    public func cacheKey(entityID: String) -> String { definition.cacheKeyPrefix + entityID }

    /// The key prefix a snapshot scans (`resource:machine:`).
    public var cacheKeyPrefix: String { definition.cacheKeyPrefix }

    public static func == (lhs: EntityType, rhs: EntityType) -> Bool {
        lhs.definition === rhs.definition || lhs.definition.name == rhs.definition.name
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(definition.name) }
}

/// A rule an entity type's ids follow besides the channel-segment rule (`ChannelName.segmentRule`).
public struct EntityIDRule: @unchecked Sendable {
    public let pattern: String
    /// NSRegularExpression is immutable and documented as safe to use from several threads at once.
    let regex: NSRegularExpression

    init(pattern: String) throws {
        self.pattern = pattern
        self.regex = try NSRegularExpression(pattern: "^(?:\(pattern))$")
    }

    public func accepts(_ id: String) -> Bool {
        regex.firstMatch(in: id, range: NSRange(id.startIndex..., in: id)) != nil
    }
}

/// A category channel (seed 003 §4.4: `resource-status`, `alerts`, …; the other seeds add `quality`,
/// `traceability`, `kpi`). Every event belongs to exactly one, named by its event type.
public struct EventCategory: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let resourceStatus = EventCategory(rawValue: "resource-status")
    public static let allocationChanges = EventCategory(rawValue: "allocation-changes")
    public static let alerts = EventCategory(rawValue: "alerts")
    public static let workOrderProgress = EventCategory(rawValue: "work-order-progress")
    public static let idleTimePredictions = EventCategory(rawValue: "idle-time-predictions")
}

/// An event type as a catalog declares it: the entity types it may name, its category, whether it carries
/// state, and the rules on its `data` (compiled once per entity type it may name).
public struct EventType: Hashable, Sendable, CustomStringConvertible {
    public let definition: Definition

    public final class Definition: Sendable {
        public let name: String
        public let description: String?
        public let category: EventCategory
        /// Whether events of this type replace their entity's cached state. News about an entity (alerts,
        /// predictions, metrics, log entries) does not: one entity has one cached state.
        public let carriesState: Bool
        /// False only for the hub's own `status_stale`.
        public let publishable: Bool
        /// Whether the envelope must carry `line` (the seed places the event on a line without naming one).
        public let lineRequired: Bool
        /// The entity types it may name, in declared order, each with the `data` rules that apply to it.
        public let entityTypes: [EntityType]
        let schemas: [DataSchema]
        /// The rules as declared, for `GET /v1/catalog`.
        let declaration: JSONValue
        /// Example events the tests post (`example_valid` / `example_invalid`).
        public let validExamples: [JSONValue]
        public let invalidExamples: [JSONValue]
        /// Who may see its events, and which of their fields (seed 003 §12.1).
        public let restriction: Restriction
        /// Whether its events belong in a supervisor's alert feed (a `feed` key in its declaration).
        public let inFeed: Bool
        /// The data field whose value's start the engines stamp as `status_since`, and the field naming the previous
        /// value, when the type declares `status_since` (`CatalogBuilder.checkStatusSince`). Read from the
        /// declaration once: every event of the type asks.
        public let statusSince: (field: String, previous: String?)?
        /// The event types that lift the hold its states put on their entity (`hold: {until: […]}`, `StateHold`); nil
        /// when it holds nothing.
        public let holdUntil: [String]?

        init(
            name: String, description: String?, category: EventCategory, carriesState: Bool, publishable: Bool,
            lineRequired: Bool, entityTypes: [EntityType], schemas: [DataSchema], declaration: JSONValue, validExamples: [JSONValue],
            invalidExamples: [JSONValue], restriction: Restriction = Restriction()
        ) {
            self.restriction = restriction
            self.name = name
            self.description = description
            self.category = category
            self.carriesState = carriesState
            self.publishable = publishable
            self.lineRequired = lineRequired
            self.entityTypes = entityTypes
            self.schemas = schemas
            self.declaration = declaration
            self.inFeed = declaration["feed"] != nil
            self.statusSince = declaration["status_since"]?["field"]?.stringValue.map { field in
                (field, declaration["status_since"]?["previous"]?.stringValue)
            }
            if case .array(let names)? = declaration["hold"]?["until"] { self.holdUntil = names.compactMap(\.stringValue) } else { self.holdUntil = nil }
            self.validExamples = validExamples
            self.invalidExamples = invalidExamples
        }
    }

    init(_ definition: Definition) { self.definition = definition }

    public var rawValue: String { definition.name }
    public var description: String { definition.name }
    public var category: EventCategory { definition.category }
    public var carriesState: Bool { definition.carriesState }
    public var entityTypes: [EntityType] { definition.entityTypes }
    public var isPublishable: Bool { definition.publishable }

    /// The `data` rules for `entityType`, or nil when this type may not name it.
    func schema(for entityType: EntityType) -> DataSchema? {
        let types = definition.entityTypes
        for index in types.indices where types[index].definition === entityType.definition { return definition.schemas[index] }
        for index in types.indices where types[index] == entityType { return definition.schemas[index] }
        return nil
    }

    /// What is wrong with `value` as the `data` field `name` of this type's events about `entityType`; nil when it
    /// would pass or this type may not name `entityType`.
    public func problem(withField name: String, value: JSONValue, for entityType: EntityType) -> FieldProblem? {
        schema(for: entityType)?.problem(withField: name, value: value)
    }

    public static func == (lhs: EventType, rhs: EventType) -> Bool {
        lhs.definition === rhs.definition || lhs.definition.name == rhs.definition.name
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(definition.name) }

    /// The name of the event the hub publishes when a cached state expires (`StaleEvent`); never publishable.
    public static let statusStaleName = "status_stale"
}

/// The seed 003 types by name, from the shipped catalog (`Catalog.standard`). For tests and tools: the hub
/// itself works from the catalog its config names.
extension EntityType {
    public static let `operator` = Catalog.standard.entityType(named: "operator")!
    public static let machine = Catalog.standard.entityType(named: "machine")!
    public static let material = Catalog.standard.entityType(named: "material")!
    public static let workOrder = Catalog.standard.entityType(named: "work_order")!
    public static let allocation = Catalog.standard.entityType(named: "allocation")!
    public static var allCases: [EntityType] { Catalog.standard.entityTypes }
    public static var allowedList: String { Catalog.standard.entityTypeList }
}

extension EventType {
    public static let resourceStatusChanged = Catalog.standard.eventType(named: "resource_status_changed")!
    public static let materialInventoryChanged = Catalog.standard.eventType(named: "material_inventory_changed")!
    public static let allocationChanged = Catalog.standard.eventType(named: "allocation_changed")!
    public static let workOrderProgress = Catalog.standard.eventType(named: "work_order_progress")!
    public static let alertRaised = Catalog.standard.eventType(named: "alert_raised")!
    public static let idleTimePredicted = Catalog.standard.eventType(named: "idle_time_predicted")!
    public static let statusStale = Catalog.standard.eventType(named: statusStaleName)!
    public static var allCases: [EventType] { Catalog.standard.eventTypes }
}
