import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import StatusHubMQTT
import StatusHubRedis
import ServiceLifecycle
import StatusHubServer
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a hub node (the memory engine unless Redis is configured)."
    )

    @Option(name: .long, help: "YAML config file (see config/statushub.yaml). STATUSHUB_* environment variables override it.")
    var config: String?

    @Option(name: .long, help: "Address to bind (overrides server.host).")
    var host: String?

    @Option(name: .long, help: "Port to bind (overrides server.port).")
    var port: Int?

    @Option(name: .long, help: "Redis URL, e.g. redis://127.0.0.1:6379 (overrides redis.url). Without one: the memory engine.")
    var redis: String?

    func run() async throws {
        // Every subscriber holds a descriptor: raise the soft limit to the hard one before anything opens one
        // (`DescriptorLimit`; systemd's default soft limit, 1,024, would stop a node at ~1,000 dashboards).
        let descriptors = DescriptorLimit.raiseToHard()
        // One event loop per CPU the node may run on (NIO counts the machine's, so a node given one CPU by taskset or
        // a cpuset ran two loops switching on it: 10–24 % fewer single-event POSTs, loadtest/RESULTS.md). Set before
        // anything uses NIO's singletons; NIO_SINGLETON_GROUP_LOOP_COUNT still overrides it.
        if ProcessInfo.processInfo.environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] == nil {
            NIOSingletons.groupLoopCountSuggestion = CPUAffinity.allowedCPUs()
        }
        // Tasks then run on NIO's event loops instead of Swift's own pool: a request's decode, the engine call
        // and the socket write stay on one thread instead of hopping between the two pools (each hop a wake-up
        // through an eventfd). The hub's async code never blocks a thread, which this requires.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        // A config that cannot be used (a bad key, or a file it names) is a usage error, reported as such.
        do {
            try await serve(descriptors: descriptors)
        } catch let error as ConfigError {
            throw ValidationError(error.description)
        }
    }

    /// The file's config with the environment's and the flags' overrides: at start, and again on SIGHUP.
    private static func loadConfig(path: String?, host: String?, port: Int?, redis: String?) throws -> HubConfig {
        var hubConfig = try HubConfig.load(path: path, environment: ProcessInfo.processInfo.environment)
        if let host { hubConfig.server.host = host }
        if let port { hubConfig.server.port = port }
        if let redis { hubConfig.redis.url = redis }
        // The flags are held to the file's ranges (`--port 70000` would wrap to 4464).
        try hubConfig.check()
        return hubConfig
    }

    private func serve(descriptors: (before: DescriptorLimit, after: DescriptorLimit)) async throws {
        let (path, hostFlag, portFlag, redisFlag) = (config, host, port, redis)
        let hubConfig = try Self.loadConfig(path: path, host: hostFlag, port: portFlag, redis: redisFlag)

        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "statushub")
        logger.logLevel = Logger.Level(rawValue: hubConfig.logLevel) ?? .info

        if descriptors.after.soft > descriptors.before.soft {
            logger.info("open-files limit raised from \(descriptors.before.soft) to \(descriptors.after.soft), the hard limit")
        }
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let engine = try EngineFactory.make(config: hubConfig, logger: logger)
        var hub = try StatusHub(config: hubConfig, engine: engine)
        if let (limit, connections) = hub.connectionsHeldByDescriptors {
            logger.warning("""
                server.max_connections is \(hubConfig.server.maxConnections), but this process may open \(limit) files \
                (ulimit -n; systemd's LimitNOFILE=): the node takes \(connections) WebSockets and SSE streams and refuses \
                more with 4503/503 (node full), keeping \(limit.keptForOthers) descriptors for publishers, Redis and MQTT
                """)
        }
        if hubConfig.mqtt.isEnabled {
            hub.bridges = [try MQTTBridge(config: hubConfig, engine: engine, registry: hub.metrics.registry, logger: logger)]
        }
        // The password never reaches the log.
        let engineName = (engine as? RedisEngine).map { "redis (\($0.locator))" }
            ?? (engine as? PartitionedRedisEngine).map { partitioned in
                let placement = partitioned.cluster.map { "the Redis Cluster of \($0.seeds.map(\.description).joined(separator: ", "))" }
                    ?? Set(partitioned.partitions.map { "\($0.locator)" }).sorted().joined(separator: ", ")
                return "redis, \(partitioned.map.count) partitions on \(placement)"
            } ?? "memory"
        let host = hubConfig.server.host
        let scheme = hubConfig.server.usesTLS ? "https" : "http"
        let services = hub.makeServices(logger: logger) { [logger] port in
            logger.notice("statushub listening on \(scheme)://\(host):\(port) — engine: \(engineName), allocator: \(Allocator.version ?? "the C library's")")
        } + [
            HangupReload(
                hangups: hangups, hub: hub, source: path ?? "the defaults and STATUSHUB_* variables",
                reread: { try Self.loadConfig(path: path, host: hostFlag, port: portFlag, redis: redisFlag) }, logger: logger)
        ]
        try await ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
    }
}
