/// The values each numeric setting may take, as one table: a value outside its range is refused when the config
/// loads (and again after `statushub serve`'s flags), naming the key, instead of wrapping (a port of 70000 bound
/// 4464), trapping when it becomes a `Duration` (1e20 seconds), or starting a node that refuses all traffic
/// (a batch of at most 0 events). 0 is inside a range only where it has a documented meaning.
public struct SettingRange: Sendable {
    /// The YAML key, `section.key`.
    public let key: String
    let bounds: ClosedRange<Double>
    /// An `Int` setting: a fraction is refused before decoding (`HubConfig.checkWholeNumbers`).
    let whole: Bool
    /// What the value is, where the bounds alone do not say it ("a port").
    let meaning: String?
    /// The setting's value, nil while an optional setting is unset.
    let read: @Sendable (HubConfig) -> Double?

    static func whole(
        _ key: String, _ bounds: ClosedRange<Int>, meaning: String? = nil, _ read: @escaping @Sendable (HubConfig) -> Int?
    ) -> Self {
        Self(key: key, bounds: Double(bounds.lowerBound)...Double(bounds.upperBound), whole: true, meaning: meaning) { read($0).map(Double.init) }
    }

    static func number(
        _ key: String, _ bounds: ClosedRange<Double>, meaning: String? = nil, _ read: @escaping @Sendable (HubConfig) -> Double?
    ) -> Self {
        Self(key: key, bounds: bounds, whole: false, meaning: meaning, read: read)
    }

    /// `1–65535`, as docs/configuration.md's table of ranges writes it.
    public var boundsText: String { "\(format(bounds.lowerBound))–\(format(bounds.upperBound))" }

    /// Refuses `value` when it is outside the bounds, naming the key.
    func check(_ value: Double, key: String? = nil) throws {
        guard !bounds.contains(value) else { return }
        let what = meaning.map { " \($0)," } ?? ""
        throw ConfigError(
            description: "config: \(key ?? self.key) must be\(what) between \(format(bounds.lowerBound)) and \(format(bounds.upperBound)); it is \(format(value))")
    }

    /// Whole values without a decimal point, as the YAML would have them.
    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}

extension HubConfig {
    static let day = 86_400
    /// Ten years: longer than any history or TTL a plant keeps, short enough that no timer overflows.
    static let decade = 3650 * day

    /// Every numeric setting's range (docs/configuration.md lists the ones that are not obvious).
    public static let ranges: [SettingRange] = [
        .whole("server.port", 1...65_535, meaning: "a port") { $0.server.port },
        .whole("server.max_body_bytes", 1...(1 << 30)) { $0.server.maxBodyBytes },
        .whole("server.max_batch_events", 1...1_000_000) { $0.server.maxBatchEvents },
        .number("server.shutdown_grace_seconds", 0...3600) { $0.server.shutdownGraceSeconds },
        .whole("server.idempotency_window_seconds", 0...(30 * day), meaning: "seconds (0: not remembered)") { $0.server.idempotencyWindowSeconds },
        .number("server.max_clock_ahead_seconds", 0...Double(366 * day), meaning: "seconds (0: no bound)") { $0.server.maxClockAheadSeconds },
        .whole("server.sequence_reset_seconds", 0...(366 * day), meaning: "seconds (0: a sequence always orders)") { $0.server.sequenceResetSeconds },
        .whole("server.stale_kept_seconds", 0...(366 * day), meaning: "seconds (0: an expired state leaves the cache)") { $0.server.staleKeptSeconds },
        .whole("server.session_expiry_seconds", 1...(366 * day), meaning: "seconds") { $0.server.sessionExpirySeconds },
        .whole("server.max_session_bytes", 2...1_048_576, meaning: "bytes") { $0.server.maxSessionBytes },
        .whole("server.max_event_bytes", 1...(1 << 30)) { $0.server.maxEventBytes },
        .whole("server.max_connections", 1...10_000_000) { $0.server.maxConnections },
        .whole("server.max_connections_per_address", 0...10_000_000, meaning: "a count (0: no limit)") { $0.server.maxConnectionsPerAddress },
        .number("server.idle_timeout_seconds", 0.1...Double(day)) { $0.server.idleTimeoutSeconds },
        // The kernel's own bound on a listen backlog.
        .whole("server.listen_backlog", 1...65_535) { $0.server.listenBacklog },

        .whole("websocket.max_frame_bytes", 1...(1 << 30)) { $0.websocket.maxFrameBytes },
        .whole("websocket.max_subscriptions", 1...1_000_000) { $0.websocket.maxSubscriptions },
        .whole("websocket.outbox_capacity", 1...10_000_000) { $0.websocket.outboxCapacity },
        .whole("websocket.conflate_above", 0...10_000_000) { $0.websocket.conflateAbove },
        // A ping every few milliseconds would be a flood, and a client could never answer one in time.
        .number("websocket.ping_interval_seconds", 0.1...Double(day)) { $0.websocket.pingIntervalSeconds },
        .number("websocket.max_messages_per_second", 0.01...1_000_000) { $0.websocket.maxMessagesPerSecond },
        .number("websocket.write_delay_ms", 0...1000) { $0.websocket.writeDelayMs },
        .whole("websocket.recent_feed_kept", 0...100_000) { $0.websocket.recentFeedKept },

        .whole("redis.history_max_length", 1...1_000_000_000) { $0.redis.historyMaxLength },
        .whole("redis.history_max_age_seconds", 0...decade, meaning: "seconds (0: by count only)") { $0.redis.historyMaxAgeSeconds },
        .number("redis.reconnect_initial_seconds", 0.001...3600) { $0.redis.reconnectInitialSeconds },
        .number("redis.reconnect_max_seconds", 0.001...3600) { $0.redis.reconnectMaxSeconds },
        .number("redis.command_timeout_seconds", 0.01...3600) { $0.redis.commandTimeoutSeconds },
        .whole("redis.min_replicas_acked", 0...100) { $0.redis.minReplicasAcked },
        // A resume token names one position per partition; past this it outgrows a URL's query.
        .whole("redis.partitions", 1...Redis.maxPartitions) { $0.redis.partitions },

        .whole("memory.history_max_length", 1...1_000_000_000) { $0.memory.historyMaxLength },
        .whole("memory.history_max_age_seconds", 0...decade, meaning: "seconds (0: by count only)") { $0.memory.historyMaxAgeSeconds },
        .whole("memory.history_max_bytes", 1...(1 << 40)) { $0.memory.historyMaxBytes },

        .number("auth.ingest_events_per_second", 0...1_000_000_000, meaning: "a rate (0: unlimited)") { $0.auth.ingestEventsPerSecond },
        .whole("auth.ingest_burst", 0...1_000_000_000, meaning: "a count (0: the rate)") { $0.auth.ingestBurst },

        // MQTT's keep-alive is a 16-bit field of CONNECT.
        .whole("mqtt.keepalive_seconds", 1...65_535) { $0.mqtt.keepaliveSeconds },
        .whole("mqtt.reconnect_initial_seconds", 1...3600) { $0.mqtt.reconnectInitialSeconds },
        .whole("mqtt.reconnect_max_seconds", 1...3600) { $0.mqtt.reconnectMaxSeconds },
        .whole("mqtt.max_pending_messages", 1...10_000_000) { $0.mqtt.maxPendingMessages },
        .whole("mqtt.sparkplug.reorder_timeout_ms", 1...60_000) { $0.mqtt.sparkplug?.reorderTimeoutMs },
    ]

    /// `cache_ttl.<entity type>`: seconds, 0 as in the catalog (the state never expires).
    public static let cacheTTLRange = SettingRange.whole("cache_ttl", 0...decade, meaning: "seconds (0: never expires)") { _ in nil }

    /// The levels `log_level` names (swift-log's), least severe first.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Refuses any numeric setting outside its range and an unknown log level, naming the key.
    func checkRanges() throws {
        for range in Self.ranges {
            if let value = range.read(self) { try range.check(value) }
        }
        for (name, seconds) in cacheTTL.overrides.sorted(by: { $0.key < $1.key }) {
            try Self.cacheTTLRange.check(Double(seconds), key: "cache_ttl.\(name)")
        }
        guard Self.logLevels.contains(logLevel) else {
            throw ConfigError(description: "config: log_level '\(logLevel)' is not a level; levels: \(Self.logLevels.joined(separator: ", "))")
        }
    }
}
