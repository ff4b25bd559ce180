import StatusHubServer
import Logging
import StatusHubCore
import StatusHubRedis

/// The engine a config asks for: Redis when `redis.url` (or `redis.sentinels`) is set, otherwise the embedded memory engine.
enum EngineFactory {
    static func make(config: HubConfig, logger: Logger) throws -> any Engine {
        guard config.redis.url != nil || !config.redis.sentinels.isEmpty else { return MemoryEngine(config: config) }
        return try RedisEngine(config: config, logger: logger)
    }
}
