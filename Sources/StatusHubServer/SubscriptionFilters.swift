import StatusHubCore
import Synchronization

/// The `filter`s of one connection's patterns (a `subscribe` with `filter`; `EventFilter`). Most connections have
/// none, and fan-out then pays one atomic load per delivery for them.
///
/// An event reaches the connection when one of its patterns that matches the event's channels has no filter, or a
/// filter that admits the event. Patterns subscribed without a filter are not in the table.
final class SubscriptionFilters: Sendable {
    private let table = Mutex<[ChannelPattern: EventFilter]>([:])
    private let isEmpty = Atomic<Bool>(true)

    /// `filter` (interned, so connections with the same filter share one) now applies to `patterns`; nil lifts it.
    func set(_ filter: EventFilter?, for patterns: [ChannelPattern]) {
        let shared = filter.map(FilterInterner.shared.intern)
        table.withLock { table in
            for pattern in patterns { table[pattern] = shared }
            isEmpty.store(table.isEmpty, ordering: .releasing)
        }
    }

    func remove(_ patterns: [ChannelPattern]) { set(nil, for: patterns) }

    /// The filter a pattern was subscribed with, if any.
    func filter(for pattern: ChannelPattern) -> EventFilter? { table.withLock { $0[pattern] } }

    /// Whether the event of `verdicts` passes this connection's filters. `patterns` (the connection's) is read only
    /// when there is a filter at all.
    func admit(_ verdicts: inout FilterVerdicts, patterns: @autoclosure () -> Set<ChannelPattern>) -> Bool {
        if isEmpty.load(ordering: .acquiring) { return true }
        let filters = table.withLock { $0 }
        for pattern in patterns() where verdicts.channelsMatch(pattern) {
            guard let filter = filters[pattern] else { return true }
            if verdicts.admits(filter) { return true }
        }
        return false
    }
}

/// One event's filter results during one fan-out pass: the event is decoded at most once, and each distinct filter
/// is evaluated at most once, however many connections share it.
struct FilterVerdicts {
    let event: StoredEvent
    private var decoded: JSONValue??
    private var results: [ObjectIdentifier: Bool] = [:]
    /// How many filters were evaluated, and whether the event was decoded (for the tests of "once per event").
    private(set) var evaluations = 0
    var decodedOnce: Bool { decoded != nil }

    init(event: StoredEvent) { self.event = event }

    mutating func admits(_ filter: EventFilter) -> Bool {
        if let known = results[ObjectIdentifier(filter)] { return known }
        evaluations += 1
        if decoded == nil { decoded = .some(try? JSONValue.parse(event.json)) }
        // An event that does not decode (never the case for stored events) passes no filter.
        let verdict = decoded!.map(filter.admits) ?? false
        results[ObjectIdentifier(filter)] = verdict
        return verdict
    }

    func channelsMatch(_ pattern: ChannelPattern) -> Bool {
        event.channels.contains { pattern.matches($0) }
    }
}

/// Keeps one object per distinct filter text, so `FilterVerdicts` evaluates a filter shared by a thousand
/// subscribers once. Bounded: past `capacity` distinct filters new ones are not interned (still correct, each
/// evaluated on its own), so clients cannot grow it without end.
final class FilterInterner: Sendable {
    static let shared = FilterInterner(capacity: 4096)
    private let known = Mutex<[String: EventFilter]>([:])
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func intern(_ filter: EventFilter) -> EventFilter {
        known.withLock { known in
            if let existing = known[filter.canonical] { return existing }
            if known.count < capacity { known[filter.canonical] = filter }
            return filter
        }
    }
}
