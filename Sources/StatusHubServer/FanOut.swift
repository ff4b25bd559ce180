import NIOCore
import StatusHubCore

/// The node's one `EventSink`: looks up who wants an event and queues one shared frame to each of them.
///
/// The frame is encoded once per event; every receiver gets the same `ByteBuffer` (copy-on-write, so no copy).
final class FanOut: EventSink {
    let index = SubscriptionIndex<Connection>()
    private let metrics: HubMetrics

    init(metrics: HubMetrics) {
        self.metrics = metrics
    }

    func deliver(_ event: StoredEvent) {
        metrics.eventsFannedOut.increment()
        let receivers = index.subscribers(matching: event.channels)
        guard !receivers.isEmpty else { return }
        let frame = ByteBuffer(bytes: ServerMessage.event(event))
        for connection in receivers {
            connection.offer(event, frame: frame)
        }
        metrics.deliveries.increment(by: Int64(receivers.count))
    }

    func add(_ connection: Connection, patterns: [ChannelPattern]) {
        for pattern in patterns { index.add(connection, to: pattern) }
        connection.record(added: patterns)
    }

    func remove(_ connection: Connection, patterns: [ChannelPattern]) {
        for pattern in patterns { index.remove(connection, from: pattern) }
        connection.record(removed: patterns)
    }

    func removeAll(_ connection: Connection) {
        remove(connection, patterns: Array(connection.patterns))
    }
}
