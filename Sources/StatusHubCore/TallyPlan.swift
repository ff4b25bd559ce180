import Synchronization

/// What one state event means for its entity's tallies (`Tally`): the keys it now counts toward or belongs to.
/// The engines diff it against the entry they keep for the entity's previous state, inside the same atomic step
/// as the write, so a counter never depends on a publisher's `previous_status`.
public struct TallyUpdate: Sendable, Equatable {
    public struct Entry: Sendable, Equatable, Hashable {
        /// The tally's name and its key, tenant-prefixed: `machines_running=stats:line:Line-2:machines_running` for a
        /// counter, `active_allocations~allocation:operator:O-1:active` for a set.
        public var text: String
        public var tallyName: String
        public var key: String
        public var isCounter: Bool
        public var line: String?
        public var tenant: String
    }

    /// The entity's id: what active sets hold.
    public var member: String
    public var entries: [Entry]

    /// The update for a state event, or nil when its entity type has no tallies.
    public static func make(
        entityType: EntityType, entityID: String, line: String?, data: [String: JSONValue], tenant: String, catalog: Catalog
    ) -> TallyUpdate? {
        guard let tallies = catalog.talliesByEntityType[entityType.rawValue] else { return nil }
        let prefix = Tenant.prefix(tenant)
        var update = TallyUpdate(member: entityID, entries: [])
        for tally in tallies {
            // A counter counts the states `when` matches; a set holds every state `until` does not match (an
            // allocation paused is still active), under the owners its own data names.
            let counts = switch tally.kind {
            case .counter: matches(tally.when, data)
            case .set: !matches(tally.until ?? [], data)
            }
            guard counts else { continue }
            for template in tally.keys {
                guard let key = fill(template, line: line, data: data) else { continue }
                update.entries.append(Entry(
                    text: tally.name + (tally.kind == .counter ? "=" : "~") + prefix + key, tallyName: tally.name, key: prefix + key,
                    isCounter: tally.kind == .counter, line: tally.scope == .line ? line : nil, tenant: tenant))
            }
        }
        return update
    }

    /// The per-event argument of the append script: `<member>\t<entry>\t…`.
    public var scriptArgument: String {
        ([member] + entries.map(\.text)).joined(separator: "\t")
    }

    private static func matches(_ condition: [(field: String, values: [String])], _ data: [String: JSONValue]) -> Bool {
        condition.allSatisfy { field, values in
            switch data[field] {
            case .string(let text)?: values.contains(text)
            case .bool(let flag)?: values.contains(flag ? "true" : "false")
            default: false
            }
        }
    }

    /// `template` with `{line}`, `{shift}` (the running count's `current`) and `{<data field>}` filled in, or nil
    /// when one has no value that is a channel segment.
    static func fill(_ template: String, line: String?, data: [String: JSONValue]) -> String? {
        var result = ""
        var rest = template[...]
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { return nil }
            result += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            let value: String? = switch name {
            case "line": line
            case "shift": Tally.currentShift
            default: data[name]?.stringValue
            }
            guard let value, ChannelName.isValidSegment(value) else { return nil }
            result += value
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}

/// Everything static about the `counter_changed` event of one counter key, so the engines render it with three
/// substitutions: `{value}`, `{cause}` (the id of the event that changed it, or `shift_start`), `{now}`, and for a
/// shift counter `{shift}` (the shift in effect).
public struct CounterDescriptor: Sendable, Equatable {
    /// The running count's key (`stats:line:Line-2:machines_running`, `stats:shift:current:operators_available`).
    public var key: String
    /// For a shift counter: the key it is copied to for the shift in effect, with `{shift}` in it.
    public var shiftCopy: String?
    public var ttlSeconds: Int?
    /// The counter entity's cache key, where its latest `counter_changed` is kept for snapshots.
    public var entityKey: String
    public var entityID: String
    public var line: String?
    public var tenant: String
    public var channels: [String]
    /// Snapshot index names it is filed under (`SnapshotIndex`).
    public var indexes: [String]
    /// The event's JSON after `event_id`, with the placeholders above.
    public var bodyTemplate: String

    public var routingHeader: String { RoutingHeader.encode(entityKey: entityKey, channels: channels, carriesState: true) }

    /// The counter's event as the memory engine stores it.
    public func event(value: Int, cause: String, now: String, shift: String, catalog: Catalog) -> ValidatedEvent? {
        guard let type = catalog.eventType(named: CounterDescriptor.eventTypeName),
            let entityType = catalog.entityType(named: CounterDescriptor.entityTypeName)
        else { return nil }
        return ValidatedEvent(
            eventType: type, entityType: entityType, entityID: entityID, line: line, channels: channels,
            carriesState: true, bodyAfterID: body(value: value, cause: cause, now: now, shift: shift), idempotencyKey: nil,
            tenant: tenant)
    }

    /// The template with its placeholders filled, as the append script's `gsub('{(%a+)}', vars)` fills it: one pass,
    /// each `{letters}` that names a placeholder replaced, anything else (and what a value brings) left as it is.
    /// Foundation's `replacingOccurrences`, four times over, was a fifth of the memory engine's ingest CPU.
    public func body(value: Int, cause: String, now: String, shift: String) -> [UInt8] {
        let template = bodyTemplate.utf8
        var body: [UInt8] = []
        body.reserveCapacity(template.count + cause.utf8.count + 2 * now.utf8.count + shift.utf8.count)
        var rest = template[...]
        while let open = rest.firstIndex(of: UInt8(ascii: "{")) {
            body.append(contentsOf: rest[..<open])
            let name = rest[rest.index(after: open)...].prefix { (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) }
            let close = name.endIndex
            let filled: String?
            if close < rest.endIndex, rest[close] == UInt8(ascii: "}") {
                switch String(decoding: name, as: UTF8.self) {
                case "value": filled = String(value)
                case "cause": filled = cause
                case "now": filled = now
                case "shift": filled = shift
                default: filled = nil
                }
            } else {
                filled = nil
            }
            if let filled {
                body.append(contentsOf: filled.utf8)
                rest = rest[rest.index(after: close)...]
            } else {
                body.append(UInt8(ascii: "{"))
                rest = rest[rest.index(after: open)...]
            }
        }
        body.append(contentsOf: rest)
        return body
    }

    /// The descriptor as one append-script argument line: fields joined by tabs (none contains one).
    /// `countedStatesTTL` is the cache TTL of the states the counter counts (0: they never expire): the counter's
    /// own expiry is never shorter, or a quiet line's count would vanish under states still cached, and go negative
    /// when they expired (`cache_ttl.machine` past the seed's 3600 s for `machines_running`).
    public func scriptLine(countedStatesTTL: Int) -> String {
        let expiry = ttlSeconds.map { countedStatesTTL == 0 ? "" : String(max($0, countedStatesTTL)) } ?? ""
        return [key, shiftCopy ?? "", expiry, entityKey, indexes.joined(separator: " "), routingHeader, bodyTemplate]
            .joined(separator: "\t")
    }

    /// The counter entity's key in a `scriptLine` (as kept in Redis's counters hash); nil if it is not one.
    public static func entityKey(inScriptLine line: String) -> String? {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        return fields.count > 3 ? String(fields[3]) : nil
    }

    public static let eventTypeName = "counter_changed"
    public static let entityTypeName = "counter"

    /// The cache key prefix of the counters' states (`counter:`); nil when the catalog keeps no counters.
    public static func cacheKeyPrefix(in catalog: Catalog) -> String? {
        catalog.entityType(named: entityTypeName)?.cacheKeyPrefix
    }

    /// Whether `entityKey` (any tenant's) is a counter's state (`counter:Line-2.machines_running`), `prefix` being
    /// `cacheKeyPrefix(in:)` — looked up once by the caller, as this is asked per delivered event.
    public static func isCounterKey(_ entityKey: String, prefix: String?) -> Bool {
        guard let prefix else { return false }
        return Tenant.split(entityKey).rest.hasPrefix(prefix)
    }

    /// Built once per counter key and kept: a plant has a few dozen.
    public static func make(for entry: TallyUpdate.Entry, catalog: Catalog, cache: CounterDescriptorCache) -> CounterDescriptor? {
        if let known = cache.descriptor(entry.key) { return known }
        guard let tally = catalog.tallies.first(where: { $0.name == entry.tallyName }),
            let type = catalog.eventType(named: eventTypeName), let entityType = catalog.entityType(named: entityTypeName)
        else { return nil }
        let prefix = Tenant.prefix(entry.tenant)
        let scope = tally.scope
        let entityID: String
        var shown = String(entry.key.dropFirst(prefix.count))
        var scopeID = ""
        var shiftCopy: String?
        switch scope {
        case .line:
            entityID = (entry.line ?? "") + "." + tally.name
            scopeID = entry.line ?? ""
        case .shift:
            entityID = "shift." + tally.name
            shown = tally.keys[0]
            scopeID = "{shift}"
            shiftCopy = prefix + tally.keys[0]
        case .plant:
            entityID = "plant." + tally.name
        }
        var members: [(key: String, value: JSONValue)] = [
            ("data", .object([
                "key": .string(shown), "name": .string(tally.name), "scope": .string(scope.rawValue),
                "scope_id": .string(scopeID), "value": .string("{value}"),
            ])),
            ("entity_id", .string(entityID)), ("entity_type", .string(entityType.rawValue)), ("event_type", .string(type.rawValue)),
        ]
        if let line = entry.line { members.append(("line", .string(line))) }
        members.append(("metadata", .object(["source": .string("statushub"), "triggered_by": .string("{cause}")])))
        members.append(("received_at", .string("{now}")))
        if entry.tenant != Tenant.defaultName { members.append(("tenant", .string(entry.tenant))) }
        members.append(("timestamp", .string("{now}")))
        var encoded: [UInt8] = []
        JSONValue.write(members: members, into: &encoded)
        // The value is a number: drop the quotes the placeholder was written with.
        let body = String(decoding: encoded.dropFirst(), as: UTF8.self).replacingOccurrences(of: #""{value}""#, with: "{value}")
        let channels = ChannelName.channels(category: type.category, entityType: entityType, entityID: entityID, line: entry.line)
            .map { prefix + $0 }
        let descriptor = CounterDescriptor(
            key: entry.key, shiftCopy: shiftCopy, ttlSeconds: tally.ttlSeconds, entityKey: prefix + entityType.cacheKey(entityID: entityID),
            entityID: entityID, line: entry.line, tenant: entry.tenant, channels: channels,
            indexes: SnapshotIndex.names(forChannels: channels), bodyTemplate: body)
        cache.descriptors.withLock { $0[entry.key] = descriptor }
        return descriptor
    }
}

/// Counter descriptors by counter key, shared by an engine's calls.
public final class CounterDescriptorCache: Sendable {
    let descriptors = Mutex<[String: CounterDescriptor]>([:])
    public init() {}

    /// The descriptor of counter key `key`, if one was made.
    public func descriptor(_ key: String) -> CounterDescriptor? { descriptors.withLock { $0[key] } }
}
