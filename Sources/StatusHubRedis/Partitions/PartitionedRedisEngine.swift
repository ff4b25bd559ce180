import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// The engine over several partitions (`redis.partitions` > 1, or `redis.shards`): one `RedisEngine` per
/// partition — its own writer and append script calls, subscriber, history stream, stale sweeper and connections —
/// on the Redis that `HashRing` places the partition on, every key and channel named with the partition's hash tag
/// (`{p3}statushub:history`). On a Redis Cluster (`redis.cluster`) a partition is on the master serving its tag's
/// slot (`ClusterSlotMaster`), its entity keys are tagged too, and its channel is sharded (`SPUBLISH`/`SSUBSCRIBE`).
/// Entities are split by `PartitionMap`, so all of one entity's events, its cached state, its idempotency keys and
/// its staleness live in one partition, and everything per entity the single-partition engine promises holds per
/// partition.
///
/// What crosses partitions:
/// - `append`: a request's events are grouped by partition, each group one call of that partition's engine, all
///   groups at once. A failed partition does not stop the others: their events are stored, and the request is
///   answered 503 naming the failed partitions, listing the stored events with their ids (`EngineUnavailable.stored`)
///   and giving a resend key to every event without its own, so a resend of the whole request stores the failed
///   partitions' events and answers the stored ones as duplicates (see `resendKeys`).
/// - Live events: every partition's subscriber delivers to the one sink, one call at a time, each event tagged with
///   its partition and the resume token after it (`PartitionTaggingSink`); order holds per partition (so per
///   entity), not across partitions.
/// - `snapshot`: every partition's, one after the other; a snapshot has no single position (`position` nil), as
///   stream ids of different partitions do not order against each other.
/// - `history(after:)` with a single id cannot say where a subscriber stands in every partition: it answers a gap
///   (the subscriber resyncs from a snapshot). `history(afterToken:)` — the hub's `since` with a resume token —
///   resumes across partitions without gap or duplicate.
/// - Counters and active sets (`Tally`): a line's machines span partitions, so each partition keeps its own share of
///   every counter and set, moved atomically in its own append script as alone, under keys carrying its hash tag
///   (`{p3}stats:line:L2:machines_running`). What users see is the whole: an active set is the union of the
///   partitions' sets, and a counter's `counter_changed` — delivered live, replayed, in a snapshot, `latest` —
///   carries the sum of every partition's share (`CounterShares`), eventually the same on every node.
public final class PartitionedRedisEngine: Engine {
    public let map: PartitionMap
    /// Partition → the engine that holds it.
    public let partitions: [RedisEngine]
    /// Partition → the index in `redis.shards` of its server (all 0 without shards, and on a Redis Cluster, where
    /// `cluster`'s slot map places them).
    public let placement: [Int]
    /// With `redis.cluster`: the slot map every partition's connections find their master in.
    public let cluster: ClusterClient?
    private let idempotencyWindowSeconds: Int
    private let logger: Logger
    /// The sink `run` delivers through, which knows where this node stands in each partition.
    private let tagging = Mutex<PartitionTaggingSink?>(nil)
    /// Every partition's share of each counter, as this node last heard it.
    private let shares: CounterShares

    /// - Throws: `ConfigError` naming the key when the partitions cannot be set up as configured (a shard URL that
    ///   does not parse, two naming one server); `RedisError.invalidURL` as `RedisEngine` does.
    public init(
        config: HubConfig,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "statushub.redis"),
        healthCheckInterval: Duration = .seconds(5),
        staleSweepInterval: Duration = .seconds(5)
    ) throws {
        try config.redis.check()
        let cluster = try Self.clusterClient(config: config, eventLoopGroup: eventLoopGroup, logger: logger)
        // On a Redis Cluster even one partition is tagged (its keys must share a slot), and the tags spread the slots.
        let map = PartitionMap(count: config.redis.partitionCount, forCluster: cluster != nil)
        var shardURLs: [RedisURL] = []
        for (index, shard) in config.redis.shards.enumerated() {
            do {
                shardURLs.append(try RedisURL(parsing: shard))
            } catch {
                throw ConfigError(description: "config: redis.shards[\(index)]: \(error)")
            }
        }
        let identities = shardURLs.map { "\($0.host):\($0.port)/\($0.database)" }
        for (index, identity) in identities.enumerated() {
            if let first = identities.firstIndex(of: identity), first != index {
                throw ConfigError(description: "config: redis.shards[\(index)] names the same server as redis.shards[\(first)] (\(identity))")
            }
        }
        let ring = identities.isEmpty ? nil : HashRing(servers: identities)
        let placement = ring?.placement(partitions: map.count) ?? Array(repeating: 0, count: map.count)
        for (index, identity) in identities.enumerated() where !placement.contains(index) {
            logger.warning(
                "a shard holds none of the partitions; raise redis.partitions to use it",
                metadata: ["shard": "\(identity)", "redis.partitions": "\(map.count)"])
        }
        self.map = map
        self.cluster = cluster
        self.placement = placement
        self.idempotencyWindowSeconds = config.server.idempotencyWindowSeconds
        self.logger = logger
        self.shares = CounterShares(catalog: config.catalog, partitions: map.count)
        self.partitions = try (0..<map.count).map { partition in
            var partitionConfig = config
            if !config.redis.shards.isEmpty { partitionConfig.redis.url = config.redis.shards[placement[partition]] }
            partitionConfig.redis.shards = []
            if let seed = config.redis.cluster.first { partitionConfig.redis.url = seed }
            partitionConfig.redis.cluster = []
            partitionConfig.redis.streamKey = map.name(config.redis.streamKey, partition: partition)
            partitionConfig.redis.pubsubChannel = map.name(config.redis.pubsubChannel, partition: partition)
            var partitionLogger = logger
            partitionLogger[metadataKey: "partition"] = "\(partition)"
            return try RedisEngine(
                config: partitionConfig, eventLoopGroup: eventLoopGroup, logger: partitionLogger,
                healthCheckInterval: healthCheckInterval, staleSweepInterval: staleSweepInterval,
                owns: { key in map.partition(ofEntityKey: key) == partition }, tallyTag: map.hashTag(partition),
                cluster: cluster.map { ClusterSlotMaster(client: $0, tag: map.hashTag(partition)) })
        }
    }

    /// The client whose slot map places the partitions with `redis.cluster`; nil without.
    /// - Throws: `ConfigError` naming the seed that does not parse.
    private static func clusterClient(config: HubConfig, eventLoopGroup: any EventLoopGroup, logger: Logger) throws -> ClusterClient? {
        guard !config.redis.cluster.isEmpty else { return nil }
        // `HubConfig.Redis.check` has refused other databases already.
        let seeds = try config.redis.cluster.enumerated().map { index, seed in
            do {
                return try RedisURL(parsing: seed)
            } catch {
                throw ConfigError(description: "config: redis.cluster[\(index)]: \(error)")
            }
        }
        var clusterLogger = logger
        clusterLogger[metadataKey: "redis.cluster"] = "\(seeds.map(\.description).joined(separator: ","))"
        return ClusterClient(
            seeds: seeds, commandTimeoutSeconds: config.redis.commandTimeoutSeconds, eventLoopGroup: eventLoopGroup,
            logger: clusterLogger)
    }

    // MARK: Engine

    /// While any partition accepts events: a node whose one shard is down still serves the others (a load
    /// balancer that took every node out over one shard would stop them all). `unreadyPartitions` names the rest.
    public var isReady: Bool { partitions.contains { $0.isReady } }

    public var unreadyReason: String? { unavailableParts }

    /// The partitions that cannot accept events now, or where this node does not yet know where it stands: its
    /// subscriber is still catching up (a gap it may find is not reported yet), its delivery's start is unknown (no
    /// resume token can be given), or its counter shares are being read again after a gap.
    public var unreadyPartitions: [Int] {
        partitions.indices.filter { unreadiness(ofPartition: $0) != nil }
    }

    /// Why `partition` is not ready, nil when it is.
    func unreadiness(ofPartition partition: Int) -> PartitionUnreadiness? {
        let engine = partitions[partition]
        if !engine.isReady { return .notConnected }
        if !engine.isCaughtUp { return .catchingUp }
        if tagging.withLock({ $0 })?.knows(partition: partition) != true { return .startUnknown }
        if !shares.knows(partition: partition) { return .readingCounters }
        return nil
    }

    public func append(_ events: [ValidatedEvent]) async throws -> [Appended] {
        let partitionOf = events.map { map.partition(ofEntityKey: $0.entityKey) }
        var groups: [Int: [Int]] = [:]
        for (index, partition) in partitionOf.enumerated() { groups[partition, default: []].append(index) }
        if groups.count <= 1 {
            guard let partition = groups.keys.first else { return [] }
            return try await partitions[partition].append(events)
        }
        let outcomes = await withTaskGroup(of: (Int, Result<[Appended], EngineUnavailable>).self) { group in
            for (partition, indexes) in groups {
                let engine = partitions[partition]
                let groupEvents = indexes.map { events[$0] }
                group.addTask {
                    do {
                        return (partition, .success(try await engine.append(groupEvents)))
                    } catch let unavailable as EngineUnavailable {
                        return (partition, .failure(unavailable))
                    } catch {
                        return (partition, .failure(EngineUnavailable(reason: "\(error)")))
                    }
                }
            }
            var outcomes: [Int: Result<[Appended], EngineUnavailable>] = [:]
            for await (partition, outcome) in group { outcomes[partition] = outcome }
            return outcomes
        }
        var appended = [Appended?](repeating: nil, count: events.count)
        var failures: [(partition: Int, unavailable: EngineUnavailable)] = []
        for (partition, outcome) in outcomes {
            switch outcome {
            case .success(let results):
                for (index, result) in zip(groups[partition]!, results) { appended[index] = result }
            case .failure(let unavailable):
                failures.append((partition, unavailable))
            }
        }
        guard !failures.isEmpty else { return appended.map { $0! } }
        failures.sort { $0.partition < $1.partition }
        let reason = failures.map { "partition \($0.partition): \($0.unavailable.reason)" }.joined(separator: "; ")
        let retryAfter = failures.map(\.unavailable.retryAfterSeconds).max() ?? 1
        if failures.count == groups.count, failures.allSatisfy({ $0.unavailable.outcome == .notStored }) {
            throw EngineUnavailable(reason: reason, retryAfterSeconds: retryAfter, outcome: .notStored)
        }
        let resendKeys = await resendKeys(for: events, groups: groups, appended: appended, failures: failures)
        let stored = groups.count - failures.count
        logger.warning(
            "a request was stored in some partitions only",
            metadata: ["failed_partitions": "\(failures.map(\.partition))", "stored_partitions": "\(stored)"])
        throw EngineUnavailable(
            reason: "\(reason) (the events of \(stored) other partition\(stored == 1 ? "" : "s") were stored)",
            retryAfterSeconds: retryAfter, outcome: .unknown(resendKeys: resendKeys), stored: appended)
    }

    /// The key each event of a request stored in some partitions only is to be resent with, so that a resend of the
    /// whole request stores every event once: for a stored event without a key of its own, a hub key
    /// (`CallRecords`' form) remembered now in its partition with its id, so the resend is a duplicate of it; for
    /// one whose partition did not store it, a hub key no call recorded, so the resend stores it; for one whose
    /// partition lost the answer, the key that partition gave. Nil for events with their own key (resent with it),
    /// with idempotency off, and for stored events whose key could not be remembered (their partition failed in
    /// between): the 503 lists those under `stored`, and only the others should be resent.
    /// Only this failure path costs anything: a request that is stored everywhere writes no key.
    private func resendKeys(
        for events: [ValidatedEvent], groups: [Int: [Int]], appended: [Appended?],
        failures: [(partition: Int, unavailable: EngineUnavailable)]
    ) async -> [String?] {
        var keys = [String?](repeating: nil, count: events.count)
        guard idempotencyWindowSeconds > 0 else { return keys }
        var token = CallRecords.newToken()
        var position = 0
        func freshKey() -> String {
            if position == AppendScript.chunkSize {
                token = CallRecords.newToken()
                position = 0
            }
            defer { position += 1 }
            return CallRecords.hubKey(token: token, position: position)
        }
        let failed = Dictionary(uniqueKeysWithValues: failures.map { ($0.partition, $0.unavailable) })
        for (partition, indexes) in groups.sorted(by: { $0.key < $1.key }) {
            let keyless = indexes.filter { events[$0].idempotencyKey == nil }
            switch failed[partition]?.outcome {
            case nil:
                var remembered: [(key: String, id: EventID)] = []
                for index in keyless {
                    guard let stored = appended[index] else { continue }
                    let key = freshKey()
                    keys[index] = key
                    remembered.append((Tenant.prefix(events[index].tenant) + key, stored.id))
                }
                do {
                    try await partitions[partition].remember(remembered)
                } catch {
                    logger.warning(
                        "could not remember the keys of events stored in a partition; they are listed as stored without one",
                        metadata: ["partition": "\(partition)", "error": "\(error)"])
                    for index in keyless { keys[index] = nil }
                }
            case .notStored?:
                for index in keyless { keys[index] = freshKey() }
            case .unknown(let given)?:
                for (index, key) in zip(indexes, given) { keys[index] = key }
            }
        }
        return keys
    }

    public func partition(ofEntityKey key: String) -> Int { map.partition(ofEntityKey: key) }

    public func latest(entityKey: String) async throws -> StoredEvent? {
        if shares.isCounter(entityKey) {
            var states: [(partition: Int, event: StoredEvent)] = []
            for (partition, engine) in partitions.enumerated() {
                if let state = try await engine.latest(entityKey: entityKey) { states.append((partition, state)) }
            }
            return shares.merged(states).first
        }
        let partition = map.partition(ofEntityKey: entityKey)
        guard var event = try await partitions[partition].latest(entityKey: entityKey) else { return nil }
        event.partition = partition
        return event
    }

    /// A session lives in the partition its key hashes to, as an entity's state does.
    public func session(key: String) async throws -> [UInt8]? {
        let partition = map.partition(ofEntityKey: key)
        return try await naming(partition) { try await partitions[partition].session(key: key) }
    }

    public func storeSession(key: String, value: [UInt8]?) async throws {
        let partition = map.partition(ofEntityKey: key)
        try await naming(partition) { try await partitions[partition].storeSession(key: key, value: value) }
    }

    /// The union of the set's members in every partition (each entity's members are added where its events go).
    public func activeSet(key: String) async throws -> [String] {
        var members = Set<String>()
        for (partition, engine) in partitions.enumerated() {
            members.formUnion(try await naming(partition) { try await engine.activeSet(key: key) })
        }
        return members.sorted()
    }

    public func lines(tenant: String) async throws -> [String] {
        var lines = Set<String>()
        for (partition, engine) in partitions.enumerated() {
            lines.formUnion(try await naming(partition) { try await engine.lines(tenant: tenant) })
        }
        return lines.sorted()
    }

    /// Runs `body` on one partition, an `EngineUnavailable` it throws named with the partition ("partition 2: not
    /// connected to Redis"): alone it did not say which of the servers to look at.
    private func naming<T>(_ partition: Int, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let unavailable as EngineUnavailable {
            throw EngineUnavailable(reason: "partition \(partition): \(unavailable.reason)", retryAfterSeconds: unavailable.retryAfterSeconds)
        }
    }

    /// Every partition's snapshot, one after the other, in chunks of up to `chunkSize` that may mix partitions;
    /// chunks carry no position (see the type's comment), the last one the resume token of each partition's position. Fails when any partition cannot be read: a snapshot
    /// missing a partition's entities would look complete.
    public func snapshot(
        matching patterns: [ChannelPattern], chunkSize: Int, receive: (SnapshotChunk) async throws -> Void
    ) async throws {
        let size = max(1, chunkSize)
        var pending: [StoredEvent] = []
        var positions: [EventID] = []
        // Every partition holds its share of a counter: they are summed once all are read (a plant has a few dozen).
        var counterShares: [(partition: Int, event: StoredEvent)] = []
        /// Hands over full chunks, oldest first within each, while more than `keeping` events wait.
        func handOverFull(keeping: Int) async throws {
            while pending.count > keeping {
                let full = Array(pending.prefix(size))
                pending.removeFirst(size)
                try await receive(SnapshotChunk(events: full.sorted { $0.id < $1.id }, position: nil, isLast: false))
            }
        }
        for (partition, engine) in partitions.enumerated() {
            try await naming(partition) {
                try await engine.snapshot(matching: patterns, chunkSize: size) { chunk in
                    if positions.count == partition { positions.append(chunk.position ?? .zero) }
                    for event in chunk.events {
                        var event = event
                        event.partition = partition
                        if shares.isCounter(event.entityKey) { counterShares.append((partition, event)) } else { pending.append(event) }
                    }
                    try await handOverFull(keeping: size - 1)
                }
            }
        }
        pending += shares.merged(counterShares)
        // The last chunk holds what is left (up to a full one): it carries the resume token.
        try await handOverFull(keeping: size)
        try await receive(SnapshotChunk(
            events: pending.sorted { $0.id < $1.id }, position: nil, isLast: true,
            resumeToken: PartitionPositions(positions).description))
    }

    /// Always a gap: one id names no position in every partition. Resume across partitions takes a
    /// `PartitionPositions` (`history(after:limit:)` below).
    public func history(after id: EventID, limit: Int) async throws -> [StoredEvent]? { nil }

    /// Up to `limit` events after `positions`, partition by partition (oldest first within each), each with its
    /// partition; nil when some partition's history no longer holds everything after its position. Advance the
    /// positions past what was returned and ask again until it answers empty.
    public func history(after positions: PartitionPositions, limit: Int) async throws -> [(partition: Int, event: StoredEvent)]? {
        guard positions.positions.count == partitions.count else { return nil }
        var found: [(partition: Int, event: StoredEvent)] = []
        for (partition, engine) in partitions.enumerated() where found.count < limit {
            let wanted = limit - found.count
            guard let page = try await naming(partition, { try await engine.history(after: positions.positions[partition], limit: wanted) })
            else { return nil }
            found += page.map { (partition, $0) }
        }
        return found
    }

    /// `history(after:limit:)` for the hub's `since`: each event tagged with its partition and the token that
    /// resumes right after it. Nil for a gap, and for a token that does not parse or names another number of
    /// partitions (the subscriber resyncs).
    public func history(afterToken token: String, limit: Int) async throws -> [StoredEvent]? {
        guard var positions = try? PartitionPositions(parsing: token, partitions: partitions.count),
            let page = try await history(after: positions, limit: limit)
        else { return nil }
        return page.map { partition, event in
            var event = event
            positions.advance(past: PartitionedEventID(partition: partition, id: event.id))
            event = shares.replaying(event, partition: partition)
            event.partition = partition
            event.resumeToken = positions.description
            return event
        }
    }

    /// Each partition's newest, in partition order: the partitions' ids do not order against each other.
    public func newestEvents(scanning: Int, limit: Int, keep: (StoredEvent) -> Bool) async throws -> [StoredEvent] {
        var found: [StoredEvent] = []
        for (partition, engine) in partitions.enumerated() {
            found += try await naming(partition) { try await engine.newestEvents(scanning: scanning, limit: limit, keep: keep) }.map { event in
                var event = event
                event.partition = partition
                return event
            }
        }
        return found
    }

    /// Runs every partition's engine, delivering their events to `sink` one at a time, each tagged with its
    /// partition and, once this node knows where it stands in every partition, the token that resumes after it.
    public func run(delivering sink: any EventSink) async throws {
        let tagging = PartitionTaggingSink(sink, partitions: partitions.count, shares: shares)
        self.tagging.withLock { $0 = tagging }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.readShares() }
            for (partition, engine) in partitions.enumerated() {
                // Where this node's delivery of the partition starts: read before its subscriber starts, so the
                // subscriber (which starts from the newest it reads itself) delivers nothing before it. Until it
                // is known (the shard is down), the partition's first delivered event tells.
                group.addTask {
                    while !Task.isCancelled {
                        do {
                            tagging.start(partition: partition, at: try await engine.newestID())
                            return
                        } catch {
                            // Not connected yet, or the shard is down: ask again, unless a delivery told meanwhile.
                        }
                        if tagging.knows(partition: partition) { return }
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                }
                group.addTask { try? await engine.run(delivering: tagging.sink(forPartition: partition)) }
            }
        }
    }

    public func shutdown() async {
        for engine in partitions { await engine.shutdown() }
        await cluster?.shutdown()
    }

    /// Reads each partition's counter shares when the node starts and whenever it lost them (`CounterShares`),
    /// retrying while the partition cannot be read; until then the partition counts as not ready.
    private func readShares() async {
        await withTaskGroup(of: Void.self) { group in
            for await partition in shares.toRead {
                group.addTask { [partitions, shares, logger] in
                    while !Task.isCancelled {
                        do {
                            shares.learn(try await partitions[partition].counterStates(), partition: partition)
                            return
                        } catch {
                            logger.debug("could not read a partition's counters yet", metadata: ["partition": "\(partition)", "error": "\(error)"])
                        }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
        }
    }
}

/// Why a partition is not ready: each says what a client of its entities meets meanwhile.
enum PartitionUnreadiness: CaseIterable {
    case notConnected, catchingUp, startUnknown, readingCounters

    var explanation: String {
        switch self {
        case .notConnected: "not connected: their entities' events answer 503"
        case .catchingUp: "catching up on the history missed while away: events are accepted, delivery resumes after it"
        case .startUnknown: "where this node's delivery starts is not known yet: events are accepted, resume tokens wait for it"
        case .readingCounters: "reading their counters again after their history was lost: events are accepted"
        }
    }
}

extension PartitionedRedisEngine: PartialAvailability {
    /// One clause per reason, naming the partitions and their servers.
    public var unavailableParts: String? {
        let reasons = partitions.indices.compactMap { partition in unreadiness(ofPartition: partition).map { (partition, $0) } }
        guard !reasons.isEmpty else { return nil }
        return PartitionUnreadiness.allCases.compactMap { reason -> String? in
            let unready = reasons.filter { $0.1 == reason }.map(\.0)
            return unready.isEmpty ? nil : describe(unready, reason.explanation)
        }.joined(separator: "; ")
    }

    public var unreadableParts: String? {
        let down = partitions.indices.filter { unreadiness(ofPartition: $0) == .notConnected }
        return down.isEmpty ? nil : describe(down, "not connected: their entities' states cannot be read now")
    }

    /// "partitions 0, 3 of 6 (redis://a, redis://b) <explanation>": the partitions and the servers that hold them.
    private func describe(_ some: [Int], _ explanation: String) -> String {
        let servers = Set(some.map { "\(partitions[$0].locator)" }).sorted()
        return "partition\(some.count == 1 ? "" : "s") \(some.map(String.init).joined(separator: ", ")) of \(partitions.count) (\(servers.joined(separator: ", "))) \(explanation)"
    }
}

extension PartitionedRedisEngine: WriteProbe {
    /// A refusal only when no partition takes writes; a partition that refuses is logged, and its events answer
    /// 503 on their own (the node keeps serving the others). The partitions are probed at once, each given
    /// `probeDeadline`, and one known to be down is not asked: probed one after another, a hung server (SIGSTOP, a
    /// stalled disk) held every node's `/ready` for a command timeout per partition it holds — 1–7 s, past a load
    /// balancer's check, so one shard took every node out.
    public func writeRefusal() async -> String? {
        let refusals = await withTaskGroup(of: (Int, String?).self, returning: [String].self) { group in
            for (partition, engine) in partitions.enumerated() {
                group.addTask {
                    guard engine.isReady else { return (partition, "not connected") }
                    return (partition, await Self.firstOf(engine.writeRefusal, orAfter: Self.probeDeadline))
                }
            }
            var refusals: [(Int, String)] = []
            for await (partition, refusal) in group { if let refusal { refusals.append((partition, refusal)) } }
            return refusals.sorted { $0.0 < $1.0 }.map { "partition \($0.0): \($0.1)" }
        }
        guard refusals.count == partitions.count else {
            if !refusals.isEmpty { logger.debug("some partitions refuse writes", metadata: ["refusals": "\(refusals)"]) }
            return nil
        }
        return refusals.joined(separator: "; ")
    }

    /// How long `/ready` waits for one partition's probe: a Redis that takes a write answers within a millisecond.
    static let probeDeadline: Duration = .milliseconds(500)

    /// `probe`'s answer, or a refusal once `deadline` passed first; the probe itself runs on to its command timeout.
    static func firstOf(_ probe: @escaping @Sendable () async -> String?, orAfter deadline: Duration) async -> String? {
        let answered = Mutex(false)
        return await withCheckedContinuation { continuation in
            let answer: @Sendable (String?) -> Void = { answer in
                if answered.withLock({ first in defer { first = true }; return !first }) { continuation.resume(returning: answer) }
            }
            Task { answer(await probe()) }
            Task {
                try? await Task.sleep(for: deadline)
                answer("Redis did not answer a write within \(deadline)")
            }
        }
    }
}

/// The one sink of a node fed by several partitions' subscribers at once: hands their events on one at a time, as
/// the sink's contract asks, each tagged with its partition and, once the node knows its position in every
/// partition, the resume token after it (`StoredEvent.resumeToken`): everything this node delivered up to there, in
/// every partition. Delivery only enqueues, so the lock is held briefly.
final class PartitionTaggingSink: Sendable {
    private let sink: any EventSink
    /// Partition → the last event this node delivered from it (or where its delivery started); nil: unknown yet.
    private let positions: Mutex<[EventID?]>
    /// Turns each partition's share of a counter into the sum in the `counter_changed` delivered.
    private let shares: CounterShares

    init(_ sink: any EventSink, partitions: Int, shares: CounterShares) {
        self.sink = sink
        self.positions = Mutex(Array(repeating: nil, count: partitions))
        self.shares = shares
    }

    /// This node's delivery of `partition` starts after `id`, unless it delivered from it already.
    func start(partition: Int, at id: EventID?) {
        positions.withLock { if $0[partition] == nil { $0[partition] = id ?? .zero } }
    }

    func knows(partition: Int) -> Bool { positions.withLock { $0[partition] != nil } }

    func sink(forPartition partition: Int) -> some EventSink { PartitionSink(partition: partition, shared: self) }

    fileprivate func deliver(_ event: StoredEvent, partition: Int) {
        positions.withLock { positions in
            var event = shares.summing(event, partition: partition)
            event.partition = partition
            positions[partition] = max(positions[partition] ?? event.id, event.id)
            if positions.allSatisfy({ $0 != nil }) { event.resumeToken = PartitionPositions(positions.map { $0! }).description }
            sink.deliver(event)
        }
    }

    /// `partition`'s subscriber missed events it cannot replay: what this node knew of its counters may be gone too.
    fileprivate func deliveryGap(reason: String, partition: Int) {
        positions.withLock { _ in
            shares.forget(partition: partition)
            sink.deliveryGap(reason: reason)
        }
    }
}

/// One partition's subscriber's view of the node's `PartitionTaggingSink`.
private struct PartitionSink: EventSink {
    let partition: Int
    let shared: PartitionTaggingSink

    func deliver(_ event: StoredEvent) { shared.deliver(event, partition: partition) }
    func deliveryGap(reason: String) { shared.deliveryGap(reason: reason, partition: partition) }
}
