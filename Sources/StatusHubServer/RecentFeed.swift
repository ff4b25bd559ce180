import DequeModule
import Logging
import StatusHubCore
import Synchronization

/// The newest feed events (event types with a catalog `feed`: alerts, quality failures, …) this node has heard, for a
/// subscribe that asks for `recent`: a dashboard opened now shows the alerts raised before it connected, which no
/// snapshot holds (they are news, not state).
///
/// Kept in the node, from the events it fans out, rather than read from the engine per subscribe: a restart storm
/// of thousands of dashboards then costs the engine nothing more, where reading the history for each would scan it
/// for the few feed events among the many states. A node that starts with a history behind it fills from the
/// engine once (`fill`), after its delivery began, so the two overlap and nothing falls between them.
final class RecentFeed: Sendable {
    /// Events kept per partition; 0 keeps none.
    private let kept: Int
    private let catalog: Catalog
    /// Partition → its newest feed events, in id order (the order a node hears a partition's events in).
    private let events = Mutex<[Int: Deque<StoredEvent>]>([:])
    /// Entries of each partition's history a fill reads back through: its default length, and more than a plant's
    /// alerts would ever be spread over among its states in the time a dashboard looks back.
    static let fillScanLimit = 100_000

    /// Delivery gaps not yet filled after: the engine may hold feed events this node never heard.
    private let gaps: AsyncStream<Void>
    private let gapSignal: AsyncStream<Void>.Continuation

    init(kept: Int, catalog: Catalog) {
        self.kept = max(0, kept)
        self.catalog = catalog
        (gaps, gapSignal) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func deliveryGap() { gapSignal.yield() }

    /// Fills from the engine once its delivery began, and again after every delivery gap, until cancelled.
    func keepFilled(from engine: any Engine, logger: Logger) async {
        await fill(from: engine, logger: logger)
        for await _ in gaps {
            await fill(from: engine, logger: logger)
        }
    }

    /// A delivered event: kept if it is a feed event.
    func heard(_ event: StoredEvent) {
        guard kept > 0, catalog.isFeedEvent(event) else { return }
        // Placed, not appended: a fill that read ahead of the node's delivery (a subscriber still catching up on the
        // history when the fill ran) already holds it.
        events.withLock { events in Self.place(event, in: &events[event.partition, default: []], keeping: kept) }
    }

    /// Older feed events read from the engine (any order): each goes where its id places it, unless it is held
    /// already or older than everything a full partition keeps.
    func fill(_ older: [StoredEvent]) {
        guard kept > 0 else { return }
        events.withLock { events in
            for event in older { Self.place(event, in: &events[event.partition, default: []], keeping: kept) }
        }
    }

    /// Inserts by id, from the newest end (where a delivered event goes: a partition's events arrive in id order),
    /// unless held already or older than everything a full store keeps.
    private static func place(_ event: StoredEvent, in held: inout Deque<StoredEvent>, keeping kept: Int) {
        var index = held.count
        while index > 0, held[index - 1].id > event.id { index -= 1 }
        if index > 0, held[index - 1].id == event.id { return }
        if held.count >= kept && index == 0 { return }
        held.insert(event, at: index)
        if held.count > kept { held.removeFirst() }
    }

    /// The newest `count` feed events as `shown` gives them to one reader (nil: not for it — a subscribe's patterns,
    /// filter and token), oldest first; `shown` keeps an event's id and partition. With several partitions, whose ids
    /// do not order against each other, by the time each id carries (when Redis stored the event).
    func newest(_ count: Int, shown: (StoredEvent) -> StoredEvent?) -> [StoredEvent] {
        guard count > 0 else { return [] }
        // Copy-on-write: the copy is taken at once, and `shown` (which may parse events) runs outside the lock.
        let held = events.withLock { $0 }
        let candidates = held.values.flatMap { events in events.reversed().lazy.compactMap(shown).prefix(count) }
        guard held.count > 1 else { return Array(candidates.prefix(count).reversed()) }
        let newestFirst = candidates.sorted {
            ($0.id.milliseconds, $0.partition, $0.id) > ($1.id.milliseconds, $1.partition, $1.id)
        }
        return Array(newestFirst.prefix(count).reversed())
    }

    /// Fills from `engine`'s history once it is ready (its delivery has begun), retrying while it is not.
    private func fill(from engine: any Engine, logger: Logger) async {
        guard kept > 0 else { return }
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            if engine.isReady {
                do {
                    let older = try await engine.newestEvents(scanning: Self.fillScanLimit, limit: kept) { catalog.isFeedEvent($0) }
                    fill(older)
                    logger.info("recent feed filled from the history", metadata: ["events": "\(older.count)"])
                    return
                } catch {
                    logger.warning("recent feed not filled yet", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }
}
