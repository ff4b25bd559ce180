import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// Where a pub/sub connection stands.
public enum RedisConnectionState: Sendable, Hashable {
    case disconnected
    case connecting
    /// Subscribed, and delivering the history it missed before the live messages queued meanwhile: until this
    /// ends, whether the history still reaches back to its last delivered event (or a gap is reported) is unknown.
    case catchingUp
    /// Subscribed, caught up, and delivering live messages.
    case connected
}

/// The node's one pub/sub subscription: a dedicated connection subscribed to one channel, delivering each
/// message as a `StoredEvent` to a sink, in order, and reconnecting forever (with backoff and jitter) until
/// cancelled.
///
/// Pub/sub drops whatever is published while a subscriber is away. With `catchUp`, a subscriber that comes back
/// first asks the history for the events after the last one it delivered, then continues with live messages,
/// skipping any it already delivered — so the sink sees every event once, in id order, across reconnects. When
/// the history no longer reaches back that far (trimmed, or lost with a Redis that restarted without its data),
/// the sink is told so with `deliveryGap`, and gets what the history still holds all the same.
///
/// With `expiry`, the same connection also listens for keys that expire (staleness; see `StaleSweeper`).
///
/// It subscribes on the master its `MasterLocator` names. With Sentinel, a failover closes the subscription on the
/// old master; the next one is made on the new master and catches up from its history (the promoted replica has
/// the stream), like any reconnect.
public final class RedisSubscriber: Sendable {
    /// How a subscriber that comes back reads what it missed.
    public struct CatchUp: Sendable {
        /// Up to a page of stored events after an id, oldest first (empty when there are no more), or `.gap`;
        /// after nil, the oldest the history holds.
        public var page: @Sendable (_ after: EventID?) async throws -> HistoryPage
        /// The newest id in the history, nil without one: where a subscriber that has delivered nothing yet
        /// counts from, so that what is published while it reconnects is caught up too.
        public var newest: @Sendable () async throws -> EventID?

        public init(
            page: @escaping @Sendable (_ after: EventID?) async throws -> HistoryPage,
            newest: @escaping @Sendable () async throws -> EventID?
        ) {
            self.page = page
            self.newest = newest
        }
    }

    /// Listening for expired keys on the database's `__keyevent@<db>__:expired` channel.
    public struct ExpiryWatch: Sendable {
        /// Runs on every new connection before it subscribes (to turn notifications on). Cannot fail the session:
        /// staleness has other ways to notice an expiry, events have none to reach this node.
        public var prepare: @Sendable (RedisConnection) async -> Void
        /// Names of keys that expired, batched per read. Must not block.
        public var expired: @Sendable ([String]) -> Void
        /// Subscribed, on every (re)connect: expiries while away were not announced to this node.
        public var subscribed: @Sendable () -> Void

        public init(
            prepare: @escaping @Sendable (RedisConnection) async -> Void,
            expired: @escaping @Sendable ([String]) -> Void,
            subscribed: @escaping @Sendable () -> Void
        ) {
            self.prepare = prepare
            self.expired = expired
            self.subscribed = subscribed
        }
    }

    public let locator: any MasterLocator
    public let channel: String
    private let commandTimeoutSeconds: Double
    private let initialBackoff: Backoff
    private let healthCheckInterval: Duration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let catchUp: CatchUp?
    private let expiry: ExpiryWatch?
    private let current = Mutex<RedisConnection?>(nil)
    private let currentState = Mutex(RedisConnectionState.disconnected)
    private let running = Atomic(false)

    public convenience init(
        url: RedisURL,
        channel: String,
        commandTimeoutSeconds: Double,
        backoff: Backoff,
        healthCheckInterval: Duration = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        catchUp: CatchUp? = nil,
        expiry: ExpiryWatch? = nil
    ) {
        self.init(
            locator: FixedMaster(url), channel: channel, commandTimeoutSeconds: commandTimeoutSeconds, backoff: backoff,
            healthCheckInterval: healthCheckInterval, eventLoopGroup: eventLoopGroup, logger: logger, catchUp: catchUp,
            expiry: expiry)
    }

    public init(
        locator: any MasterLocator,
        channel: String,
        commandTimeoutSeconds: Double,
        backoff: Backoff,
        healthCheckInterval: Duration = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        catchUp: CatchUp? = nil,
        expiry: ExpiryWatch? = nil
    ) {
        self.locator = locator
        self.channel = channel
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.initialBackoff = backoff
        self.healthCheckInterval = healthCheckInterval
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.catchUp = catchUp
        self.expiry = expiry
        locator.onMasterChange { [weak self] master in
            guard let self, let stale = self.current.withLock({ $0 }), stale.url != master else { return }
            Task { await stale.close() }
        }
    }

    public var state: RedisConnectionState { currentState.withLock { $0 } }
    /// Subscribed (so nothing published from now on is missed), caught up or not.
    public var isSubscribed: Bool { state == .connected || state == .catchingUp }
    /// Subscribed and caught up: any gap in what it delivered has been reported.
    public var isCaughtUp: Bool { state == .connected }

    /// Subscribes and delivers until the task is cancelled. Connection failures never end it; they are logged and
    /// retried. One `run` at a time: the sink is promised calls from one task only.
    public func run(delivering sink: any EventSink) async throws {
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            throw RedisError.alreadyRunning
        }
        defer {
            running.store(false, ordering: .releasing)
            currentState.withLock { $0 = .disconnected }
        }
        var backoff = initialBackoff
        var lastDelivered: EventID?
        var failures = 0
        while !Task.isCancelled {
            currentState.withLock { $0 = .connecting }
            do {
                try await session(sink: sink, lastDelivered: &lastDelivered) {
                    backoff.reset()
                    if failures > 0 {
                        self.logger.info("redis subscriber reconnected", metadata: ["after_failed_attempts": "\(failures)"])
                    }
                    failures = 0
                }
                if !Task.isCancelled { logger.warning("redis subscriber connection lost", metadata: ["redis.url": "\(locator)"]) }
            } catch {
                failures += 1
                let level: Logger.Level = failures == 1 || failures.isMultiple(of: 50) ? .warning : .debug
                logger.log(
                    level: level, "redis subscriber cannot connect",
                    metadata: ["redis.url": "\(locator)", "error": "\(error)", "attempt": "\(failures)"])
            }
            currentState.withLock { $0 = .disconnected }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: .seconds(backoff.next()))
        }
    }

    /// One connection's life: subscribe, catch up, deliver until it closes or the task is cancelled.
    private func session(
        sink: any EventSink, lastDelivered: inout EventID?, onSubscribed: () -> Void
    ) async throws {
        let (pushes, continuation) = AsyncStream.makeStream(of: [RedisReply].self)
        let url = try await locator.master()
        let connection: RedisConnection
        do {
            connection = try await RedisConnection.connect(
                to: url, commandTimeoutSeconds: commandTimeoutSeconds, eventLoopGroup: eventLoopGroup,
                onPush: { continuation.yield($0) })
            // Checked before SUBSCRIBE: a subscribed RESP2 connection answers nothing but (P)SUBSCRIBE and PING.
            if locator.checksRole, try await !connection.isMaster() {
                await connection.close()
                throw RedisError.connectFailed("\(url) is not a master (ROLE)")
            }
        } catch {
            locator.masterFailed(url)
            throw error
        }
        current.withLock { $0 = connection }
        defer { current.withLock { if $0 === connection { $0 = nil } } }
        // Pushes are yielded on the event loop before the channel's close completes there, so finishing here
        // never cuts off a message that arrived.
        connection.closeFuture.whenComplete { _ in continuation.finish() }
        do {
            try await subscribe(on: connection, pushes: pushes, sink: sink, lastDelivered: &lastDelivered, onSubscribed: onSubscribed)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
    }

    private func subscribe(
        on connection: RedisConnection, pushes: AsyncStream<[RedisReply]>, sink: any EventSink,
        lastDelivered: inout EventID?, onSubscribed: () -> Void
    ) async throws {
        if let expiry { await expiry.prepare(connection) }
        let expiredChannel = Array(RedisKeys.expiredChannel(database: connection.url.database).utf8)
        // Before its first delivery a subscriber has no position of its own; the history's newest, read before
        // subscribing, is one that nothing published after it can fall behind. With no history yet, that is its
        // beginning (0-0): events stored while this connection is away later (a Redis that hung, then ran what
        // it had been sent) are caught up on, not skipped by reading "the newest" again.
        if lastDelivered == nil, let catchUp {
            do {
                lastDelivered = try await catchUp.newest() ?? Self.historyStart
            } catch {
                // Unknown for now; the next connection asks again.
            }
        }

        // One SUBSCRIBE per channel: each gets exactly one confirmation, which is what replies are matched by. On a
        // Redis Cluster the events' channel is sharded (`SSUBSCRIBE`, on the master of its slot only); expiry
        // notifications are the node's own (each partition's subscriber hears those of its master).
        let sharded = locator.isCluster
        var commands = [[sharded ? "SSUBSCRIBE" : "SUBSCRIBE", channel]]
        if expiry != nil { commands.append(["SUBSCRIBE", String(decoding: expiredChannel, as: UTF8.self)]) }
        for confirmation in try await connection.pipeline(commands) {
            if let message = confirmation.errorMessage, let redirect = ClusterRedirect(errorMessage: message) {
                locator.slotMoved(redirect)
                throw RedisError.reply(message)
            }
            guard case .array(let parts) = confirmation, parts.count == 3, parts[0].text == "subscribe" || parts[0].text == "ssubscribe" else {
                throw RedisError.unexpectedReply("SUBSCRIBE answered \(confirmation)")
            }
        }
        currentState.withLock { $0 = .catchingUp }
        onSubscribed()
        expiry?.subscribed()

        // Messages published from here on are queued in `pushes`; history covers everything before, so the two
        // overlap and never leave a gap. Ids already delivered are skipped below.
        if let since = lastDelivered, let catchUp {
            let replayed = await replayHistory(catchUp, after: since, sink: sink)
            lastDelivered = replayed ?? (since == Self.historyStart ? since : nil)
        }
        // A connection that closed while the history was read is not caught up: its session ends below.
        if connection.isActive { currentState.withLock { if $0 == .catchingUp { $0 = .connected } } }

        await withTaskGroup(of: Void.self) { group in
            group.addTask { [healthCheckInterval] in
                // A peer that vanished without a FIN would otherwise look subscribed forever. A PING that times
                // out closes the connection, which ends `pushes` and so this session.
                while !Task.isCancelled {
                    do {
                        try await Task.sleep(for: healthCheckInterval)
                        _ = try await connection.send(["PING"])
                    } catch {
                        return
                    }
                }
            }
            var slotLeft = false
            for await batch in pushes {
                var expired: [String] = []
                for push in batch where !slotLeft {
                    // The node ended the sharded subscription: the slot moved to another master. What was published
                    // here came before this push; the next session subscribes at the new owner and catches up.
                    if sharded, case .array(let parts) = push, parts.first?.text == "sunsubscribe" {
                        slotLeft = true
                        logger.notice("the cluster slot of the channel moved; subscribing at its new master", metadata: ["redis.url": "\(connection.url)"])
                        locator.masterFailed(connection.url)
                        continue
                    }
                    // `message`: [kind, channel, payload]; `pmessage`: [kind, pattern, channel, payload].
                    guard case .array(let parts) = push, parts.count >= 3, case .string(let payload)? = parts.last else { continue }
                    if expiry != nil, parts[parts.count - 2].bytes == expiredChannel {
                        expired.append(String(decoding: payload, as: UTF8.self))
                    } else {
                        deliver(payload, to: sink, lastDelivered: &lastDelivered)
                    }
                }
                if !expired.isEmpty { expiry?.expired(expired) }
                if slotLeft { break }
            }
            group.cancelAll()
        }
    }

    /// Delivers the history after `since` and returns the position to continue from: the last event delivered.
    private func replayHistory(_ catchUp: CatchUp, after since: EventID, sink: any EventSink) async -> EventID? {
        // From the history's beginning: its oldest events, whatever trimming left (never a gap).
        var last: EventID? = since == Self.historyStart ? nil : since
        var caughtUp = 0
        var gapReported = false
        func reportGap(_ reason: String, _ metadata: Logger.Metadata) {
            guard !gapReported else { return }
            gapReported = true
            logger.warning("redis subscriber missed events it cannot replay; clients must resync", metadata: metadata)
            sink.deliveryGap(reason: reason)
        }
        defer {
            if caughtUp > 0 { logger.info("redis subscriber caught up from history", metadata: ["events": "\(caughtUp)"]) }
        }
        // The command connection may still be reconnecting when this one is back (both lost the same Redis), so
        // failures are retried for a while. Not for long: live messages queue in memory meanwhile.
        let giveUp = ContinuousClock.now + .seconds(max(1, 2 * commandTimeoutSeconds))
        while !Task.isCancelled {
            do {
                switch try await catchUp.page(last) {
                case .events(let page):
                    guard !page.isEmpty else { return last }
                    for event in page where last.map({ event.id > $0 }) ?? true {
                        sink.deliver(event)
                        last = event.id
                        caughtUp += 1
                    }
                case .gap(let continueAfter):
                    reportGap(
                        "the Redis history no longer holds the events after \(since)",
                        ["after": "\(last.map { "\($0)" } ?? "-")", "reason": "history trimmed, lost, or replaced by a failover"])
                    // What the history holds after the point where it stops being what was delivered goes out all
                    // the same: events stored after the loss (by a Redis that restarted empty, or a promoted
                    // replica) are news that no snapshot carries. Trimming removes the oldest first, so with no
                    // such point everything it still holds is newer than what was delivered; after a failover, the
                    // promoted replica's older entries were delivered already and are not sent again.
                    last = continueAfter
                }
            } catch {
                guard ContinuousClock.now < giveUp else {
                    reportGap(
                        "the Redis history could not be read to catch up after \(since)",
                        ["after": "\(last.map { "\($0)" } ?? "-")", "error": "\(error)"])
                    return last
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        return last
    }

    /// The position of a subscriber that started before the history had any event.
    private static let historyStart = EventID(milliseconds: 0, sequence: 0)

    private func deliver(_ payload: [UInt8], to sink: any EventSink, lastDelivered: inout EventID?) {
        guard let event = PubSubMessage.decode(payload) else {
            logger.warning("redis subscriber dropped an undecodable message", metadata: ["bytes": "\(payload.count)"])
            return
        }
        if let last = lastDelivered, event.id <= last { return }
        sink.deliver(event)
        lastDelivered = event.id
    }
}
