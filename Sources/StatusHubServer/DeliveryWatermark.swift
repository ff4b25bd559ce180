import StatusHubCore
import Synchronization

/// How far this node's acknowledgements and its fan-out have come. An event the node acknowledged reaches its
/// subscribers a moment later, through the engine's subscription (Redis pub/sub); a graceful shutdown waits until
/// the fan-out has passed the last acknowledged event before it closes the sockets with 1001, so a subscriber of
/// the node is given everything the node said it stored.
final class DeliveryWatermark: Sendable {
    private struct Positions {
        var acknowledged = EventID.zero
        var delivered = EventID.zero
    }

    private let positions = Mutex(Positions())

    /// The engine stored these (duplicates are not counted: their first acceptance may predate the node).
    func acknowledged(_ ids: some Sequence<EventID>) {
        guard let newest = ids.max() else { return }
        positions.withLock { $0.acknowledged = max($0.acknowledged, newest) }
    }

    func delivered(_ id: EventID) {
        positions.withLock { $0.delivered = max($0.delivered, id) }
    }

    var caughtUp: Bool { positions.withLock { $0.delivered >= $0.acknowledged } }
}
