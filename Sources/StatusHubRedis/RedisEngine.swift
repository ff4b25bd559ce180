import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// The engine for a hub that runs on several nodes: Redis holds the latest state per entity (`SET … EX`), the
/// history (a stream, whose ids are the events' ids) and carries every event to every node (pub/sub).
///
/// Commands share one pipelined connection: Redis executes commands one at a time anyway, and pipelining keeps
/// that one connection busy. Pub/sub needs its own connection (`RedisSubscriber`), started by `run`, which also
/// hears about expired states; `StaleSweeper` turns each expiry into exactly one `status_stale` event.
public final class RedisEngine: Engine {
    public let url: RedisURL
    private let config: HubConfig
    private let logger: Logger
    private let commands: ReconnectingConnection
    private let subscriber: RedisSubscriber
    private let writer: EventWriter
    private let batcher: AppendBatcher
    private let historyStream: StreamHistory
    private let sweeper: StaleSweeper

    /// - Parameters:
    ///   - staleSweepInterval: how often the node also looks for expired states on its own, besides Redis's
    ///     expiry notifications (which a managed Redis may not allow turning on, and which Redis sends only once
    ///     it gets round to deleting an expired key).
    /// - Throws: `RedisError.invalidURL` when `config.redis.url` is missing or malformed.
    public init(
        config: HubConfig,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "statushub.redis"),
        healthCheckInterval: Duration = .seconds(5),
        staleSweepInterval: Duration = .seconds(5)
    ) throws {
        guard let text = config.redis.url else { throw RedisError.invalidURL("redis.url is not set") }
        let url = try RedisURL(parsing: text)
        let backoff = Backoff(
            initialSeconds: config.redis.reconnectInitialSeconds, maximumSeconds: config.redis.reconnectMaxSeconds)
        let script = LoadedScript()
        self.url = url
        self.config = config
        self.logger = logger
        // Every new connection loads the script: a restarted Redis has forgotten it, and loading it up front
        // means the pipelined EVALSHAs of a batch do not meet NOSCRIPT halfway through.
        let commands = ReconnectingConnection(
            url: url, commandTimeoutSeconds: config.redis.commandTimeoutSeconds, backoff: backoff,
            eventLoopGroup: eventLoopGroup, logger: logger,
            prepare: { connection in try await script.load(on: connection) })
        self.commands = commands
        let writer = EventWriter(
            commands: commands, script: script, keys: RedisKeys(streamKey: config.redis.streamKey), config: config,
            logger: logger)
        self.writer = writer
        self.batcher = AppendBatcher { events in try await writer.write(events) }
        let history = StreamHistory(commands: commands, streamKey: config.redis.streamKey)
        self.historyStream = history
        let sweeper = StaleSweeper(writer: writer, interval: staleSweepInterval, retryBackoff: backoff, logger: logger)
        self.sweeper = sweeper
        // The subscriber reaches the command connection, history and sweeper through their own references:
        // capturing `self` here would need `self` before it is initialized.
        let notifications = ExpiryNotifications(logger: logger, sweepInterval: staleSweepInterval)
        self.subscriber = RedisSubscriber(
            url: url, channel: config.redis.pubsubChannel, commandTimeoutSeconds: config.redis.commandTimeoutSeconds,
            backoff: backoff, healthCheckInterval: healthCheckInterval, eventLoopGroup: eventLoopGroup,
            logger: logger,
            catchUp: .init(
                page: { after in try await history.page(after: after, limit: 1000) },
                newest: { try await history.newest() }),
            expiry: .init(
                prepare: { connection in await notifications.enable(on: connection) },
                expired: { keys in sweeper.expired(keys) },
                subscribed: { sweeper.sweepSoon() }))
    }

    // MARK: Engine

    public var isReady: Bool { commands.isConnected && subscriber.isConnected }

    /// Whether the command connection is up (the subscriber may not be).
    public var isCommandConnectionReady: Bool { commands.isConnected }

    /// The pub/sub connection's state.
    public var subscriberState: RedisConnectionState { subscriber.state }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        do {
            return try await batcher.append(events).map { outcome in
                switch outcome {
                case .stored(let id): return Appended(id: id)
                case .duplicate(let id): return Appended(id: id, duplicate: true)
                case .claimLost: throw RedisError.unexpectedReply("the append script turned away an event without a claim")
                }
            }
        } catch {
            throw unavailable(error)
        }
    }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        do {
            let reply = try await commands.connection().send(["GET", entityKey]).orThrow()
            guard case .string(let json) = reply else { return nil }
            return decodeCached(json, key: entityKey)
        } catch {
            throw unavailable(error)
        }
    }

    public func snapshot(matching patterns: [ChannelPattern]) async throws -> Snapshot {
        let plan = SnapshotPlan(patterns: patterns)
        do {
            let connection = try await commands.connection()
            // The position is read before the cache: every event up to it is in what follows, later ones may be.
            let position = try await historyStream.newest()
            guard !patterns.isEmpty else { return Snapshot(events: [], position: position) }
            var found: [String: StoredEvent] = [:]
            for event in try await read(keys: plan.directKeys, on: connection) { found[event.entityKey] = event }
            // One SCAN per key prefix, concurrently: their commands interleave on the one pipelined connection.
            try await withThrowingTaskGroup(of: [StoredEvent].self) { group in
                for prefix in plan.scanPrefixes {
                    group.addTask { try await self.scan(prefix: prefix, on: connection) }
                }
                for try await events in group {
                    for event in events { found[event.entityKey] = event }
                }
            }
            return Snapshot(events: found.values.filter { $0.matches(any: patterns) }.sorted { $0.id < $1.id }, position: position)
        } catch {
            throw unavailable(error)
        }
    }

    public func run(delivering sink: any EventSink) async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.commands.maintain() }
            group.addTask { try? await self.subscriber.run(delivering: sink) }
            group.addTask { await self.sweeper.run() }
        }
    }

    // MARK: history (resume)

    /// Up to `limit` stored events after `id`, oldest first — the history stream read with `XRANGE (id + COUNT` —
    /// or nil when the stream no longer holds everything after `id` (see `historyIsComplete`).
    /// - Throws: `EngineUnavailable`.
    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? {
        do {
            switch try await historyStream.page(after: id, limit: limit) {
            case .events(let events): return events
            case .gap: return nil
            }
        } catch {
            throw unavailable(error)
        }
    }

    /// Whether the history still holds every event after `id`, so a resume from `id` misses nothing. False when
    /// trimming (by length or age) has dropped events newer than `id`, and false when the history does not know
    /// `id` at all (the stream was lost, e.g. a Redis restarted without persistence): that subscriber must resync.
    /// - Throws: `EngineUnavailable`.
    public func historyIsComplete(after id: EventID) async throws -> Bool {
        do {
            return try await historyStream.isComplete(after: id)
        } catch {
            throw unavailable(error)
        }
    }

    /// Closes the command connection. `run` ends when its task is cancelled; cancel it first.
    public func shutdown() async {
        await commands.shutdown()
    }

    // MARK: private

    /// SCAN one key prefix to the end, reading each page's values while asking for the next page: one pipelined
    /// round trip per page instead of two.
    private func scan(prefix: String, on connection: RedisConnection) async throws -> [StoredEvent] {
        var events: [StoredEvent] = []
        var seen = Set<String>()
        var scanReply = try await connection.send(["SCAN", "0", "MATCH", prefix + "*", "COUNT", "1000"])
        while true {
            guard case .array(let parts) = try scanReply.orThrow(), parts.count == 2, let cursor = parts[0].text,
                case .array(let keyReplies) = parts[1]
            else { throw RedisError.unexpectedReply("SCAN answered \(scanReply)") }
            // SCAN may return a key more than once.
            let keys = keyReplies.compactMap(\.text).filter { seen.insert($0).inserted }
            var commands: [[String]] = []
            if !keys.isEmpty { commands.append(["MGET"] + keys) }
            if cursor != "0" { commands.append(["SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"]) }
            if commands.isEmpty { break }
            let replies = try await connection.pipeline(commands)
            if !keys.isEmpty { events.append(contentsOf: try decodeValues(replies[0], keys: keys)) }
            guard cursor != "0" else { break }
            scanReply = replies[replies.count - 1]
        }
        return events
    }

    private func read(keys: [String], on connection: RedisConnection) async throws -> [StoredEvent] {
        guard !keys.isEmpty else { return [] }
        let chunks = stride(from: 0, to: keys.count, by: 1000).map { Array(keys[$0..<min($0 + 1000, keys.count)]) }
        let replies = try await connection.pipeline(chunks.map { ["MGET"] + $0 })
        return try zip(chunks, replies).flatMap { try decodeValues($1, keys: $0) }
    }

    private func decodeValues(_ reply: RedisReply, keys: [String]) throws -> [StoredEvent] {
        guard case .array(let values) = try reply.orThrow(), values.count == keys.count else {
            throw RedisError.unexpectedReply("MGET answered \(reply)")
        }
        // A null is a key that expired between SCAN and MGET.
        return zip(keys, values).compactMap { key, value in
            guard case .string(let json) = value else { return nil }
            return decodeCached(json, key: key)
        }
    }

    private func decodeCached(_ json: [UInt8], key: String) -> StoredEvent? {
        guard let event = StoredEvent(storedJSON: json) else {
            logger.warning("redis cache holds a value that is not a stored event", metadata: ["key": "\(key)"])
            return nil
        }
        return event
    }

    private func unavailable(_ error: any Error) -> EngineUnavailable {
        if let error = error as? EngineUnavailable { return error }
        var retryAfter = 1
        if case RedisError.notConnected(let seconds) = error { retryAfter = max(1, Int(seconds.rounded(.up))) }
        return EngineUnavailable(reason: "\(error)", retryAfterSeconds: retryAfter)
    }
}
