extension Catalog {
    /// Whether `event` is of a type in the alert feed (a catalog `feed`): decided by its category channel for events
    /// of categories without feed types, and by its `event_type` for the others.
    public func isFeedEvent(_ event: StoredEvent) -> Bool {
        guard !feedCategories.isEmpty, let category = event.channels.first.map({ String(Tenant.split($0).rest) }),
            feedCategories.contains(category), let json = try? JSONValue.parse(event.json),
            let name = json["event_type"]?.stringValue
        else { return false }
        return eventType(named: name)?.definition.inFeed ?? false
    }
}
