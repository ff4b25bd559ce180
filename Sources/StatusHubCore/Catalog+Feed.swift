extension Catalog {
    /// Whether `event` is of a type in the alert feed (a catalog `feed`): decided by its category channel for events
    /// of categories without feed types — every event a node fans out asks, so that costs no allocation — and by
    /// its `event_type` for the others.
    public func isFeedEvent(_ event: StoredEvent) -> Bool {
        guard !feedCategories.isEmpty, let channel = event.channels.first else { return false }
        let category = channel.utf8.first == Tenant.marker ? String(Tenant.split(channel).rest) : channel
        guard feedCategories.contains(category), let json = try? JSONValue.parse(event.json),
            let name = json["event_type"]?.stringValue
        else { return false }
        return eventType(named: name)?.definition.inFeed ?? false
    }
}
