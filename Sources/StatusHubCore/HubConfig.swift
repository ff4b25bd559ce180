import Foundation
import Yams

/// Everything a hub node can be told, with the defaults `config/statushub.yaml` documents.
/// Loaded from YAML, then overridden by `STATUSHUB_<SECTION>_<KEY>` environment variables, then by flags.
public struct HubConfig: Sendable, Equatable {
    public struct Server: Sendable, Equatable, Codable {
        /// Address to bind. 127.0.0.1 keeps a demo off the network; use 0.0.0.0 behind a load balancer.
        public var host = "127.0.0.1"
        public var port = 8080
        /// Largest accepted `POST /v1/events` body; bigger bodies get 413.
        public var maxBodyBytes = 1_048_576
        /// Most events in one batch or NDJSON body; more gets 413.
        public var maxBatchEvents = 1000
        /// Seconds a SIGTERM waits for outbound queues to drain before sockets close.
        public var shutdownGraceSeconds = 5.0
        /// Seconds an `idempotency_key` (or `Idempotency-Key` header) is remembered: a retry within it is
        /// acknowledged with the original `event_id` and not stored or published again.
        public var idempotencyWindowSeconds = 3600
        public init() {}
    }

    public struct WebSocket: Sendable, Equatable, Codable {
        /// Largest client frame; bigger ones close the socket with 1009.
        public var maxFrameBytes = 65_536
        /// Patterns one connection may hold; more get `too_many_subscriptions`.
        public var maxSubscriptions = 256
        /// Frames queued for one connection before it counts as slow and is closed with 4001.
        public var outboxCapacity = 4096
        /// Frames queued for one connection before its status and progress events start to collapse to each
        /// entity's latest (conflation); a connection that keeps up below this gets every event.
        public var conflateAbove = 256
        /// Idle connections are pinged this often; one that misses a pong for as long is closed.
        public var pingIntervalSeconds = 30.0
        /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
        public var compression = true
        public init() {}
    }

    public struct Redis: Sendable, Equatable, Codable {
        /// `redis://host:port[/db]`. Absent: the embedded memory engine, one node only.
        public var url: String?
        /// Entries the history stream keeps (`XADD MAXLEN ~`); resume reaches this far back.
        public var historyMaxLength = 100_000
        /// Seconds of history kept (trimmed with `MINID`); 0 keeps history by count only.
        public var historyMaxAgeSeconds = 86_400
        /// Redis key of the history stream, and the pub/sub channel every node subscribes to once.
        public var streamKey = "statushub:history"
        public var pubsubChannel = "statushub:events"
        /// Seconds between reconnect attempts start here and double up to `reconnectMaxSeconds`, with jitter.
        public var reconnectInitialSeconds = 0.1
        public var reconnectMaxSeconds = 5.0
        /// Seconds a command may wait for Redis before ingest answers 503.
        public var commandTimeoutSeconds = 2.0
        public init() {}
    }

    public struct Memory: Sendable, Equatable, Codable {
        /// Events the memory engine's history ring keeps.
        public var historyMaxLength = 100_000
        /// Seconds of history kept; 0 keeps history by count only.
        public var historyMaxAgeSeconds = 86_400
        public init() {}
    }

    /// Latest-state TTLs in seconds (seed 003 §4.2).
    public struct CacheTTL: Sendable, Equatable, Codable {
        public var `operator` = 300
        public var machine = 300
        public var material = 120
        public var workOrder = 300
        public var allocation = 300
        public init() {}

        public func seconds(for type: EntityType) -> Int {
            switch type {
            case .operator: `operator`
            case .machine: machine
            case .material: material
            case .workOrder: workOrder
            case .allocation: allocation
            }
        }
    }

    public var server = Server()
    public var websocket = WebSocket()
    public var redis = Redis()
    public var memory = Memory()
    public var cacheTTL = CacheTTL()
    /// trace, debug, info, notice, warning, error, critical
    public var logLevel = "info"

    public init() {}
}

extension HubConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case server, websocket, redis, memory, cacheTTL = "cache_ttl", logLevel = "log_level"
    }
}

/// A config that cannot be used, naming the key and the reason.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

extension HubConfig {
    /// Loads YAML text (empty means all defaults), then applies `STATUSHUB_*` overrides from `environment`:
    /// `STATUSHUB_SERVER_PORT=9000` sets `server.port`, `STATUSHUB_REDIS_URL=redis://…` sets `redis.url`.
    public static func load(yaml: String, environment: [String: String] = [:]) throws -> HubConfig {
        var tree: [String: Any]
        do {
            let loaded = try Yams.load(yaml: yaml)
            guard loaded == nil || loaded is [String: Any] else {
                throw ConfigError(description: "config: the top level must be a mapping of sections")
            }
            tree = loaded as? [String: Any] ?? [:]
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError(description: "config: not valid YAML: \(error)")
        }
        try checkKnownKeys(tree)
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("STATUSHUB_") {
            try applyOverride(name: name, value: value, to: &tree)
        }
        do {
            // Every default comes from the Swift structs above; the file and environment only override.
            let defaults = try JSONSerialization.jsonObject(with: JSONEncoder().encode(HubConfig())) as? [String: Any] ?? [:]
            let merged = merge(camelCased(tree), over: defaults)
            return try JSONDecoder().decode(HubConfig.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            let path = context.codingPath.map { snakeCased($0.stringValue) }.joined(separator: ".")
            throw ConfigError(description: "config: \(path) must be \(type)")
        } catch {
            throw ConfigError(description: "config: \(error)")
        }
    }

    /// Section keys are snake_case in YAML and camelCase in Swift; top-level sections keep their YAML names.
    static func camelCased(_ tree: [String: Any]) -> [String: Any] {
        tree.mapValues { value in
            guard let mapping = value as? [String: Any] else { return value }
            return Dictionary(uniqueKeysWithValues: mapping.map { (camelCased($0.key), $0.value) })
        }
    }

    static func camelCased(_ key: String) -> String {
        let parts = key.split(separator: "_")
        return (parts.first.map(String.init) ?? "") + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    static func snakeCased(_ key: String) -> String {
        key.reduce(into: "") { result, character in
            if character.isUppercase { result += "_" + character.lowercased() } else { result.append(character) }
        }
    }

    static func merge(_ overrides: [String: Any], over defaults: [String: Any]) -> [String: Any] {
        var result = defaults
        for (key, value) in overrides {
            if value is NSNull, defaults[key] is [String: Any] { continue }
            if let section = value as? [String: Any], let base = defaults[key] as? [String: Any] {
                result[key] = merge(section, over: base)
            } else {
                result[key] = value
            }
        }
        return result
    }

    public static func load(path: String?, environment: [String: String]) throws -> HubConfig {
        guard let path else { return try load(yaml: "", environment: environment) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(description: "config: cannot read \(path)")
        }
        return try load(yaml: text, environment: environment)
    }

    /// Section → keys it accepts. A misspelt key is an error, never silently a default.
    static let knownKeys: [String: Set<String>] = [
        "server": ["host", "port", "max_body_bytes", "max_batch_events", "shutdown_grace_seconds", "idempotency_window_seconds"],
        "websocket": [
            "max_frame_bytes", "max_subscriptions", "outbox_capacity", "conflate_above", "ping_interval_seconds", "compression",
        ],
        "redis": [
            "url", "history_max_length", "history_max_age_seconds", "stream_key", "pubsub_channel", "reconnect_initial_seconds",
            "reconnect_max_seconds", "command_timeout_seconds",
        ],
        "memory": ["history_max_length", "history_max_age_seconds"],
        "cache_ttl": ["operator", "machine", "material", "work_order", "allocation"],
        "log_level": [],
    ]

    static func checkKnownKeys(_ tree: [String: Any]) throws {
        for (section, value) in tree {
            guard let keys = knownKeys[section] else {
                throw ConfigError(description: "config: unknown section '\(section)'; known: \(knownKeys.keys.sorted().joined(separator: ", "))")
            }
            guard let mapping = value as? [String: Any] else {
                if keys.isEmpty { continue }
                if value is NSNull { continue }
                throw ConfigError(description: "config: '\(section)' must be a mapping")
            }
            for key in mapping.keys where !keys.contains(key) {
                throw ConfigError(description: "config: unknown key '\(section).\(key)'; known: \(keys.sorted().joined(separator: ", "))")
            }
        }
    }

    static func applyOverride(name: String, value: String, to tree: inout [String: Any]) throws {
        let path = name.dropFirst("STATUSHUB_".count).lowercased()
        let typed = (try? Yams.load(yaml: value)) ?? value
        if path == "log_level" {
            tree["log_level"] = value
            return
        }
        for (section, keys) in knownKeys where path.hasPrefix(section + "_") {
            let key = String(path.dropFirst(section.count + 1))
            guard keys.contains(key) else { continue }
            var mapping = tree[section] as? [String: Any] ?? [:]
            mapping[key] = key == "url" || key == "host" || key.hasSuffix("_key") || key.hasSuffix("_channel") ? value : typed
            tree[section] = mapping
            return
        }
        throw ConfigError(description: "environment: \(name) names no config key")
    }
}
