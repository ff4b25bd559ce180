import Logging
import NIOCore
import Prometheus
import StatusHubCore
import Synchronization

/// Connections of every kind — WebSocket, SSE, HTTP, not yet upgraded — held below what the open-files limit leaves
/// beside the process's own descriptors (`DescriptorLimit.acceptRoom`). Past it the node stops accepting until one
/// closes (`AcceptGate`, on the listening socket) — the kernel queues the next ones — instead of accepting until
/// `accept` fails for want of descriptors, after which a Redis or MQTT reconnection, or a SIGHUP's reading of its
/// files, would fail too.
///
/// Counted by the node's own connection code, not Hummingbird's accept gate (`availableConnectionsDelegate`): that
/// one hangs two closures and a box on every connection's close future, ~150 bytes of heap for the connection's
/// life (6.00–6.06 KiB an idle dashboard against 5.84–5.86 without it, loadtest/RESULTS.md). Here a connection is counted as the
/// gate accepts it — on the listening socket's loop, before the next accept is decided: counted when its pipeline is
/// set up instead, on another loop, a burst overshot the limit by what that loop had not yet set up — or, accepted
/// before the gate was in place, as its pipeline is set up (`GuardedHTTP1Channel`); and it is uncounted once, by
/// whichever path ends it: its HTTP handling (`HubHTTP1Channel.handle`), or, once upgraded, its WebSocket session's end
/// (`WebSocketUpgrade`'s release).
final class AcceptCeiling: Sendable {
    let limit: Int
    private let descriptors: DescriptorLimit
    private let open = Atomic<Int>(0)
    /// The gate found the node full and is waiting for a close to accept again.
    private let waiting = Atomic<Bool>(false)
    /// Set by the gate once it is on the listening socket: asks it, on its loop, to accept again.
    private let resume = Mutex<(@Sendable () -> Void)?>(nil)
    private let gauge: Gauge
    /// Connections the gate accepted and counted whose pipelines are not set up yet (a few at a time, briefly).
    private let acceptedNotSetUp = Mutex<Set<ObjectIdentifier>>([])
    /// When the last warning was logged, in milliseconds since `started`: a node kept full by churn reaches the limit
    /// again with every connection that replaces one, and would log each time.
    private let warned = Atomic<Int>(Int.min)
    private let started = ContinuousClock.now
    static let warningInterval = Duration.seconds(60)

    init(descriptors: DescriptorLimit, metrics: HubMetrics) {
        self.limit = descriptors.acceptRoom
        self.descriptors = descriptors
        self.gauge = metrics.tcpConnections
        metrics.tcpConnectionsLimit.set(Double(limit))
    }

    /// The gate accepted `connection`.
    fileprivate func accepted(_ connection: any Channel, logger: Logger) {
        acceptedNotSetUp.withLock { _ = $0.insert(ObjectIdentifier(connection)) }
        opened(logger: logger)
    }

    /// `connection`'s pipeline is being set up: counted now unless the gate counted it.
    func settingUp(_ connection: any Channel, logger: Logger) {
        guard acceptedNotSetUp.withLock({ $0.remove(ObjectIdentifier(connection)) }) == nil else { return }
        opened(logger: logger)
    }

    /// A connection took a descriptor. Warns when the node fills, at most once a `warningInterval`.
    private func opened(logger: Logger) {
        let now = open.add(1, ordering: .sequentiallyConsistent).newValue
        gauge.increment()
        if now == limit, mayWarn() {
            logger.warning("""
                not accepting connections: \(now) open, all the open-files limit (\(descriptors)) leaves beside the \
                node's own; the next wait in the listen queue until one closes (ulimit -n; systemd's LimitNOFILE=)
                """)
        }
    }

    private func mayWarn() -> Bool {
        let milliseconds = Int(started.duration(to: .now).seconds * 1000)
        let last = warned.load(ordering: .relaxed)
        guard last == Int.min || milliseconds - last >= Int(Self.warningInterval.seconds * 1000) else { return false }
        return warned.compareExchange(expected: last, desired: milliseconds, ordering: .relaxed).exchanged
    }

    /// A connection counted by `opened` has ended (its descriptor is closed or closing).
    func closed() {
        let now = open.subtract(1, ordering: .sequentiallyConsistent).newValue
        gauge.decrement()
        guard now < limit, waiting.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged else {
            return
        }
        resume.withLock { $0 }?()
    }

    /// Whether the gate may accept now; when not, it waits until `closed` resumes it.
    fileprivate func mayAccept() -> Bool {
        guard open.load(ordering: .sequentiallyConsistent) >= limit else { return true }
        waiting.store(true, ordering: .sequentiallyConsistent)
        // A connection that closed between the two looks saw `waiting` false and resumed no one.
        guard open.load(ordering: .sequentiallyConsistent) >= limit else {
            // Taken back, unless that close's resume has it (and will ask for the read).
            return waiting.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
        }
        return false
    }

    fileprivate func attach(resume: @escaping @Sendable () -> Void) {
        self.resume.withLock { $0 = resume }
    }

    /// Puts the gate on the listening socket: from then on it accepts only while the node is below the limit.
    func holdAccepts(of listener: any Channel, logger: Logger) async throws {
        try await listener.eventLoop.submit { [self] in
            try listener.pipeline.syncOperations.addHandler(AcceptGate(ceiling: self, logger: logger), position: .first)
        }.get()
    }
}

/// On the listening socket: an accept happens only when the pipeline asks to read, so a read held back leaves the
/// next connections in the kernel's listen queue. Each accepted connection passes through it.
private final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never
    let ceiling: AcceptCeiling
    let logger: Logger

    init(ceiling: AcceptCeiling, logger: Logger) {
        self.ceiling = ceiling
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        ceiling.accepted(unwrapInboundIn(data), logger: logger)
        context.fireChannelRead(data)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        ceiling.attach { loop.execute { bound.value.read() } }
    }

    func read(context: ChannelHandlerContext) {
        if ceiling.mayAccept() { context.read() }
    }
}
