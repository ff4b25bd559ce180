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
    /// Where the master is: `redis.url`, or the sentinels' answer (`redis.sentinels`).
    public let locator: any MasterLocator
    let config: HubConfig
    private let logger: Logger
    let commands: ReconnectingConnection
    private let subscriber: RedisSubscriber
    private let writer: EventWriter
    private let batcher: AppendBatcher
    private let historyStream: StreamHistory
    let keys: RedisKeys
    /// Snapshots and resume read on their own connection: a large read must not queue ingest's script calls (or the
    /// health check that decides whether Redis is up) behind its replies.
    private let reads: ReconnectingConnection
    private let readHistory: StreamHistory
    private let resumeReads: SharedHistoryReads
    private let sweeper: StaleSweeper
    /// Whether an entity key is this engine's to read and index: always, alone; with partitions, the keys of its
    /// own partition only, as other partitions' states may share its Redis (`PartitionedRedisEngine`).
    private let owns: @Sendable (String) -> Bool
    /// The cache key prefix of the counters' cached `counter_changed` states, kept under `RedisKeys.tally` names.
    private let counterPrefix: String?

    /// - Parameters:
    ///   - staleSweepInterval: how often the node also looks for expired states on its own, besides Redis's
    ///     expiry notifications (which a managed Redis may not allow turning on, and which Redis sends only once
    ///     it gets round to deleting an expired key).
    /// - Throws: `RedisError.invalidURL` when `config.redis.url` is missing or malformed (and no sentinels are set),
    ///   or a sentinel address is.
    public convenience init(
        config: HubConfig,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "statushub.redis"),
        healthCheckInterval: Duration = .seconds(5),
        staleSweepInterval: Duration = .seconds(5)
    ) throws {
        try self.init(
            config: config, eventLoopGroup: eventLoopGroup, logger: logger, healthCheckInterval: healthCheckInterval,
            staleSweepInterval: staleSweepInterval, owns: { _ in true })
    }

    /// - Parameters:
    ///   - owns: whether an entity key belongs to this engine (see `owns`).
    ///   - tallyTag: put before the keys of this engine's share of the tallies (`RedisKeys.tallyTag`).
    ///   - cluster: on a Redis Cluster, the partition's slot: its connections follow the slot's master, its entity
    ///     keys and tally keys carry the partition's hash tag, and it publishes and subscribes sharded (`SPUBLISH`,
    ///     `SSUBSCRIBE`).
    init(
        config: HubConfig,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        healthCheckInterval: Duration,
        staleSweepInterval: Duration,
        owns: @escaping @Sendable (String) -> Bool,
        tallyTag: String = "",
        cluster: ClusterSlotMaster? = nil
    ) throws {
        self.owns = owns
        // On a cluster one script call touches one slot: the tallies carry the partition's tag too (even alone).
        let keys = RedisKeys(streamKey: config.redis.streamKey, entityTag: cluster?.tag ?? "", tallyTag: cluster?.tag ?? tallyTag)
        self.counterPrefix = CounterDescriptor.cacheKeyPrefix(in: config.catalog)
        let backoff = Backoff(
            initialSeconds: config.redis.reconnectInitialSeconds, maximumSeconds: config.redis.reconnectMaxSeconds)
        let locator: any MasterLocator = try cluster ?? Self.locator(config: config.redis, backoff: backoff, eventLoopGroup: eventLoopGroup, logger: logger)
        let script = LoadedScript(source: cluster == nil ? AppendScript.source : AppendScript.shardedSource)
        self.locator = locator
        self.config = config
        self.logger = logger
        // Every new connection loads the script: a restarted Redis has forgotten it, and loading it up front
        // means the pipelined EVALSHAs of a batch do not meet NOSCRIPT halfway through.
        let commands = ReconnectingConnection(
            locator: locator, commandTimeoutSeconds: config.redis.commandTimeoutSeconds, backoff: backoff,
            eventLoopGroup: eventLoopGroup, logger: logger,
            prepare: { connection in try await script.load(on: connection) })
        self.commands = commands
        let writer = EventWriter(
            commands: commands, script: script, keys: keys, config: config,
            logger: logger, shifts: config.shiftSchedule)
        self.writer = writer
        self.batcher = AppendBatcher { events in try await writer.write(events, recordingCalls: true) }
        self.keys = keys
        let history = StreamHistory(commands: commands, streamKey: config.redis.streamKey)
        self.historyStream = history
        let reads = ReconnectingConnection(
            locator: locator, commandTimeoutSeconds: config.redis.commandTimeoutSeconds, backoff: backoff,
            eventLoopGroup: eventLoopGroup, logger: logger)
        self.reads = reads
        let readHistory = StreamHistory(commands: reads, streamKey: config.redis.streamKey)
        self.readHistory = readHistory
        // Three command timeouts: a storm's starved loops pass within them; a Redis that is gone is declared so
        // a little later than before, and its resumes get resync as they did.
        self.resumeReads = SharedHistoryReads(retryWithinSeconds: 3 * config.redis.commandTimeoutSeconds) { page in
            try await readHistory.page(after: page.after, limit: page.limit)
        }
        let sweeper = StaleSweeper(writer: writer, catalog: config.catalog, interval: staleSweepInterval, retryBackoff: backoff, logger: logger)
        self.sweeper = sweeper
        // The subscriber reaches the command connection, history and sweeper through their own references:
        // capturing `self` here would need `self` before it is initialized.
        let notifications = ExpiryNotifications(logger: logger, sweepInterval: staleSweepInterval)
        self.subscriber = RedisSubscriber(
            locator: locator, channel: config.redis.pubsubChannel, commandTimeoutSeconds: config.redis.commandTimeoutSeconds,
            backoff: backoff, healthCheckInterval: healthCheckInterval, eventLoopGroup: eventLoopGroup,
            logger: logger,
            catchUp: .init(
                page: { after in try await history.page(after: after, limit: 1000) },
                newest: { try await history.newest() }),
            expiry: .init(
                prepare: { connection in await notifications.enable(on: connection) },
                expired: { names in sweeper.expired(names.filter { keys.entityKey(stored: $0).map(owns) ?? false }) },
                subscribed: { sweeper.sweepSoon() }))
    }

    /// `redis.url` alone names the one Redis; with `redis.sentinels`, they name the master `redis.master_name`
    /// and `redis.url` (optional) gives its user, password and database.
    static func locator(
        config: HubConfig.Redis, backoff: Backoff, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) throws -> any MasterLocator {
        let url: RedisURL?
        do {
            url = try config.url.map { try RedisURL(parsing: $0) }
        } catch {
            throw ConfigError(description: "config: redis.url: \(error)")
        }
        guard !config.sentinels.isEmpty else {
            guard let url else { throw RedisError.invalidURL("redis.url is not set") }
            return FixedMaster(url)
        }
        guard let name = config.masterName, !name.isEmpty else {
            throw RedisError.invalidURL("redis.sentinels needs redis.master_name")
        }
        return SentinelMaster(
            sentinels: try config.sentinels.map { try SentinelMaster.Address(parsing: $0) }, masterName: name,
            template: url ?? RedisURL(host: "", port: RedisURL.defaultPort), commandTimeoutSeconds: config.commandTimeoutSeconds,
            backoff: backoff, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    // MARK: Engine

    /// Accepts events: both connections are up (the subscriber may still be catching up on what it missed).
    public var isReady: Bool { commands.isConnected && subscriber.isSubscribed }

    public var unreadyReason: String? { commands.lastFailure }

    /// Ready, and its subscriber caught up: any gap in what this node delivered has been reported.
    public var isCaughtUp: Bool { commands.isConnected && subscriber.isCaughtUp }

    /// Whether the command connection is up (the subscriber may not be).
    public var isCommandConnectionReady: Bool { commands.isConnected }

    /// Ingest requests waiting for the append call in flight to return (group commit, `AppendBatcher`).
    public var waitingAppendRequests: Int { batcher.waitingRequests }

    /// The pub/sub connection's state.
    public var subscriberState: RedisConnectionState { subscriber.state }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        do {
            return try await batcher.append(events).map { outcome in
                switch outcome {
                case .stored(let id, let late): return Appended(id: id, late: late)
                case .held(let id): return Appended(id: id, held: true)
                case .duplicate(let id): return Appended(id: id, duplicate: true)
                case .foreign(let id, let line): return Appended(id: id, foreignLine: line)
                case .claimLost, .leftQuietly: throw RedisError.unexpectedReply("the append script settled a claim for an event without one")
                }
            }
        } catch {
            throw unavailable(error)
        }
    }

    public func activeSet(key: String) async throws -> [String] {
        do {
            let reply = try await reads.connection().send(["SMEMBERS", keys.tally(key)]).orThrow()
            return (reply.array ?? []).compactMap(\.text).sorted()
        } catch {
            throw unavailable(error)
        }
    }

    public func lines(tenant: String) async throws -> [String] {
        do {
            let connection = try await reads.connection()
            let reply = try await connection.send(["SMEMBERS", keys.lineIndexes]).orThrow()
            let filed = (reply.array ?? []).compactMap(\.text).compactMap { name in
                SnapshotIndex.line(ofName: name, tenant: tenant).map { (name: name, line: $0) }
            }
            guard !filed.isEmpty else { return [] }
            // Redis deletes a set when its last member goes: an index that still exists has an entity filed.
            let exists = try await connection.pipeline(filed.map { ["EXISTS", keys.index($0.name)] })
            var lines: [String] = []
            for (index, answer) in zip(filed, exists) where try answer.orThrow().integer == 1 { lines.append(index.line) }
            return lines.sorted()
        } catch {
            throw unavailable(error)
        }
    }

    /// `GETEX … EX`: the read moves the expiry in the same step. On the master, as it writes.
    public func session(key: String) async throws -> [UInt8]? {
        do {
            let name = keys.session(key)
            let reply = try await afterMove {
                try await self.commands.connection().send(["GETEX", name, "EX", String(self.config.server.sessionExpirySeconds)]).orThrow()
            }
            guard case .string(let value) = reply else { return nil }
            return value
        } catch {
            throw unavailable(error)
        }
    }

    public func storeSession(key: String, value: [UInt8]?) async throws {
        do {
            let name = Array(keys.session(key).utf8)
            let command: [[UInt8]] = value.map { [Array("SET".utf8), name, $0, Array("EX".utf8), Array(String(config.server.sessionExpirySeconds).utf8)] }
                ?? [Array("DEL".utf8), name]
            _ = try await afterMove { try await self.commands.connection().send(command).orThrow() }
        } catch {
            throw unavailable(error)
        }
    }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        do {
            let reply = try await afterMove { try await self.commands.connection().send(["GET", self.storedName(entityKey)]).orThrow() }
            guard case .string(let json) = reply else { return nil }
            return decodeCached(json, key: entityKey)
        } catch {
            throw unavailable(error)
        }
    }

    public func snapshot(
        matching patterns: [ChannelPattern], chunkSize: Int, receive: (SnapshotChunk) async throws -> Void
    ) async throws {
        let plan = SnapshotPlan(patterns: patterns, catalog: config.catalog)
        let size = max(1, chunkSize)
        let position: EventID?
        let connection: RedisConnection
        do {
            // The position is read before the cache: every event up to it is in what follows, later ones may be.
            (connection, position) = try await afterMove { (try await self.reads.connection(), try await self.readHistory.newest()) }
        } catch {
            throw unavailable(error)
        }
        var seen = Set<String>()
        var pending: [StoredEvent] = []
        var handedOverLast = false
        func handOver(isLast: Bool) async throws {
            while pending.count >= size || (isLast && !pending.isEmpty) {
                let chunk = Array(pending.prefix(size))
                pending.removeFirst(chunk.count)
                let last = isLast && pending.isEmpty
                try await receive(SnapshotChunk(events: chunk.sorted { $0.id < $1.id }, position: position, isLast: last))
                handedOverLast = last
            }
            if isLast && !handedOverLast { try await receive(SnapshotChunk(events: [], position: position, isLast: true)) }
        }
        do {
            for start in stride(from: 0, to: plan.directKeys.count, by: size) {
                let batch = plan.directKeys[start..<min(plan.directKeys.count, start + size)].compactMap(stateKey)
                    .filter { seen.insert($0).inserted }
                pending += try await read(keys: batch, on: connection).events.filter { $0.matches(any: patterns) }
                try await handOver(isLast: false)
            }
            for name in plan.indexes {
                let index = keys.index(name)
                let line = SnapshotIndex.line(ofName: name)
                var cursor = "0"
                repeat {
                    let reply = try await connection.send(["SSCAN", index, cursor, "COUNT", String(size)]).orThrow()
                    guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text,
                        case .array(let members) = parts[1]
                    else { throw RedisError.unexpectedReply("SSCAN answered \(reply)") }
                    cursor = next
                    // SSCAN may return a member more than once, and a key may be filed under several indexes read.
                    let memberKeys = Set(members.compactMap(\.text)).subtracting(seen)
                    let (events, missing) = try await read(keys: Array(memberKeys), on: connection)
                    // A line index keeps an entity that moved to another line until a read like this one meets it;
                    // such an entity is not marked seen, so the index of the line it is on now still yields it.
                    let (filed, moved) = line == nil
                        ? (events, [])
                        : events.reduce(into: ([StoredEvent](), [StoredEvent]())) { split, event in
                            if SnapshotIndex.lineName(forChannels: event.channels) == name { split.0.append(event) } else { split.1.append(event) }
                        }
                    // By the key it was read under (a counter's share carries this partition's tag), as members are.
                    seen.formUnion(filed.map { storedName($0.entityKey) })
                    pending += filed.filter { $0.matches(any: patterns) }
                    try await dropStrays(missing + moved.map { storedName($0.entityKey) }, from: index, line: line, on: connection)
                    try await handOver(isLast: false)
                } while cursor != "0"
            }
            try await handOver(isLast: true)
        } catch let error as RedisError {
            throw unavailable(error)
        }
    }

    /// Takes index members whose state is gone (expired), or which left the index's line, out of the index — in a
    /// script that checks again, so a state written since the read keeps its filing.
    private func dropStrays(_ strays: [String], from index: String, line: String?, on connection: RedisConnection) async throws {
        guard !strays.isEmpty else { return }
        _ = try await connection.send(
            ["EVAL", Self.dropStraysScript, String(1 + strays.count), index] + strays + [line ?? ""]).orThrow()
    }

    /// KEYS: [index, entity key…]; ARGV: [the index's line, or "" for a type index]. Rarely run, so sent with EVAL.
    static let dropStraysScript = #"""
        local line = ARGV[1]
        for i = 2, #KEYS do
          local value = redis.call('GET', KEYS[i])
          if not value then
            redis.call('SREM', KEYS[1], KEYS[i])
          elseif line ~= '' then
            local ok, event = pcall(cjson.decode, value)
            if ok and event.line ~= line then redis.call('SREM', KEYS[1], KEYS[i]) end
          end
        end
        return 0
        """#

    public func run(delivering sink: any EventSink) async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.locator.watch() }
            group.addTask { await self.commands.maintain() }
            group.addTask { await self.reads.maintain() }
            group.addTask { try? await self.subscriber.run(delivering: sink) }
            group.addTask { await self.sweeper.run() }
            group.addTask { await self.buildIndexesOnce() }
        }
    }

    /// A cache written by a hub from before the snapshot indexes has states no index names: file them once (every
    /// node may try; filing is idempotent), then mark the indexes built. Retries until it succeeds or the engine stops.
    private func buildIndexesOnce() async {
        while !Task.isCancelled {
            do {
                let connection = try await reads.connection()
                if try await connection.send(["EXISTS", keys.indexesBuilt]).orThrow().integer == 1 { return }
                var cursor = "0"
                var filed = 0
                repeat {
                    let reply = try await connection.send(["SCAN", cursor, "COUNT", "1000"]).orThrow()
                    guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text,
                        case .array(let found) = parts[1]
                    else { throw RedisError.unexpectedReply("SCAN answered \(reply)") }
                    cursor = next
                    // Stored names: on a Redis Cluster, this partition's carry its tag, and other partitions' on the
                    // same master do not count.
                    let entityKeys = found.compactMap(\.text).filter { name in
                        keys.entityKey(stored: name).map { RedisKeys.isEntityKey($0, catalog: config.catalog) && owns($0) } ?? false
                    }
                    var members: [String: [String]] = [:]
                    for event in try await read(keys: entityKeys, on: connection).events where event.carriesState {
                        for name in SnapshotIndex.names(forChannels: event.channels) { members[name, default: []].append(storedName(event.entityKey)) }
                    }
                    if !members.isEmpty {
                        for reply in try await connection.pipeline(members.map { ["SADD", keys.index($0.key)] + $0.value }) {
                            _ = try reply.orThrow()
                        }
                        filed += members.values.reduce(0) { $0 + $1.count }
                    }
                } while cursor != "0"
                _ = try await connection.send(["SET", keys.indexesBuilt, "1"]).orThrow()
                if filed > 0 { logger.notice("filed cached states under the snapshot indexes", metadata: ["filed": "\(filed)"]) }
                return
            } catch {
                logger.warning("could not build the snapshot indexes yet; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    // MARK: history (resume)

    /// Up to `limit` stored events after `id`, oldest first — the history stream read with `XRANGE (id + COUNT` —
    /// or nil when the stream no longer holds everything after `id` (see `historyIsComplete`). Resumes arriving
    /// together share their reads and wait their turn in the node (`SharedHistoryReads`).
    /// - Throws: `EngineUnavailable`.
    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? {
        do {
            switch try await resumeReads.page(after: id, limit: limit) {
            case .events(let events): return events
            case .gap: return nil
            }
        } catch {
            throw unavailable(error)
        }
    }

    public func newestEvents(scanning: Int, limit: Int, keep: (StoredEvent) -> Bool) async throws -> [StoredEvent] {
        var found: [StoredEvent] = []
        var before: EventID?
        var scanned = 0
        do {
            while scanned < scanning, found.count < limit {
                let cursor = before
                let size = min(Self.newestPageSize, scanning - scanned)
                let page = try await afterMove { try await self.readHistory.page(before: cursor, limit: size) }
                scanned += page.count
                found += page.filter(keep).prefix(limit - found.count)
                // A short page is the stream's oldest end.
                guard page.count == size, let oldest = page.last else { break }
                before = oldest.id
            }
        } catch {
            throw unavailable(error)
        }
        return found
    }

    /// Entries one read of `newestEvents` takes: a page Redis answers in a millisecond or so.
    static let newestPageSize = 1000

    /// Whether the history still holds every event after `id`, so a resume from `id` misses nothing. False when
    /// trimming (by length or age) has dropped events newer than `id`, and false when the history does not know
    /// `id` at all (the stream was lost, e.g. a Redis restarted without persistence): that subscriber must resync.
    /// - Throws: `EngineUnavailable`.
    public func historyIsComplete(after id: EventID) async throws -> Bool {
        do {
            return try await afterMove { try await self.historyStream.isComplete(after: id) }
        } catch {
            throw unavailable(error)
        }
    }

    /// The newest id the history holds (nil without one): where this node's delivery of it starts.
    func newestID() async throws -> EventID? {
        do {
            return try await afterMove { try await self.readHistory.newest() }
        } catch {
            throw unavailable(error)
        }
    }

    /// Remembers each stored event's id under an idempotency key (tenant-scoped, as events carry them) for the
    /// idempotency window, exactly as the append script does for a keyed event: a later event with that key is
    /// answered as a duplicate of the id. For events stored without a key whose resend must not store them again
    /// (`PartitionedRedisEngine.append`).
    func remember(_ entries: [(key: String, id: EventID)]) async throws {
        let window = config.server.idempotencyWindowSeconds
        guard !entries.isEmpty, window > 0 else { return }
        do {
            let replies = try await commands.connection().pipeline(
                entries.map { ["SET", keys.idempotencyKey($0.key), $0.id.description, "EX", String(window)] })
            for reply in replies { _ = try reply.orThrow() }
        } catch {
            throw unavailable(error)
        }
    }

    /// Closes the command connection. `run` ends when its task is cancelled; cancel it first.
    public func shutdown() async {
        await commands.shutdown()
        await reads.shutdown()
    }

    /// This engine's cached `counter_changed` states, every tenant's: with several partitions, its share of each
    /// counter (`PartitionedRedisEngine` sums them). The counters hash names every counter this Redis counted.
    func counterStates() async throws -> [StoredEvent] {
        do {
            let connection = try await reads.connection()
            let lines = try await connection.send(["HVALS", keys.counters]).orThrow().array ?? []
            let entityKeys = Set(lines.compactMap { $0.text.flatMap(CounterDescriptor.entityKey(inScriptLine:)) })
            return try await read(keys: entityKeys.sorted().map(keys.tally), on: connection).events
        } catch {
            throw unavailable(error)
        }
    }

    // MARK: private

    /// Whether `entityKey` is a counter's (`counter:Line-2.machines_running`, any tenant's).
    private func isCounter(_ entityKey: String) -> Bool {
        CounterDescriptor.isCounterKey(entityKey, prefix: counterPrefix)
    }

    /// Where this engine keeps the state of `entityKey`, or nil when it is another partition's entity. Every
    /// partition keeps a state of each counter it counted: its share.
    private func stateKey(_ entityKey: String) -> String? {
        isCounter(entityKey) || owns(entityKey) ? storedName(entityKey) : nil
    }

    /// The Redis name of `entityKey`'s state here: a counter's under the tally tag (its share), any other under the
    /// entity tag (a cluster's partition tag, or none).
    private func storedName(_ entityKey: String) -> String {
        isCounter(entityKey) ? keys.tally(entityKey) : keys.stored(entityKey)
    }

    /// On a Redis Cluster, a read answered `MOVED` ran nowhere, and its connection has gone to the slot's new master
    /// (`ReconnectingConnection` heard the reply): it is asked there, once, rather than failing the caller.
    private func afterMove<T>(_ read: () async throws -> T) async throws -> T {
        do {
            return try await read()
        } catch RedisError.reply(let message) where locator.isCluster && message.hasPrefix("MOVED ") {
            return try await read()
        }
    }

    /// The cached events under `keys` (MGET, at most 1000 keys per command), and the keys that hold none.
    private func read(keys: [String], on connection: RedisConnection) async throws -> (events: [StoredEvent], missing: [String]) {
        guard !keys.isEmpty else { return ([], []) }
        let chunks = stride(from: 0, to: keys.count, by: 1000).map { Array(keys[$0..<min($0 + 1000, keys.count)]) }
        let replies = try await connection.pipeline(chunks.map { ["MGET"] + $0 })
        var events: [StoredEvent] = []
        var missing: [String] = []
        for (chunk, reply) in zip(chunks, replies) {
            guard case .array(let values) = try reply.orThrow(), values.count == chunk.count else {
                throw RedisError.unexpectedReply("MGET answered \(reply)")
            }
            for (key, value) in zip(chunk, values) {
                guard case .string(let json) = value else {
                    missing.append(key)
                    continue
                }
                if let event = decodeCached(json, key: key) { events.append(event) }
            }
        }
        return (events, missing)
    }

    private func decodeCached(_ json: [UInt8], key: String) -> StoredEvent? {
        guard let event = StoredEvent(storedJSON: json, catalog: config.catalog) else {
            logger.warning("redis cache holds a value that is not a stored event", metadata: ["key": "\(key)"])
            return nil
        }
        return event
    }

    private func unavailable(_ error: any Error) -> EngineUnavailable {
        if let error = error as? EngineUnavailable { return error }
        if let unknown = error as? AppendOutcomeUnknown {
            return EngineUnavailable(
                reason: (unknown.cause as? EngineUnavailable)?.reason ?? "\(unknown.cause)",
                outcome: .unknown(resendKeys: unknown.resendKeys))
        }
        var retryAfter = 1
        if case RedisError.notConnected(let seconds) = error { retryAfter = max(1, Int(seconds.rounded(.up))) }
        return EngineUnavailable(reason: "\(error)", retryAfterSeconds: retryAfter)
    }
}
