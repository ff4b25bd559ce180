import StatusHubCore

/// Which cache keys a snapshot must read for a set of patterns.
///
/// SCAN walks the whole keyspace once per key prefix, so it pays to skip entity types no pattern can match
/// (`machine:*` needs only `resource:machine:*`), and to read an exact entity address (`machine:M-203`) with a
/// direct GET. The plan is conservative — it may read more than needed, never less — and the events read are
/// filtered with `StoredEvent.matches(any:)` afterwards, which stays the one authority on matching.
struct SnapshotPlan: Equatable {
    /// Entity types whose whole key prefix must be scanned.
    var scanTypes: [EntityType] = []
    /// Cache keys read directly: exact entity addresses whose type is not scanned anyway.
    var directKeys: [String] = []
    /// Key prefixes to SCAN: each scanned type's prefix under each tenant the patterns are scoped to
    /// (`resource:machine:`, `@acme:resource:machine:`; see `Tenant`).
    var scanPrefixes: [String] = []

    init(patterns: [ChannelPattern]) {
        var byTenant: [String: [ChannelPattern]] = [:]
        for pattern in patterns {
            let (tenant, unscoped) = pattern.unscoped
            byTenant[tenant, default: []].append(unscoped)
        }
        var scan = Set<EntityType>()
        for (tenant, patterns) in byTenant.sorted(by: { $0.key < $1.key }) {
            let plan = SnapshotPlan(unscoped: patterns)
            let prefix = Tenant.prefix(tenant)
            scan.formUnion(plan.scanTypes)
            scanPrefixes += plan.scanTypes.map { prefix + $0.cacheKeyPrefix }
            directKeys += plan.directKeys.map { prefix + $0 }
        }
        scanTypes = EntityType.allCases.filter(scan.contains)
    }

    /// The plan for patterns of one tenant, without their tenant segment.
    private init(unscoped patterns: [ChannelPattern]) {
        var scan = Set<EntityType>()
        var direct: [String] = []
        for pattern in patterns {
            if let key = Self.exactEntityKey(pattern) {
                direct.append(key)
                continue
            }
            for type in EntityType.allCases where Self.templates(for: type).contains(where: { Self.mayMatch(pattern, $0) }) {
                scan.insert(type)
            }
        }
        scanTypes = EntityType.allCases.filter(scan.contains)
        var seen = Set<String>()
        directKeys = direct.filter { key in
            !scanTypes.contains { key.hasPrefix($0.cacheKeyPrefix) } && seen.insert(key).inserted
        }
    }

    /// `machine:M-203` → `resource:machine:M-203`.
    static func exactEntityKey(_ pattern: ChannelPattern) -> String? {
        guard pattern.segments.count == 2, case .literal(let type) = pattern.segments[0],
            case .literal(let id) = pattern.segments[1], let entityType = EntityType(rawValue: type)
        else { return nil }
        // Confirm against Core's own channel layout rather than assume it.
        guard let category = cachedCategories(of: entityType).first,
            ChannelName.channels(category: category, entityType: entityType, entityID: id, line: nil)
                .contains(pattern.text)
        else { return nil }
        return entityType.cacheKey(entityID: id)
    }

    private enum TemplateSegment: Equatable {
        case fixed(Substring)
        case any
    }

    /// A value no real id or line can hold (segments are `[A-Za-z0-9._-]`), standing for "any segment".
    private static let placeholder = "\u{1}"

    /// The shapes of every channel a cached event of `type` can belong to, derived from Core's own
    /// `ChannelName.channels`, with entity id and line as wildcards.
    private static func templates(for type: EntityType) -> [[TemplateSegment]] {
        cachedCategories(of: type).flatMap { category in
            ChannelName.channels(category: category, entityType: type, entityID: placeholder, line: placeholder)
                .map { channel in
                    channel.split(separator: ChannelName.separator, omittingEmptySubsequences: false).map { segment in
                        segment.contains(placeholder) ? .any : .fixed(segment)
                    }
                }
        }
    }

    /// Categories whose events of `type` are written to the cache: only those can appear in a snapshot.
    private static func cachedCategories(of type: EntityType) -> [EventCategory] {
        var categories: [EventCategory] = []
        for eventType in EventType.allCases
        where eventType.entityTypes.contains(type) && eventType.carriesState
            && !categories.contains(eventType.category)
        {
            categories.append(eventType.category)
        }
        return categories
    }

    /// Whether `pattern` matches some channel of the template's shape (mirrors `ChannelPattern.matches`).
    private static func mayMatch(_ pattern: ChannelPattern, _ template: [TemplateSegment]) -> Bool {
        var index = 0
        for segment in pattern.segments {
            switch segment {
            case .rest:
                return index < template.count
            case .one:
                guard index < template.count else { return false }
            case .literal(let literal):
                guard index < template.count else { return false }
                if case .fixed(let fixed) = template[index], fixed != literal { return false }
            }
            index += 1
        }
        return index == template.count
    }
}
