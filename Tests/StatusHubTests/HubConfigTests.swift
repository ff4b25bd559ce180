import Foundation
import Logging
import StatusHubCore
import StatusHubRedis
import Testing

@Suite("Config")
struct HubConfigTests {
    @Test func defaultsWithoutFile() throws {
        let config = try HubConfig.load(yaml: "")
        #expect(config == HubConfig())
        #expect(config.cacheTTL.seconds(for: .material) == 600)
        #expect(config.redis.url == nil)
    }

    @Test func shippedConfigFileEqualsDefaults() throws {
        let path = #filePath.components(separatedBy: "/Tests/")[0] + "/config/statushub.yaml"
        #expect(try HubConfig.load(path: path, environment: [:]) == HubConfig())
    }

    @Test func fileThenEnvironmentOverride() throws {
        let config = try HubConfig.load(
            yaml: "server:\n  port: 9000\ncache_ttl:\n  work_order: 60\n",
            environment: ["STATUSHUB_SERVER_PORT": "9100", "STATUSHUB_REDIS_URL": "redis://127.0.0.1:7000", "STATUSHUB_WEBSOCKET_COMPRESSION": "false", "PATH": "/bin"])
        #expect(config.server.port == 9100)
        #expect(config.redis.url == "redis://127.0.0.1:7000")
        #expect(config.websocket.compression == false)
        #expect(config.cacheTTL.workOrder == 60)
        #expect(config.cacheTTL.machine == 300)
    }

    @Test func mistakesAreNamed() {
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  prot: 1\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "servre: {}\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  port: many\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "", environment: ["STATUSHUB_NOPE": "1"]) }
        // The setting named, and what it takes in words, not Swift's type names.
        for (yaml, message) in [
            ("server:\n  port: many\n", "config: server.port must be a whole number"),
            ("websocket:\n  compression: maybe\n", "config: websocket.compression must be true or false"),
            ("server:\n  host: [a, b]\n", "config: server.host must be text"),
        ] {
            do {
                _ = try HubConfig.load(yaml: yaml)
                Issue.record("accepted \(yaml)")
            } catch {
                #expect((error as? ConfigError)?.description == message, "\(error)")
            }
        }
    }

    @Test func sentinelSettingsAreReadAndChecked() throws {
        let config = try HubConfig.load(
            yaml: "redis:\n  sentinels: [127.0.0.1:26379, \"10.0.0.2:26379\"]\n  master_name: plant\n  min_replicas_acked: 1\n")
        #expect(config.redis.sentinels == ["127.0.0.1:26379", "10.0.0.2:26379"])
        #expect(config.redis.masterName == "plant")
        #expect(config.redis.minReplicasAcked == 1)
        #expect(HubConfig().redis.minReplicasAcked == 0)
        for (yaml, named) in [
            ("redis:\n  sentinels: [127.0.0.1:26379]\n", "redis.master_name"),
            ("redis:\n  min_replicas_acked: -1\n", "redis.min_replicas_acked"),
        ] {
            #expect {
                try HubConfig.load(yaml: yaml)
            } throws: { error in
                (error as? ConfigError)?.description.contains(named) == true
            }
        }
    }

    @Test func partitionAndShardSettingsAreReadAndChecked() throws {
        #expect(HubConfig().redis.partitionCount == 1, "one partition on one Redis by default")
        let sharded = try HubConfig.load(yaml: "redis:\n  shards: [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379/2\"]\n")
        #expect(sharded.redis.shards == ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379/2"])
        #expect(sharded.redis.partitions == nil)
        #expect(sharded.redis.partitionCount == 2 * HubConfig.Redis.partitionsPerShard)
        let explicit = try HubConfig.load(yaml: "redis:\n  url: redis://127.0.0.1:6379\n  partitions: 3\n")
        #expect(explicit.redis.partitionCount == 3)
        let fromEnvironment = try HubConfig.load(
            yaml: "", environment: ["STATUSHUB_REDIS_SHARDS": "[redis://10.0.0.1:6379, redis://:pw@10.0.0.2:6380/1]", "STATUSHUB_REDIS_PARTITIONS": "12"])
        #expect(fromEnvironment.redis.shards == ["redis://10.0.0.1:6379", "redis://:pw@10.0.0.2:6380/1"])
        #expect(fromEnvironment.redis.partitionCount == 12)
        for (yaml, named) in [
            ("redis:\n  url: redis://127.0.0.1:6379\n  partitions: 0\n", "redis.partitions must be between 1 and"),
            ("redis:\n  url: redis://127.0.0.1:6379\n  partitions: 100000\n", "redis.partitions must be between 1 and"),
            ("redis:\n  url: redis://127.0.0.1:6379\n  shards: [\"redis://10.0.0.1:6379\"]\n", "redis.shards and redis.url"),
            ("redis:\n  shards: [\"redis://10.0.0.1:6379\"]\n  sentinels: [127.0.0.1:26379]\n  master_name: plant\n", "redis.shards cannot be combined with redis.sentinels"),
            ("redis:\n  shards: [\"redis://10.0.0.1:6379\", \"10.0.0.2:6379\"]\n", "redis.shards[1] must be a redis:// URL"),
            ("redis:\n  shards: [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]\n  partitions: 1\n", "redis.partitions (1) is fewer than redis.shards (2)"),
        ] {
            #expect {
                try HubConfig.load(yaml: yaml)
            } throws: { error in
                (error as? ConfigError)?.description.contains(named) == true
            }
        }
    }

    @Test func listenBacklogIsBounded() throws {
        #expect(try HubConfig.load(yaml: "server:\n  listen_backlog: 512\n").server.listenBacklog == 512)
        #expect(try HubConfig.load(yaml: "", environment: ["STATUSHUB_SERVER_LISTEN_BACKLOG": "64"]).server.listenBacklog == 64)
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  listen_backlog: 0\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  listen_backlog: 70000\n") }
    }

    /// A ping interval of nothing would ping in a loop and close every client before it could answer.
    @Test func pingIntervalIsBounded() throws {
        #expect(try HubConfig.load(yaml: "websocket:\n  ping_interval_seconds: 0.5\n").websocket.pingIntervalSeconds == 0.5)
        for bad in ["0", "-1", "0.01"] {
            #expect {
                try HubConfig.load(yaml: "websocket:\n  ping_interval_seconds: \(bad)\n")
            } throws: { error in
                (error as? ConfigError)?.description.contains("websocket.ping_interval_seconds") == true
            }
        }
    }

    /// Each numeric setting out of its range (as the tester's release binary took them: wrapped, trapped, or started
    /// a node that refused all traffic) is refused at load, naming the key.
    @Test(arguments: [
        ("server:\n  port: 70000\n", "config: server.port must be a port, between 1 and 65535; it is 70000"),
        ("server:\n  port: 0\n", "server.port must be a port"),
        ("server:\n  idle_timeout_seconds: 1e20\n", "server.idle_timeout_seconds must be between 0.1 and 86400"),
        ("server:\n  shutdown_grace_seconds: 1e20\n", "server.shutdown_grace_seconds must be between 0 and 3600"),
        ("server:\n  shutdown_grace_seconds: -3\n", "server.shutdown_grace_seconds must be between 0 and 3600; it is -3"),
        ("server:\n  max_body_bytes: -5\n", "config: server.max_body_bytes must be between 1 and 1073741824; it is -5"),
        ("server:\n  max_batch_events: 0\n", "server.max_batch_events must be between 1 and"),
        ("server:\n  max_connections: -1\n", "server.max_connections must be between 1 and"),
        ("server:\n  max_connections_per_address: -1\n", "server.max_connections_per_address must be a count (0: no limit), between 0 and"),
        ("websocket:\n  ping_interval_seconds: 1e20\n", "websocket.ping_interval_seconds must be between 0.1 and 86400"),
        ("websocket:\n  max_frame_bytes: -1\n", "websocket.max_frame_bytes must be between 1 and"),
        ("websocket:\n  outbox_capacity: 0\n", "websocket.outbox_capacity must be between 1 and"),
        ("websocket:\n  max_messages_per_second: 0\n", "websocket.max_messages_per_second must be between 0.01 and"),
        ("redis:\n  command_timeout_seconds: 1e20\n", "redis.command_timeout_seconds must be between 0.01 and 3600"),
        ("redis:\n  command_timeout_seconds: 0\n", "redis.command_timeout_seconds must be between 0.01 and 3600; it is 0"),
        ("redis:\n  history_max_length: -1\n", "redis.history_max_length must be between 1 and"),
        ("redis:\n  reconnect_initial_seconds: 0\n", "redis.reconnect_initial_seconds must be between 0.001 and"),
        ("redis:\n  reconnect_initial_seconds: 10\n", "redis.reconnect_max_seconds must be at least redis.reconnect_initial_seconds"),
        ("memory:\n  history_max_length: 0\n", "memory.history_max_length must be between 1 and"),
        ("cache_ttl:\n  machine: -5\n", "config: cache_ttl.machine must be seconds (0: never expires), between 0 and 315360000; it is -5"),
        ("auth:\n  ingest_burst: -1\n", "auth.ingest_burst must be a count (0: the rate), between 0 and"),
        ("mqtt:\n  max_pending_messages: 0\n", "mqtt.max_pending_messages must be between 1 and"),
        ("log_level: verbose\n", "config: log_level 'verbose' is not a level; levels: trace, debug, info, notice, warning, error, critical"),
    ])
    func outOfRangeIsRefusedNamingTheKey(yaml: String, message: String) {
        #expect {
            try HubConfig.load(yaml: yaml)
        } throws: { error in
            (error as? ConfigError)?.description.contains(message) == true
        }
    }

    /// The same ranges hold for the environment and for what `statushub serve`'s flags change after loading.
    @Test func rangesHoldForEnvironmentAndFlags() throws {
        for (name, value, named) in [
            ("STATUSHUB_SERVER_PORT", "70000", "server.port"), ("STATUSHUB_LOG_LEVEL", "verbose", "log_level"),
            ("STATUSHUB_WEBSOCKET_OUTBOX_CAPACITY", "0", "websocket.outbox_capacity"),
        ] {
            #expect {
                try HubConfig.load(yaml: "", environment: [name: value])
            } throws: { error in
                (error as? ConfigError)?.description.contains(named) == true
            }
        }
        var flagged = try HubConfig.load(yaml: "")
        flagged.server.port = 70_000
        #expect { try flagged.check() } throws: { error in "\(error)".contains("server.port must be a port") }
    }

    /// The edges of the ranges, and the zeros that mean something, are accepted.
    @Test func boundsAndMeaningfulZerosAreAccepted() throws {
        let config = try HubConfig.load(yaml: """
            server: {port: 65535, max_connections_per_address: 0, shutdown_grace_seconds: 0, idempotency_window_seconds: 0}
            redis: {history_max_age_seconds: 0}
            memory: {history_max_age_seconds: 0}
            cache_ttl: {machine: 0}
            auth: {ingest_events_per_second: 0, ingest_burst: 0}
            websocket: {recent_feed_kept: 0, write_delay_ms: 0, conflate_above: 0}
            log_level: critical
            """)
        #expect(config.server.port == 65_535)
        #expect(config.cacheTTL.machine == 0)
        #expect(config.logLevel == "critical")
        #expect(try HubConfig.load(yaml: "server: {port: 1}").server.port == 1)
    }

    /// A key in a list entry or a sub-section is checked like a section's: `entity_type:` for `entity_types:` would
    /// have started a node whose API key may publish anything.
    @Test(arguments: [
        ("auth:\n  api_keys:\n    - {name: mes, hash: \"\(String(repeating: "a", count: 64))\", entity_type: [machine], line: [Line-2]}\n",
            "config: unknown key 'auth.api_keys[0].entity_type'; known: entity_types, hash, lines, name, tenant"),
        ("mqtt:\n  url: mqtt://127.0.0.1:1\n  topics:\n    - {topic: \"a/{m}\", event_type: resource_status_changed, entity_type: machine, entity_id: \"{m}\"}\n    - {topic: \"a/{m}\", event_type: resource_status_changed, entity_type: machine, entity_id: \"{m}\", field: {state: current_status}}\n",
            "config: unknown key 'mqtt.topics[1].field'; known: entity_id, entity_type, event_type, fields, line, topic, values"),
        ("mqtt:\n  url: mqtt://127.0.0.1:1\n  sparkplug:\n    host_id: x\n    status_metrc: State\n", "config: unknown key 'mqtt.sparkplug.status_metrc'"),
    ])
    func unknownNestedKeysAreNamed(yaml: String, message: String) {
        #expect {
            try HubConfig.load(yaml: yaml)
        } throws: { error in
            (error as? ConfigError)?.description.hasPrefix(message) == true
        }
    }

    /// An entity type with a digit after an underscore keeps its name in the file and the environment.
    @Test func cacheTTLNamesTypesWithDigits() throws {
        let catalogFile = FileManager.default.temporaryDirectory.appendingPathComponent("ttl-digit-\(UUID().uuidString).yaml").path
        try "entity_types:\n  robot_arm_2: {cache_key: \"robot2:{id}\", ttl_seconds: 300}\n".write(toFile: catalogFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: catalogFile) }
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let yaml = "catalog: {directory: \(root)/config/catalog, files: [\(catalogFile)]}\n"
        let robot = { (config: HubConfig) in config.cacheTTL.seconds(for: try #require(config.catalog.entityType(named: "robot_arm_2"))) }
        #expect(try robot(HubConfig.load(yaml: yaml + "cache_ttl: {robot_arm_2: 60}\n")) == 60)
        #expect(try robot(HubConfig.load(yaml: yaml, environment: ["STATUSHUB_CACHE_TTL_ROBOT_ARM_2": "45"])) == 45)
        #expect(try robot(HubConfig.load(yaml: yaml)) == 300)
    }

    /// Values no setting can take are refused with the key and the reason, not a decoder's or Foundation's words.
    @Test(arguments: [
        ("server:\n  port: 16090.5\n", "config: server.port must be a whole number; it is 16090.5"),
        ("cache_ttl:\n  machine: 2.5\n", "config: cache_ttl.machine must be a whole number; it is 2.5"),
        ("mqtt:\n  sparkplug: {reorder_timeout_ms: 1e20}\n", "config: mqtt.sparkplug.reorder_timeout_ms must be a whole number; it is 1e+20"),
        ("server:\n  idle_timeout_seconds: .nan\n", "config: server.idle_timeout_seconds must be a finite number; it is nan"),
        ("websocket:\n  ping_interval_seconds: .inf\n", "config: websocket.ping_interval_seconds must be a finite number; it is inf"),
        ("auth:\n  api_keys:\n    - {name: k, hash: [1]}\n", "config: auth.api_keys[0].hash must be text"),
        // The same key twice (`sha256:` and case aside): it published as whichever entry was listed last.
        ("auth:\n  api_keys:\n    - {name: a, hash: \"\(String(repeating: "a", count: 64))\", tenant: plant-a}\n    - {name: b, hash: \"sha256:\(String(repeating: "A", count: 64))\", tenant: plant-b}\n",
            "config: auth.api_keys[1].hash is auth.api_keys[0]'s too; give each publisher a key of its own"),
    ])
    func unusableValuesNameTheKey(yaml: String, message: String) {
        #expect {
            try HubConfig.load(yaml: yaml)
        } throws: { error in
            (error as? ConfigError)?.description == message
        }
    }

    /// A `redis.url` that does not parse names the key (`--redis http://x` gave "invalid Redis URL" alone).
    @Test func badRedisURLNamesTheKey() throws {
        var config = try HubConfig.load(yaml: "")
        config.redis.url = "http://x"
        #expect {
            try RedisEngine(config: config, logger: Logger(label: "test"))
        } throws: { error in
            let description = (error as? ConfigError)?.description ?? ""
            return description.hasPrefix("config: redis.url: invalid Redis URL") && description.contains("must start with redis://")
        }
    }

    /// docs/configuration.md's table of ranges says what the code checks.
    @Test func documentedRangesMatchTheChecks() throws {
        let path = #filePath.components(separatedBy: "/Tests/")[0] + "/docs/configuration.md"
        let docs = try String(contentsOfFile: path, encoding: .utf8)
        for range in HubConfig.ranges {
            #expect(docs.contains("| `\(range.key)` | \(range.boundsText) |"), "\(range.key) \(range.boundsText)")
        }
        #expect(docs.contains("| `cache_ttl.<entity type>` | \(HubConfig.cacheTTLRange.boundsText) |"))
    }
}
