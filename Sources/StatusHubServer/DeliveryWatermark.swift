import StatusHubCore
import Synchronization

/// How far this node's acknowledgements and its fan-out have come. An event the node acknowledged reaches its
/// subscribers a moment later, through the engine's subscription (Redis pub/sub); a graceful shutdown waits until
/// the fan-out has passed the last acknowledged event before it closes the sockets with 1001, so a subscriber of
/// the node is given everything the node said it stored. Kept per partition: ids order only within one (a hub of
/// one partition has partition 0 only).
///
/// Appends in flight count too: a request admitted just before the shutdown began may still be appending, and its
/// events, acknowledged after the sockets closed, would never reach this node's subscribers. So the shutdown closes
/// the node to appends once nothing is in flight and the fan-out has caught up (`closeIfCaughtUp`); an append that
/// comes later is refused with nothing stored.
final class DeliveryWatermark: Sendable {
    private struct Positions {
        var acknowledged: [Int: EventID] = [:]
        var delivered: [Int: EventID] = [:]
        var appending = 0
        var closed = false

        var caughtUp: Bool { acknowledged.allSatisfy { partition, id in (delivered[partition] ?? .zero) >= id } }
    }

    private let positions = Mutex(Positions())

    /// An ingest about to append; false once the node is closed for shutdown (nothing may be appended). Each true is
    /// followed by one `endAppend`.
    func beginAppend() -> Bool {
        positions.withLock { positions in
            guard !positions.closed else { return false }
            positions.appending += 1
            return true
        }
    }

    /// The append begun with `beginAppend` ended, storing these (duplicates are not counted: their first
    /// acceptance may predate the node).
    func endAppend(acknowledging events: some Sequence<(partition: Int, id: EventID)>) {
        positions.withLock { positions in
            positions.appending -= 1
            for (partition, id) in events {
                positions.acknowledged[partition] = max(positions.acknowledged[partition] ?? id, id)
            }
        }
    }

    /// Closes the node to appends when no append is in flight and everything acknowledged was fanned out (or at
    /// once, when `force`d: the shutdown's grace is over). Returns whether it is closed.
    func closeIfCaughtUp(force: Bool = false) -> Bool {
        positions.withLock { positions in
            if force || (positions.appending == 0 && positions.caughtUp) { positions.closed = true }
            return positions.closed
        }
    }

    func delivered(_ event: StoredEvent) {
        positions.withLock { $0.delivered[event.partition] = max($0.delivered[event.partition] ?? event.id, event.id) }
    }

    var caughtUp: Bool { positions.withLock { $0.caughtUp } }
}
