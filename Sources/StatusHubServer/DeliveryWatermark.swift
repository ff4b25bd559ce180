import StatusHubCore
import Synchronization

/// How far this node's acknowledgements and its fan-out have come. An event the node acknowledged reaches its
/// subscribers a moment later, through the engine's subscription (Redis pub/sub); a graceful shutdown waits until
/// the fan-out has passed the last acknowledged event before it closes the sockets with 1001, so a subscriber of
/// the node is given everything the node said it stored. Kept per partition: ids order only within one (a hub of
/// one partition has partition 0 only).
final class DeliveryWatermark: Sendable {
    private struct Positions {
        var acknowledged: [Int: EventID] = [:]
        var delivered: [Int: EventID] = [:]
    }

    private let positions = Mutex(Positions())

    /// The engine stored these (duplicates are not counted: their first acceptance may predate the node).
    func acknowledged(_ events: some Sequence<(partition: Int, id: EventID)>) {
        positions.withLock { positions in
            for (partition, id) in events {
                positions.acknowledged[partition] = max(positions.acknowledged[partition] ?? id, id)
            }
        }
    }

    func delivered(_ event: StoredEvent) {
        positions.withLock { $0.delivered[event.partition] = max($0.delivered[event.partition] ?? event.id, event.id) }
    }

    var caughtUp: Bool {
        positions.withLock { positions in
            positions.acknowledged.allSatisfy { partition, id in (positions.delivered[partition] ?? .zero) >= id }
        }
    }
}
