import StatusHubCore
import Synchronization

/// Records what an engine delivers to its sink, in order, and the gaps it reports.
final class CollectingSink: EventSink {
    private let events = Mutex<[StoredEvent]>([])
    private let gapReasons = Mutex<[String]>([])

    func deliver(_ event: StoredEvent) { events.withLock { $0.append(event) } }
    func deliveryGap(reason: String) { gapReasons.withLock { $0.append(reason) } }

    var received: [StoredEvent] { events.withLock { $0 } }
    var gaps: [String] { gapReasons.withLock { $0 } }
    var count: Int { events.withLock { $0.count } }

    /// The `status_stale` events delivered for an entity.
    func stale(for entityKey: String) -> [StoredEvent] { received.filter { $0.isStale && $0.entityKey == entityKey } }

    func waitFor(count: Int, timeout: Duration = .seconds(10)) async throws -> [StoredEvent] {
        try await eventually("\(count) events delivered", timeout: timeout) { self.count >= count }
        return received
    }
}

extension StoredEvent {
    var isStale: Bool { jsonString.contains(#""event_type":"status_stale""#) }
}

struct EventuallyTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Polls `condition` until it holds, or fails the test after `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw EventuallyTimeout(description: "timed out waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}
