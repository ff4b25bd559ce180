import Hummingbird
import Logging
import ServiceLifecycle
import StatusHubCore
import StatusHubMQTT
import StatusHubRedis
import StatusHubServer
import Testing

/// The two engines every contract test runs against.
enum EngineKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case redis

    var testDescription: String { rawValue }
}

/// A live hub node on 127.0.0.1, port 0, stopped when the body returns (or throws).
struct RunningHub: Sendable {
    let port: Int
    let hub: StatusHub
}

func withHub<T: Sendable>(
    engine kind: EngineKind,
    configure: (inout HubConfig) -> Void = { _ in },
    _ body: (RunningHub) async throws -> T
) async throws -> T {
    switch kind {
    case .memory:
        return try await withHub(redisURL: nil, configure: configure, body)
    case .redis:
        return try await withRedisServer { redis in
            try await withHub(redisURL: redis.url, configure: configure, body)
        }
    }
}

/// A hub on the memory engine, one Redis, or three partitions over three independent redis-servers or a three-master
/// Redis Cluster.
func withHub<T: Sendable>(
    on kind: ContractEngine,
    configure: (inout HubConfig) -> Void = { _ in },
    _ body: (RunningHub) async throws -> T
) async throws -> T {
    switch kind {
    case .memory: return try await withHub(engine: EngineKind.memory, configure: configure, body)
    case .redis: return try await withHub(engine: EngineKind.redis, configure: configure, body)
    case .threeShards, .threeMasterCluster:
        return try await withPartitionServers(for: kind) { place in
            try await withHub(redisURL: nil, configure: { config in
                place(&config)
                configure(&config)
            }, body)
        }
    }
}

/// For a partitioned kind: its servers — three redis-servers, or a three-master Redis Cluster — started for the body
/// and stopped after it; the body gets the settings that place a hub's three partitions on them.
func withPartitionServers<T>(
    for kind: ContractEngine, _ body: (_ place: @Sendable (inout HubConfig) -> Void) async throws -> T
) async throws -> T {
    precondition(kind.isPartitioned, "\(kind) has no partitions to place")
    if kind == .threeMasterCluster {
        return try await withRedisCluster { cluster in
            let seeds = cluster.seeds.map(\.description)
            return try await body { config in
                config.redis.cluster = seeds
                config.redis.partitions = 3
            }
        }
    }
    return try await withShards(3) { shards in
        let urls = shards.map(\.url)
        return try await body { config in
            config.redis.shards = urls
            config.redis.partitions = 3
        }
    }
}

/// - Parameter redisHealthCheck: how often the Redis engine PINGs its connections; a test that hangs Redis on
///   purpose sets it long, so that only its own commands meet the hang.
func withHub<T: Sendable>(
    redisURL: String?,
    configure: (inout HubConfig) -> Void = { _ in },
    redisHealthCheck: Duration = .seconds(5),
    awaitBridges: Bool = true,
    awaitReady: Bool = true,
    _ body: (RunningHub) async throws -> T
) async throws -> T {
    var config = HubConfig()
    config.server.host = "127.0.0.1"
    config.server.port = 0
    config.redis.url = redisURL
    config.redis.reconnectMaxSeconds = 0.5
    // A liveness bound, not the 2 s default: a starved full-suite run held a reply past 2 s, which the engine rightly
    // takes for a lost connection (answering 503), in tests about something else. Tests of the timeout set their own.
    config.redis.commandTimeoutSeconds = 10
    configure(&config)
    var logger = Logger(label: "test-hub")
    logger.logLevel = .warning
    // `configure` may set `redis.shards`, `redis.cluster` (or several `redis.partitions`): the partitioned engine, as
    // `statushub serve` picks it.
    let partitioned = !config.redis.shards.isEmpty || !config.redis.cluster.isEmpty || (redisURL != nil && config.redis.partitionCount > 1)
    let engine: any Engine = if partitioned {
        try PartitionedRedisEngine(config: config, logger: logger, healthCheckInterval: redisHealthCheck)
    } else if redisURL != nil {
        try RedisEngine(config: config, logger: logger, healthCheckInterval: redisHealthCheck)
    } else {
        MemoryEngine(config: config)
    }
    var hub = try StatusHub(config: config, engine: engine)
    if config.mqtt.isEnabled {
        hub.bridges = [try MQTTBridge(config: config, engine: engine, registry: hub.metrics.registry, logger: logger)]
    }
    let ports = AsyncStream<Int>.makeStream()
    let app = hub.makeApplication(logger: logger) { port in ports.continuation.yield(port) }
    let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        defer {
            tasks.cancelAll()
        }
        var iterator = ports.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestSocket.Timeout(waitingFor: "hub to start") }
        // Wait until the engine is connected, as a load balancer's readiness check would (a liveness bound: a
        // starved CI run needed more than 10 s to ready a cluster or a Sentinel-found master).
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while awaitReady, !engine.isReady || (engine as? PartitionedRedisEngine)?.unreadyPartitions.isEmpty == false {
            guard ContinuousClock.now < deadline else { throw TestSocket.Timeout(waitingFor: "engine ready") }
            try await Task.sleep(for: .milliseconds(10))
        }
        // And the bridges connected to their brokers (their first connect runs on a thread of its own: slower under load).
        let bridgeDeadline = ContinuousClock.now.advanced(by: .seconds(30))
        while awaitBridges, hub.bridges.contains(where: { $0.problem != nil }) {
            guard ContinuousClock.now < bridgeDeadline else { throw TestSocket.Timeout(waitingFor: "bridges connected") }
            try await Task.sleep(for: .milliseconds(10))
        }
        do {
            let result = try await body(RunningHub(port: port, hub: hub))
            await group.triggerGracefulShutdown()
            try await tasks.next()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}
