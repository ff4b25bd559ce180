import NIOCore
import StatusHubCore
import Synchronization

/// One WebSocket subscriber as fan-out sees it: its patterns, its outbox, and the seam buffer that holds live
/// events back while a subscribe is being answered (so `subscribed` and a snapshot come before them).
final class Connection: Hashable, Sendable {
    private struct State {
        var patterns: Set<ChannelPattern> = []
        /// Non-nil while a subscribe is in flight: live events wait here instead of the outbox.
        var seam: [(event: StoredEvent, frame: ByteBuffer)]?
    }

    let id: UInt64
    let outbox: Outbox
    /// Yields once if the outbox overflows; finishes when the session ends.
    let overflowSignal: AsyncStream<Void>
    private let overflowContinuation: AsyncStream<Void>.Continuation
    private let state = Mutex(State())

    init(id: UInt64, outboxCapacity: Int) {
        self.id = id
        let (signal, continuation) = AsyncStream<Void>.makeStream()
        self.overflowSignal = signal
        self.overflowContinuation = continuation
        self.outbox = Outbox(capacity: outboxCapacity) {
            continuation.yield()
            continuation.finish()
        }
    }

    func finish() {
        outbox.close()
        overflowContinuation.finish()
    }

    static func == (lhs: Connection, rhs: Connection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    var patterns: Set<ChannelPattern> { state.withLock { $0.patterns } }

    func record(added: [ChannelPattern]) { state.withLock { $0.patterns.formUnion(added) } }
    func record(removed: [ChannelPattern]) { state.withLock { $0.patterns.subtract(removed) } }

    /// Fan-out's entry point. Never waits. Returns false if the connection can take no more (outbox overflow).
    @discardableResult
    func offer(_ event: StoredEvent, frame: ByteBuffer) -> Bool {
        state.withLock { state in
            if state.seam != nil {
                guard state.seam!.count < outbox.capacity else {
                    state.seam = nil
                    outbox.overflow()
                    return false
                }
                state.seam!.append((event, frame))
                return true
            }
            return outbox.push(frame)
        }
    }

    /// Holds live events back until `endSeam`.
    func beginSeam() { state.withLock { $0.seam = $0.seam ?? [] } }

    /// Releases held-back events into the outbox, dropping state events a snapshot already contains
    /// (same entity, id not newer than the snapshot's), so there is no gap and no duplicate at the seam.
    func endSeam(snapshot: [StoredEvent] = []) {
        var contained: [String: EventID] = [:]
        for event in snapshot { contained[event.entityKey] = max(contained[event.entityKey] ?? event.id, event.id) }
        state.withLock { state in
            guard let held = state.seam else { return }
            state.seam = nil
            for (event, frame) in held {
                if event.carriesState, let snapshotID = contained[event.entityKey], event.id <= snapshotID { continue }
                guard outbox.push(frame) else { return }
            }
        }
    }
}
