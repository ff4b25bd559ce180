/// Where a snapshot finds the cached states a set of patterns can match, so that a read costs what it returns
/// rather than the whole cache.
///
/// Both engines keep, beside the latest states, two kinds of index (`SnapshotIndex`): the entity keys of each
/// entity type and the entity keys of each line, per tenant. A pattern is answered from the narrowest source that
/// holds everything it can match: an exact entity address (`machine:M-203`) from its one key, a line's patterns
/// (`line:Line-3:*`) from that line's index, anything else from the indexes of the entity types it can match
/// (`machine:*` reads machines only; `*` reads everything, which is what it returns). The plan is conservative —
/// it may name more than needed, never less — and the events read are filtered with `StoredEvent.matches(any:)`
/// afterwards, which stays the one authority on matching.
public struct SnapshotPlan: Equatable, Sendable {
    /// Cache keys read directly: exact entity addresses.
    public var directKeys: [String] = []
    /// Indexes (`SnapshotIndex` names) whose members must all be read.
    public var indexes: [String] = []
    /// The entity types some pattern reads through a type index (for tests and logs).
    public var scanTypes: [EntityType] = []

    /// `catalog` names the entity types and which event types carry state (only those reach the cache).
    public init(patterns: [ChannelPattern], catalog: Catalog = .standard) {
        var types = Set<EntityType>()
        var indexes: [String] = []
        var direct: [(key: String, typeIndex: String)] = []
        for pattern in patterns {
            let (tenant, unscoped) = pattern.unscoped
            let prefix = Tenant.prefix(tenant)
            if let (type, key) = Self.exactEntity(unscoped, catalog: catalog) {
                direct.append((prefix + key, SnapshotIndex.type(type, tenantPrefix: prefix)))
                continue
            }
            let matchable = catalog.entityTypes.filter { type in
                Self.templates(for: type, catalog: catalog).contains(where: { Self.mayMatch(unscoped, $0) })
            }
            guard !matchable.isEmpty else { continue }
            if let line = Self.literalLine(unscoped) {
                indexes.append(SnapshotIndex.line(line, tenantPrefix: prefix))
                continue
            }
            types.formUnion(matchable)
            indexes += matchable.map { SnapshotIndex.type($0, tenantPrefix: prefix) }
        }
        var seenIndexes = Set<String>()
        self.indexes = indexes.filter { seenIndexes.insert($0).inserted }
        var seenKeys = Set<String>()
        // An exact address whose whole type is read anyway needs no read of its own.
        directKeys = direct.filter { !seenIndexes.contains($0.typeIndex) && seenKeys.insert($0.key).inserted }.map(\.key)
        scanTypes = catalog.entityTypes.filter(types.contains)
    }

    /// `machine:M-203` → (machine, `resource:machine:M-203`).
    static func exactEntity(_ pattern: ChannelPattern, catalog: Catalog) -> (EntityType, String)? {
        guard pattern.segments.count == 2, case .literal(let type) = pattern.segments[0],
            case .literal(let id) = pattern.segments[1], let entityType = catalog.entityType(named: type)
        else { return nil }
        // Confirm against Core's own channel layout rather than assume it.
        guard let category = cachedCategories(of: entityType, catalog: catalog).first,
            ChannelName.channels(category: category, entityType: entityType, entityID: id, line: nil)
                .contains(pattern.text)
        else { return nil }
        return (entityType, entityType.cacheKey(entityID: id))
    }

    /// `line:Line-3:…` → `Line-3`: every channel such a pattern matches is a line address of that line.
    static func literalLine(_ pattern: ChannelPattern) -> String? {
        guard pattern.segments.count >= 2, case .literal(SnapshotIndex.lineSegment) = pattern.segments[0],
            case .literal(let line) = pattern.segments[1]
        else { return nil }
        return line
    }

    private enum TemplateSegment: Equatable {
        case fixed(Substring)
        case any
    }

    /// A value no real id or line can hold (segments are `[A-Za-z0-9._-]`), standing for "any segment".
    private static let placeholder = "\u{1}"

    /// The shapes of every channel a cached event of `type` can belong to, derived from Core's own
    /// `ChannelName.channels`, with entity id and line as wildcards.
    private static func templates(for type: EntityType, catalog: Catalog) -> [[TemplateSegment]] {
        cachedCategories(of: type, catalog: catalog).flatMap { category in
            ChannelName.channels(category: category, entityType: type, entityID: placeholder, line: placeholder)
                .map { channel in
                    channel.split(separator: ChannelName.separator, omittingEmptySubsequences: false).map { segment in
                        segment.contains(placeholder) ? .any : .fixed(segment)
                    }
                }
        }
    }

    /// Categories whose events of `type` are written to the cache: only those can appear in a snapshot.
    private static func cachedCategories(of type: EntityType, catalog: Catalog) -> [EventCategory] {
        var categories: [EventCategory] = []
        for eventType in catalog.eventTypes
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

/// The names of the snapshot indexes a cached state belongs to: its entity type's and, on a line, its line's,
/// each within its tenant (`type:machine`, `line:Line-2`, `@acme:type:machine`). Engines store them as they like
/// (in memory: sets in a dictionary; Redis: a set per name under the stream key).
public enum SnapshotIndex {
    static let lineSegment = "line"

    public static func type(_ type: EntityType, tenantPrefix: String) -> String {
        tenantPrefix + "type:" + type.rawValue
    }

    public static func line(_ line: String, tenantPrefix: String) -> String {
        tenantPrefix + "line:" + line
    }

    /// The indexes of an event with these channels (`ChannelName.channels`, possibly tenant-scoped): derived from
    /// the routing every stored event carries, so no JSON is parsed.
    public static func names(forChannels channels: [String]) -> [String] {
        guard channels.count >= 2 else { return [] }
        let (tenant, entityAddress) = Tenant.split(channels[1])
        let prefix = Tenant.prefix(tenant)
        guard let colon = entityAddress.firstIndex(of: ChannelName.separator) else { return [] }
        var names = [prefix + "type:" + entityAddress[..<colon]]
        if channels.count >= 3 {
            let lineAddress = Tenant.split(channels[2]).rest.split(separator: ChannelName.separator, maxSplits: 2)
            if lineAddress.count >= 2, lineAddress[0] == lineSegment { names.append(prefix + "line:" + lineAddress[1]) }
        }
        return names
    }

    /// `Line-2` for the line index of `tenant` named `name`; nil for a type index or another tenant's.
    public static func line(ofName name: String, tenant: String) -> String? {
        Tenant.split(name).tenant == tenant ? line(ofName: name) : nil
    }

    /// `Line-2` for the line index `line:Line-2` (or `@acme:line:Line-2`); nil for a type index.
    public static func line(ofName name: String) -> String? {
        let rest = Tenant.split(name).rest
        guard rest.hasPrefix(lineSegment + ":") else { return nil }
        return String(rest.dropFirst(lineSegment.count + 1))
    }

    /// The line index among `names(forChannels:)`, if the state is on a line.
    public static func lineName(forChannels channels: [String]) -> String? {
        names(forChannels: channels).dropFirst().first
    }
}
