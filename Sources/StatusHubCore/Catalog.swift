import Foundation

/// What the hub knows about the plant: entity types, event types, category channels and the rules on `data`,
/// loaded from catalog files (`config/catalog/*.yaml`, see `CatalogLoader`) instead of compiled in, so a plant
/// adds its own types by editing a file. Immutable once loaded; every node of a deployment should load the same.
/// A class: the validator reaches it for every event, and a reference costs one retain where a struct of
/// arrays and dictionaries costs one per member.
public final class Catalog: Sendable {
    public struct Category: Sendable {
        public let name: EventCategory
        public let description: String?
        /// The delivery latency budget of the category's events (`latency_budget_ms`; seed 003 §4.3), if declared.
        public var latencyBudgetMs: Int? = nil
        /// Whether a state of this category may replace a queued one of the same entity for a reader that is behind
        /// (`conflates`): a status or a progress figure is superseded by the next; news (alerts, allocations,
        /// predictions) never is.
        public var conflates = false
    }

    /// In load order: files by name, then declaration order.
    public let entityTypes: [EntityType]
    /// Every event type, the publishable ones first and the hub's own `status_stale` last.
    public let eventTypes: [EventType]
    public let categories: [Category]
    /// Counters and active sets (`Tally`), in load order.
    public let tallies: [Tally]
    /// The tallies of each entity type, by its name.
    public let talliesByEntityType: [String: [Tally]]
    /// Categories with an event type some of whose events or fields are restricted (`Restriction`): events of
    /// other categories reach every reader as they are, without a look at their JSON.
    public let restrictedCategories: Set<String>
    /// Categories with an event type in the alert feed (a catalog `feed`, `CatalogBuilder+Feed.swift`): events of
    /// other categories are never feed events, without a look at their JSON (`isFeedEvent`).
    public let feedCategories: Set<String>
    /// Categories whose states conflate (`Category.conflates`), by name as channels write them.
    public let conflatingCategories: Set<String>
    /// The files the catalog was loaded from, and their text (what two catalogs are compared by).
    public let sources: [(path: String, text: String)]
    /// Entity type → event type → its states' `StateHold`, for the entity types some hold names.
    let holdRules: [String: [String: StateHold]]

    private let entityByName: NameTable<EntityType>
    private let eventByName: NameTable<EventType>
    /// `operator, machine, …`, as validation errors list them.
    public let entityTypeList: String
    /// The publishable event types, as validation errors list them.
    public let publishableList: String

    init(
        entityTypes: [EntityType], eventTypes: [EventType], categories: [Category], tallies: [Tally] = [],
        sources: [(path: String, text: String)]
    ) {
        self.entityTypes = entityTypes
        self.eventTypes = eventTypes
        self.categories = categories
        self.tallies = tallies
        self.talliesByEntityType = Dictionary(grouping: tallies, by: \.entityType)
        self.restrictedCategories = Set(eventTypes.filter { !$0.definition.restriction.isEmpty }.map(\.category.rawValue))
        self.feedCategories = Set(eventTypes.filter(\.definition.inFeed).map(\.category.rawValue))
        self.conflatingCategories = Set(categories.filter(\.conflates).map(\.name.rawValue))
        self.sources = sources
        self.holdRules = StateHold.rules(eventTypes: eventTypes)
        entityByName = NameTable(entityTypes.map { ($0.rawValue, $0) })
        eventByName = NameTable(eventTypes.map { ($0.rawValue, $0) })
        entityTypeList = entityTypes.map(\.rawValue).joined(separator: ", ")
        publishableList = eventTypes.filter(\.isPublishable).map(\.rawValue).joined(separator: ", ")
    }

    public func entityType(named name: String) -> EntityType? { entityByName[name] }

    /// What a queued frame of `event` is replaced by a newer one of (its entity key), for a reader that is behind; nil
    /// for events that are news of their own (`Category.conflates`; only states conflate).
    public func conflationKey(of event: StoredEvent) -> String? {
        guard event.carriesState, !conflatingCategories.isEmpty, let channel = event.channels.first else { return nil }
        // The category as written: a tenant's channels carry its segment in front (`@acme:resource-status`).
        return conflatingCategories.contains(String(Tenant.split(channel).rest)) ? event.entityKey : nil
    }

    /// Any event type, publishable or not (`status_stale`).
    public func eventType(named name: String) -> EventType? { eventByName[name] }

    /// A type a publisher may send, or nil.
    public func publishableEventType(named name: String) -> EventType? {
        guard let type = eventByName[name], type.isPublishable else { return nil }
        return type
    }

    /// Whether some event type of `category` carries state (events of it reach the cache and snapshots).
    public func categoryCarriesState(_ category: EventCategory) -> Bool {
        eventTypes.contains { $0.category == category && $0.carriesState }
    }

    /// The catalog shipped in this source tree's `config/catalog/`: the default of tests and tools, and the
    /// seed 003 names (`EntityType.machine`, …) come from it. A running hub uses the catalog its config names
    /// (`catalog.directory`, `catalog.files`), loaded by `HubConfig.load`.
    public static let standard: Catalog = {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/catalog").path
        do {
            let catalog = try CatalogLoader.load(directory: directory)
            CatalogLoader.standardIfLoaded.withLock { $0 = catalog }
            return catalog
        } catch {
            fatalError("the shipped catalog does not load: \(error)")
        }
    }()
}

extension Catalog: Equatable {
    public static func == (lhs: Catalog, rhs: Catalog) -> Bool {
        lhs.sources.map(\.text) == rhs.sources.map(\.text)
    }
}
