import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// The engine for a hub that runs on several nodes: Redis holds the latest state per entity (`SET … EX`), the
/// history (a stream, whose ids are the events' ids) and carries every event to every node (pub/sub).
///
/// Commands share one pipelined connection: Redis executes commands one at a time anyway, and pipelining keeps
/// that one connection busy. Pub/sub needs its own connection (`RedisSubscriber`), started by `run`.
public final class RedisEngine: Engine {
    public let url: RedisURL
    private let config: HubConfig
    private let logger: Logger
    private let commands: ReconnectingConnection
    private let subscriber: RedisSubscriber
    private let script = LoadedScript()

    /// - Throws: `RedisError.invalidURL` when `config.redis.url` is missing or malformed.
    public init(
        config: HubConfig,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "statushub.redis"),
        healthCheckInterval: Duration = .seconds(5)
    ) throws {
        guard let text = config.redis.url else { throw RedisError.invalidURL("redis.url is not set") }
        let url = try RedisURL(parsing: text)
        let backoff = Backoff(
            initialSeconds: config.redis.reconnectInitialSeconds, maximumSeconds: config.redis.reconnectMaxSeconds)
        let script = self.script
        self.url = url
        self.config = config
        self.logger = logger
        // Every new connection loads the script: a restarted Redis has forgotten it, and loading it up front
        // means the pipelined EVALSHAs of a batch do not meet NOSCRIPT halfway through.
        self.commands = ReconnectingConnection(
            url: url, commandTimeoutSeconds: config.redis.commandTimeoutSeconds, backoff: backoff,
            eventLoopGroup: eventLoopGroup, logger: logger,
            prepare: { connection in try await script.load(on: connection) })
        // The subscriber catches up through its own reference to the command connection: capturing `self` here
        // would need `self` before it is initialized.
        let commands = self.commands
        let streamKey = config.redis.streamKey
        self.subscriber = RedisSubscriber(
            url: url, channel: config.redis.pubsubChannel, commandTimeoutSeconds: config.redis.commandTimeoutSeconds,
            backoff: backoff, healthCheckInterval: healthCheckInterval, eventLoopGroup: eventLoopGroup,
            logger: logger,
            catchUp: { after in
                try await Self.history(on: commands.connection(), streamKey: streamKey, after: after, limit: 1000)
            })
    }

    // MARK: Engine

    public var isReady: Bool { commands.isConnected && subscriber.isConnected }

    /// Whether the command connection is up (the subscriber may not be).
    public var isCommandConnectionReady: Bool { commands.isConnected }

    /// The pub/sub connection's state.
    public var subscriberState: RedisConnectionState { subscriber.state }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        guard !events.isEmpty else { return [] }
        do {
            let connection = try await commands.connection()
            let chunks = stride(from: 0, to: events.count, by: AppendScript.chunkSize).map {
                events[$0..<min($0 + AppendScript.chunkSize, events.count)]
            }
            var sha = try await currentScriptSHA(on: connection)
            var replies = try await connection.pipeline(
                chunks.map { AppendScript.arguments(sha: sha, events: $0, config: config) })

            // NOSCRIPT: someone flushed the script cache since this connection loaded it. Nothing of those chunks
            // ran, so reload and run them again, in order. (Only if another client reloaded the script between two
            // of our pipelined chunks could a retried chunk land after a later one; an operator's SCRIPT FLUSH
            // during a batch is the price of that.)
            let missing = replies.indices.filter { replies[$0].errorMessage?.hasPrefix("NOSCRIPT") == true }
            if !missing.isEmpty {
                logger.warning("redis forgot the append script; reloading it")
                sha = try await script.load(on: connection)
                let retried = try await connection.pipeline(
                    missing.map { AppendScript.arguments(sha: sha, events: chunks[$0], config: config) })
                for (index, reply) in zip(missing, retried) { replies[index] = reply }
            }

            var ids: [Appended] = []
            ids.reserveCapacity(events.count)
            for (chunk, reply) in zip(chunks, replies) {
                if case .error(let message) = reply {
                    if !ids.isEmpty {
                        // Earlier chunks are stored and published; the caller will retry the whole batch, so
                        // those events will arrive twice. Redis refusing writes mid-batch is the only way here.
                        logger.warning(
                            "redis refused part of a batch after storing the start of it",
                            metadata: ["stored": "\(ids.count)", "batch": "\(events.count)", "error": "\(message)"])
                    }
                    throw EngineUnavailable(reason: "Redis refused the events: \(message)")
                }
                ids.append(contentsOf: try Self.parseIDs(reply, expected: chunk.count))
            }
            return ids
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
            let position = try await lastStoredID(on: connection)
            guard !patterns.isEmpty else { return Snapshot(events: [], position: position) }
            var found: [String: StoredEvent] = [:]
            for event in try await read(keys: plan.directKeys, on: connection) { found[event.entityKey] = event }
            // One SCAN per key prefix, concurrently: their commands interleave on the one pipelined connection.
            try await withThrowingTaskGroup(of: [StoredEvent].self) { group in
                for type in plan.scanTypes {
                    group.addTask { try await self.scan(prefix: type.cacheKeyPrefix, on: connection) }
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
        }
    }

    // MARK: history (resume)

    /// Up to `limit` stored events after `id`, oldest first — the history stream read with `XRANGE (id + COUNT` —
    /// or nil when the stream no longer holds everything after `id` (see `historyIsComplete`).
    /// - Throws: `EngineUnavailable`.
    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? {
        guard try await historyIsComplete(after: id) else { return nil }
        do {
            return try await Self.history(
                on: commands.connection(), streamKey: config.redis.streamKey, after: id, limit: limit)
        } catch {
            throw unavailable(error)
        }
    }

    /// The id of the newest event in the history stream, nil if there is none.
    private func lastStoredID(on connection: RedisConnection) async throws -> EventID? {
        let reply = try await connection.send(["XREVRANGE", config.redis.streamKey, "+", "-", "COUNT", "1"]).orThrow()
        guard case .array(let entries) = reply, case .array(let newest)? = entries.first else { return nil }
        return newest.first?.text.flatMap(EventID.init)
    }

    /// Whether the history still holds every event after `id`, so a resume from `id` misses nothing. False when
    /// trimming (`XADD MAXLEN ~`) has dropped events newer than `id`, and false when the history does not know
    /// `id` at all (the stream was lost, e.g. a Redis restarted without persistence): that subscriber must resync.
    /// - Throws: `EngineUnavailable`.
    public func historyIsComplete(after id: EventID) async throws -> Bool {
        do {
            let reply = try await commands.connection().send(["XINFO", "STREAM", config.redis.streamKey])
            if case .error(let message) = reply, message.contains("no such key") { return false }
            guard case .array(let fields) = try reply.orThrow() else {
                throw RedisError.unexpectedReply("XINFO STREAM answered \(reply)")
            }
            var info: [String: RedisReply] = [:]
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                if let name = fields[index].text { info[name] = fields[index + 1] }
            }
            // `id` must lie within what the stream holds: trimming removes the oldest entries first, so all that
            // follows its first retained entry is intact. An id before it was either trimmed or predates this
            // stream (a lost and recreated one); either way, what came after it may be gone. Conservative by one
            // case: an id that was itself the last entry trimmed also answers false.
            guard let lastID = info["last-generated-id"]?.text.flatMap(EventID.init), id <= lastID,
                case .array(let first)? = info["first-entry"], let firstID = first.first?.text.flatMap(EventID.init)
            else { return false }
            return id >= firstID
        } catch {
            throw unavailable(error)
        }
    }

    /// Closes the command connection. `run` ends when its task is cancelled; cancel it first.
    public func shutdown() async {
        await commands.shutdown()
    }

    // MARK: private

    private func currentScriptSHA(on connection: RedisConnection) async throws -> String {
        if let sha = script.current { return sha }
        return try await script.load(on: connection)
    }

    private static func parseIDs(_ reply: RedisReply, expected: Int) throws -> [Appended] {
        guard case .array(let elements) = reply, elements.count == expected else {
            throw RedisError.unexpectedReply("the append script answered \(reply)")
        }
        return try elements.map { element in
            guard let text = element.text, let id = EventID(text) else {
                throw RedisError.unexpectedReply("the append script answered a bad id \(element)")
            }
            return Appended(id: id)
        }
    }

    static func history(on connection: RedisConnection, streamKey: String, after id: EventID, limit: Int) async throws
        -> [StoredEvent]
    {
        let reply = try await connection.send(
            ["XRANGE", streamKey, "(\(id)", "+", "COUNT", String(max(1, limit))]
        ).orThrow()
        guard case .array(let entries) = reply else { throw RedisError.unexpectedReply("XRANGE answered \(reply)") }
        return try entries.map { entry in
            guard case .array(let parts) = entry, parts.count == 2, let idText = parts[0].text,
                let id = EventID(idText), case .array(let fields) = parts[1]
            else { throw RedisError.unexpectedReply("XRANGE entry \(entry)") }
            var header: [UInt8]?
            var body: [UInt8]?
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                switch fields[index].text {
                case "h": header = fields[index + 1].bytes
                case "b": body = fields[index + 1].bytes
                default: break
                }
            }
            guard let header, let body, let routing = RoutingHeader.decode(header) else {
                throw RedisError.unexpectedReply("history entry \(id) lacks its routing header or body")
            }
            return StoredEvent(
                id: id, entityKey: routing.entityKey, channels: routing.channels,
                json: StoredEvent.assembleJSON(id: id, bodyAfterID: body), carriesState: routing.carriesState)
        }
    }

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
