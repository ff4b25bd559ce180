/// An event that passed validation, with everything routing and storage need worked out once, at ingest:
/// its channels, its cache key, and its JSON minus the `event_id` the engine has yet to assign.
public struct ValidatedEvent: Sendable {
    public let eventType: EventType
    public let entityType: EntityType
    public let entityID: String
    public let line: String?
    /// The publisher's tenant (`Tenant`); channels, cache key and idempotency key are scoped to it.
    public let tenant: String
    public let channels: [String]
    /// Latest-state key (`resource:machine:M-203`): every event carries one, so a snapshot can find the entity.
    public let entityKey: String
    /// Whether this event replaces the entity's cached state (its event type's `carries_state` in the catalog).
    public let carriesState: Bool
    /// The event's JSON object without its opening `{` and without `event_id`: `"data":{…},…}`.
    public let bodyAfterID: [UInt8]
    /// The publisher's id for this event: a retry with the same key within the idempotency window is acknowledged
    /// with the first acceptance's `event_id` and not stored or published again.
    public let idempotencyKey: String?
    /// Its place among its entity's states by source time (`SourceOrder`); nil for events that carry no state.
    public let sourceRank: String?
    /// Where `"late":true,` goes in `bodyAfterID` (keys stay sorted) when the engine finds a newer state cached.
    public let lateMarkOffset: Int
    /// What a hold on its entity means for its state (`StateHold`); nil when no hold applies to its entity type.
    public let hold: StateHold?
    /// Where `"held":true,` goes in `bodyAfterID` (keys stay sorted) when a hold keeps its state out of the cache.
    public let heldMarkOffset: Int
    /// For a state: that its data ends its entity's story (`FinalState`), so its expiry is quiet. For the
    /// `status_stale` built when a state expires (`StaleEvent`): that the expired state was final, so the notice is
    /// not stored or sent — the entity leaves quietly.
    public let isFinal: Bool
    /// The counters and active sets its state counts toward (`TallyUpdate`); nil when its entity type has none.
    public let tallies: TallyUpdate?
    /// How the engine stamps its `status_since` (`StatusSince`); nil when its type declares none.
    public let statusSince: StatusSince?
    /// The lines its publisher may write (`auth.api_keys[].lines`), sorted; nil: any. An event whose entity's cached
    /// state is on another line, or on none, is then refused by the engine in the same atomic step that would store
    /// it (`Appended.foreignLine`): a key scoped to its own line can neither move another line's entity onto it nor
    /// speak (alerts, predictions) to that entity's subscribers.
    public var writableLines: [String]?

    public var category: EventCategory { eventType.category }

    /// The `SnapshotIndex` names its entity key is filed under, from its fields (what
    /// `SnapshotIndex.names(forChannels:)` reads back from a stored event's channels).
    public var snapshotIndexes: [String] {
        let prefix = Tenant.prefix(tenant)
        let type = SnapshotIndex.type(entityType, tenantPrefix: prefix)
        guard let line else { return [type] }
        return [type, SnapshotIndex.line(line, tenantPrefix: prefix)]
    }

    /// The header the engine stores beside the body, so routing never parses the JSON again.
    public var routingHeader: String { RoutingHeader.encode(entityKey: entityKey, channels: channels, carriesState: carriesState) }

    public init(
        eventType: EventType, entityType: EntityType, entityID: String, line: String?, bodyAfterID: [UInt8],
        idempotencyKey: String? = nil, tenant: String = Tenant.defaultName, sourceRank: String? = nil, lateMarkOffset: Int = 0,
        tallies: TallyUpdate? = nil, statusSince: StatusSince? = nil, hold: StateHold? = nil, heldMarkOffset: Int = 0,
        isFinal: Bool = false
    ) {
        let prefix = Tenant.prefix(tenant)
        self.init(
            eventType: eventType, entityType: entityType, entityID: entityID, line: line,
            channels: ChannelName.channels(category: eventType.category, entityType: entityType, entityID: entityID, line: line)
                .map { prefix + $0 },
            carriesState: eventType.carriesState, bodyAfterID: bodyAfterID,
            idempotencyKey: idempotencyKey.map { prefix + $0 }, tenant: tenant, sourceRank: sourceRank,
            lateMarkOffset: lateMarkOffset, tallies: tallies, statusSince: statusSince, hold: hold, heldMarkOffset: heldMarkOffset,
            isFinal: isFinal)
    }

    /// The same event carrying `key` (unscoped: it gets the event's tenant prefix, as a publisher's key does) as its
    /// idempotency key. The body is unchanged: the key rides beside it.
    public func withIdempotencyKey(_ key: String) -> ValidatedEvent {
        var keyed = ValidatedEvent(
            eventType: eventType, entityType: entityType, entityID: entityID, line: line, channels: channels,
            carriesState: carriesState, bodyAfterID: bodyAfterID, idempotencyKey: Tenant.prefix(tenant) + key, tenant: tenant,
            sourceRank: sourceRank, lateMarkOffset: lateMarkOffset, tallies: tallies, statusSince: statusSince, hold: hold,
            heldMarkOffset: heldMarkOffset, isFinal: isFinal)
        keyed.writableLines = writableLines
        return keyed
    }

    /// Whether its publisher's line scope lets it replace a cached state on `heldLine` (nil: a state without a line).
    public func mayReplace(stateOnLine heldLine: String?) -> Bool {
        guard let writableLines else { return true }
        return heldLine.map(writableLines.contains) ?? false
    }

    /// `channels` and `idempotencyKey` are taken as given (already scoped to `tenant`).
    init(
        eventType: EventType, entityType: EntityType, entityID: String, line: String?, channels: [String],
        carriesState: Bool, bodyAfterID: [UInt8], idempotencyKey: String?, tenant: String = Tenant.defaultName,
        sourceRank: String? = nil, lateMarkOffset: Int = 0, tallies: TallyUpdate? = nil, statusSince: StatusSince? = nil,
        hold: StateHold? = nil, heldMarkOffset: Int = 0, isFinal: Bool = false
    ) {
        self.eventType = eventType
        self.entityType = entityType
        self.entityID = entityID
        self.line = line
        self.tenant = tenant
        self.channels = channels
        self.entityKey = Tenant.prefix(tenant) + entityType.cacheKey(entityID: entityID)
        self.carriesState = carriesState
        self.bodyAfterID = bodyAfterID
        self.idempotencyKey = idempotencyKey
        self.sourceRank = carriesState ? sourceRank : nil
        self.lateMarkOffset = lateMarkOffset
        self.tallies = carriesState ? tallies : nil
        self.statusSince = carriesState ? statusSince : nil
        self.hold = carriesState ? hold : nil
        self.heldMarkOffset = heldMarkOffset
        self.isFinal = isFinal
    }
}
