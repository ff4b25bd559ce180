import NIOCore
import StatusHubCore
import Synchronization

/// The node's one `EventSink`: looks up who wants an event and queues one shared frame to each of them.
///
/// The frame is encoded and framed once per event (`WireFrame`); every receiver gets the same `ByteBuffer`
/// (copy-on-write, so no copy).
final class FanOut: EventSink {
    let index = SubscriptionIndex<Connection>()
    private let metrics: HubMetrics
    /// What restricts which events (`Restriction`), for the frames each reader may get.
    let catalog: Catalog
    /// Latency per category against the catalog's budgets: fan-out stamps each event once (ingest instant,
    /// category) and the writers time each delivery at the socket write.
    let latency: LatencyTelemetry?
    /// Every open connection, subscribed or not: for engine gaps and for draining at shutdown.
    private let open = Mutex<Set<Connection>>([])
    /// The newest event fanned out, against the newest this node acknowledged (for the shutdown drain).
    let watermark = DeliveryWatermark()
    /// Frames of replayed events, shared by the subscribers that replay them (`ReplayFrames`).
    let replayFrames = ReplayFrames()
    /// The newest feed events, for a subscribe's `recent`: kept before the event is fanned out, so a subscriber
    /// registered meanwhile finds it in one or the other (`SeamFilter` drops the second copy).
    let recent: RecentFeed

    init(metrics: HubMetrics, catalog: Catalog, latency: LatencyTelemetry?, recent: RecentFeed) {
        self.metrics = metrics
        self.catalog = catalog
        self.latency = latency
        self.recent = recent
    }

    func deliver(_ event: StoredEvent) {
        metrics.eventsFannedOut.increment()
        watermark.delivered(event)
        recent.heard(event)
        let receivers = index.subscribers(matching: event.channels)
        guard !receivers.isEmpty else { return }
        let held = Connection.Held(
            event: event, frame: WireFrame.text(ServerMessage.event(event)), conflationKey: catalog.conflationKey(of: event),
            stamp: latency?.stamp(event))
        // Each other event loop is woken once, when every receiver has the frame (`LoopFlusher`).
        let wakeUps = LoopFlusher.holdWakeUps()
        defer { wakeUps.release() }
        var conflated: Int64 = 0
        var filteredOut = 0
        // Each view of a restricted event is encoded once, not once per connection that gets it.
        var variants = RedactionVariants(held, catalog: catalog)
        // Each distinct filter is evaluated once per view of the event, not once per connection that holds it: on the
        // view its reader gets, as in a replay or a snapshot, so a filter cannot tell a reader what its view leaves
        // out (`data.name = 'Jane Roe'` on an operator's pii). The whole event's verdicts apart, as most events nothing
        // restricts and need no lookup per connection; the other views' by the fields they hide.
        var verdicts = FilterVerdicts(event: event)
        var viewVerdicts: [[String]: FilterVerdicts] = [:]
        for connection in receivers {
            var frame = held
            var hidden: [String] = []
            if variants.varies {
                guard let visible = variants.view(for: connection.claims) else {
                    filteredOut += 1
                    continue
                }
                (frame, hidden) = visible
            }
            let admitted = hidden.isEmpty
                ? connection.filters.admit(&verdicts, patterns: connection.patterns)
                : connection.filters.admit(&viewVerdicts[hidden, default: FilterVerdicts(event: frame.event)], patterns: connection.patterns)
            guard admitted else {
                filteredOut += 1
                continue
            }
            if connection.offer(frame) == .conflated { conflated += 1 }
        }
        metrics.deliveries.increment(by: Int64(receivers.count - filteredOut))
        if conflated > 0 { metrics.conflated.increment(by: conflated) }
    }

    func deliveryGap(reason: String) {
        recent.deliveryGap()
        let frame = WireFrame.text(ServerMessage.resync(id: nil, reason: .engineGap))
        let subscribed = open.withLock { $0 }.filter { !$0.patterns.isEmpty }
        for connection in subscribed { connection.outbox.push(frame) }
        metrics.resyncs.increment(by: Int64(subscribed.count))
    }

    func opened(_ connection: Connection) { open.withLock { _ = $0.insert(connection) } }

    func closed(_ connection: Connection) {
        remove(connection, patterns: Array(connection.patterns))
        open.withLock { _ = $0.remove(connection) }
    }

    var openConnections: Set<Connection> { open.withLock { $0 } }

    func add(_ connection: Connection, patterns: [ChannelPattern]) {
        for pattern in patterns { index.add(connection, to: pattern) }
        connection.record(added: patterns)
    }

    func remove(_ connection: Connection, patterns: [ChannelPattern]) {
        for pattern in patterns { index.remove(connection, from: pattern) }
        connection.record(removed: patterns)
        connection.filters.remove(patterns)
    }
}
