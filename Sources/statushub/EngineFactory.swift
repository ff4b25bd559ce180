import StatusHubServer
import Logging
import StatusHubCore
import StatusHubRedis

/// The engine a config asks for: Redis when `redis.url` (or `redis.sentinels`) is set — partitioned with
/// `redis.shards`, `redis.cluster` or more than one `redis.partitions` — otherwise the embedded memory engine.
enum EngineFactory {
    static func make(config: HubConfig, logger: Logger) throws -> any Engine {
        let placed = !config.redis.shards.isEmpty || !config.redis.cluster.isEmpty
        guard config.redis.url != nil || !config.redis.sentinels.isEmpty || placed else {
            return MemoryEngine(config: config)
        }
        guard config.redis.partitionCount > 1 || placed else {
            return try RedisEngine(config: config, logger: logger)
        }
        return try PartitionedRedisEngine(config: config, logger: logger)
    }
}
