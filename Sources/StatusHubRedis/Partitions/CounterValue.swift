import StatusHubCore

/// The `value` of a `counter_changed` event's JSON, read and replaced in place: the body is the hub's own
/// (`CounterDescriptor`), `"value":<integer>` appears once in it (inside `data`), and no other member's string can
/// hold a quote, so neither needs a parse of the whole event and every other byte stays as the partition stored it.
enum CounterValue {
    private static let marker = Array(#""value":"#.utf8)

    static func read(in json: [UInt8]) -> Int? {
        guard let digits = digitRange(in: json) else { return nil }
        return Int(String(decoding: json[digits], as: UTF8.self))
    }

    static func replacing(in event: StoredEvent, with value: Int) -> StoredEvent {
        guard let digits = digitRange(in: event.json) else { return event }
        var json = event.json
        json.replaceSubrange(digits, with: Array(String(value).utf8))
        var replaced = StoredEvent(id: event.id, entityKey: event.entityKey, channels: event.channels, json: json, carriesState: event.carriesState)
        replaced.partition = event.partition
        replaced.resumeToken = event.resumeToken
        return replaced
    }

    private static func digitRange(in json: [UInt8]) -> Range<Int>? {
        guard let start = json.firstRange(of: marker)?.upperBound else { return nil }
        var end = start
        if end < json.count, json[end] == UInt8(ascii: "-") { end += 1 }
        while end < json.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(json[end]) { end += 1 }
        return end > start ? start..<end : nil
    }
}
