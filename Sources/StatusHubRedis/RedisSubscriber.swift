import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// Where a pub/sub connection stands.
public enum RedisConnectionState: Sendable, Hashable {
    case disconnected
    case connecting
    /// Subscribed and receiving.
    case connected
}

/// The node's one pub/sub subscription: a dedicated connection subscribed to one channel, delivering each
/// message as a `StoredEvent` to a sink, in order, and reconnecting forever (with backoff and jitter) until
/// cancelled.
///
/// Pub/sub drops whatever is published while a subscriber is away. With `catchUp`, a subscriber that comes back
/// first asks the history for the events after the last one it delivered, then continues with live messages,
/// skipping any it already delivered — so the sink sees every event once, in id order, across reconnects (as
/// far back as the history reaches).
public final class RedisSubscriber: Sendable {
    /// Returns up to a page of stored events after an id, oldest first; empty when there are no more.
    public typealias CatchUp = @Sendable (_ after: EventID) async throws -> [StoredEvent]

    public let url: RedisURL
    public let channel: String
    private let commandTimeoutSeconds: Double
    private let initialBackoff: Backoff
    private let healthCheckInterval: Duration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let catchUp: CatchUp?
    private let currentState = Mutex(RedisConnectionState.disconnected)
    private let running = Atomic(false)

    public init(
        url: RedisURL,
        channel: String,
        commandTimeoutSeconds: Double,
        backoff: Backoff,
        healthCheckInterval: Duration = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        catchUp: CatchUp? = nil
    ) {
        self.url = url
        self.channel = channel
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.initialBackoff = backoff
        self.healthCheckInterval = healthCheckInterval
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.catchUp = catchUp
    }

    public var state: RedisConnectionState { currentState.withLock { $0 } }
    public var isConnected: Bool { state == .connected }

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
                if !Task.isCancelled { logger.warning("redis subscriber connection lost", metadata: ["redis.url": "\(url)"]) }
            } catch {
                failures += 1
                let level: Logger.Level = failures == 1 || failures.isMultiple(of: 50) ? .warning : .debug
                logger.log(
                    level: level, "redis subscriber cannot connect",
                    metadata: ["redis.url": "\(url)", "error": "\(error)", "attempt": "\(failures)"])
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
        let connection = try await RedisConnection.connect(
            to: url, commandTimeoutSeconds: commandTimeoutSeconds, eventLoopGroup: eventLoopGroup,
            onPush: { continuation.yield($0) })
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
        let confirmation = try await connection.send(["SUBSCRIBE", channel])
        guard case .array(let parts) = confirmation, parts.count == 3, parts[0].text == "subscribe" else {
            throw RedisError.unexpectedReply("SUBSCRIBE answered \(confirmation)")
        }
        currentState.withLock { $0 = .connected }
        onSubscribed()

        // Messages published from here on are queued in `pushes`; history covers everything before, so the two
        // overlap and never leave a gap. Ids already delivered are skipped below.
        if let since = lastDelivered, let catchUp {
            lastDelivered = await replayHistory(catchUp, after: since, sink: sink)
        }

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
            for await batch in pushes {
                for push in batch { deliver(push, to: sink, lastDelivered: &lastDelivered) }
            }
            group.cancelAll()
        }
    }

    private func replayHistory(_ fetch: CatchUp, after since: EventID, sink: any EventSink) async -> EventID {
        var last = since
        var caughtUp = 0
        // The command connection may still be reconnecting when this one is back (both lost the same Redis), so
        // failures are retried for a while. Not for long: live messages queue in memory meanwhile.
        let giveUp = ContinuousClock.now + .seconds(max(1, 2 * commandTimeoutSeconds))
        while !Task.isCancelled {
            do {
                let page = try await fetch(last)
                guard !page.isEmpty else { break }
                for event in page where event.id > last {
                    sink.deliver(event)
                    last = event.id
                    caughtUp += 1
                }
            } catch {
                guard ContinuousClock.now < giveUp else {
                    logger.warning(
                        "redis subscriber could not catch up from history; events published while it was away are lost to it",
                        metadata: ["after": "\(last)", "error": "\(error)"])
                    break
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        if caughtUp > 0 { logger.info("redis subscriber caught up from history", metadata: ["events": "\(caughtUp)"]) }
        return last
    }

    private func deliver(_ push: RedisReply, to sink: any EventSink, lastDelivered: inout EventID?) {
        guard case .array(let parts) = push, case .string(let payload)? = parts.last else { return }
        guard let event = PubSubMessage.decode(payload) else {
            logger.warning("redis subscriber dropped an undecodable message", metadata: ["bytes": "\(payload.count)"])
            return
        }
        if let last = lastDelivered, event.id <= last { return }
        sink.deliver(event)
        lastDelivered = event.id
    }
}
