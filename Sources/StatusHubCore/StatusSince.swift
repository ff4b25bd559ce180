/// What an engine needs to stamp a state with `"status_since"` (`CatalogBuilder.checkStatusSince`): the value of
/// its status field, its own source time, whether it says the value just changed, and where the member goes.
///
/// Each engine keeps, per entity, the value it last stored and since when it is known to have held it (unknown:
/// empty). A state repeating that value carries the start on; one with another value began at its own `timestamp`
/// when the engine held an earlier value or the event names a different previous one, and otherwise has an unknown
/// start. A late state (older by source time) is news: neither stamped nor remembered. Staleness forgets the entity.
public struct StatusSince: Sendable, Hashable {
    /// The status field's value (a status, enum or string: `checkStatusSince` requires it; `EventValidator` dates
    /// no value holding a tab or a newline, which separate what the Redis append script keeps of an entity).
    public let value: String
    /// The event's `timestamp`, as sent.
    public let timestamp: String
    /// The event names a previous value that differs from `value`: its start is its own timestamp.
    public let changed: Bool
    /// Where `"status_since":"…",` goes in the body (keys stay sorted).
    public let offset: Int

    public init(value: String, timestamp: String, changed: Bool, offset: Int) {
        self.value = value
        self.timestamp = timestamp
        self.changed = changed
        self.offset = offset
    }

    /// The start of the value this state holds, given the entity's held value and start (nil: none held); nil when
    /// unknown.
    public func start(held: (value: String, since: String?)?) -> String? {
        if let held, held.value == value { return held.since }
        return held != nil || changed ? timestamp : nil
    }

    /// `body` with the member for `since` inserted.
    public func stamping(_ body: [UInt8], since: String) -> [UInt8] {
        var stamped = body
        stamped.insert(contentsOf: Self.member(since), at: offset)
        return stamped
    }

    static func member(_ since: String) -> [UInt8] {
        var bytes = Array(#""status_since":"#.utf8)
        JSONValue.string(since).write(into: &bytes)
        bytes.append(UInt8(ascii: ","))
        return bytes
    }
}
