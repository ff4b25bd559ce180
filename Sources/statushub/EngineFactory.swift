import NIOPosix
import StatusHubServer
import Logging
import StatusHubCore
import StatusHubRedis

/// The engine a config asks for: Redis when `redis.url` (or `redis.sentinels`) is set — partitioned with
/// `redis.shards`, `redis.cluster` or more than one `redis.partitions` — otherwise the embedded memory engine.
enum EngineFactory {
    /// The Redis connections' own event loop, beside the ones serving clients. NIO runs every task queued on a loop
    /// before it reads its sockets again, so when thousands of dashboards reconnect at once (a restarted node) a
    /// client loop can go seconds between reads: Redis's replies sat unread until the connections' own command
    /// and connect timeouts (2 s) closed them, and the node told half of 19,000 resuming dashboards `unavailable`
    /// and `resync` (loadtest/RESULTS.md, restart storm). On a loop of its own a connection reads, times out and
    /// reconnects by what Redis does, not by how busy the clients keep the node.
    static let redisLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static func make(config: HubConfig, logger: Logger) throws -> any Engine {
        let placed = !config.redis.shards.isEmpty || !config.redis.cluster.isEmpty
        guard config.redis.url != nil || !config.redis.sentinels.isEmpty || placed else {
            return MemoryEngine(config: config)
        }
        guard config.redis.partitionCount > 1 || placed else {
            return try RedisEngine(config: config, eventLoopGroup: redisLoop, logger: logger)
        }
        return try PartitionedRedisEngine(config: config, eventLoopGroup: redisLoop, logger: logger)
    }
}
