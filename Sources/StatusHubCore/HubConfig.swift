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
        /// Seconds an event's `timestamp` may be ahead of this node's clock; further ahead is refused (0: no bound).
        /// States are ordered by source time, so one event stamped in the future (a device's clock, a typo in the
        /// year) would outrank every real one of its entity until its state went stale.
        public var maxClockAheadSeconds = 300.0
        /// A state whose `sequence` is below its entity's cached one, stamped after it, when the hub has held that
        /// one longer than this many seconds, comes from a publisher that restarted its count: it is current, not
        /// late. Without it a gateway's reboot froze its entities' states until they went stale (0: a sequence
        /// always orders).
        public var sequenceResetSeconds = 60
        /// Seconds an expired state's `status_stale` notice stays its entity's cached entry, so a snapshot (a
        /// dashboard opened or reloaded) still shows the entity, marked stale, as live subscribers saw it go; a state
        /// replaces it at once. 0: the entity leaves the cache when its state expires.
        public var staleKeptSeconds = 86_400
        /// Seconds a user's session (`PUT /v1/session`: the dashboard's line and filters) is kept after it was last
        /// written or read (seed 003 §4.2: 8 hours).
        public var sessionExpirySeconds = 28_800
        /// Largest session a user may store.
        public var maxSessionBytes = 16_384
        /// Largest single event (as stored: its JSON without `event_id`); a larger one is rejected on its own.
        public var maxEventBytes = 65_536
        /// Open WebSocket connections the node accepts; more are refused with 503 before the upgrade.
        public var maxConnections = 10_000
        /// Open WebSocket connections per client address; more are refused with 429 (0: no limit).
        public var maxConnectionsPerAddress = 256
        /// Reverse proxies and load balancers (addresses or CIDR ranges) whose `X-Forwarded-For` or `Forwarded`
        /// names the client a connection is counted under (`TrustedProxies`); empty: every peer is the client.
        public var trustedProxies: [String] = []
        /// Seconds an HTTP connection may go without a complete request before it is closed: bounds keep-alive
        /// connections left idle, half-open ones, and clients that never finish their headers (slowloris). Not
        /// applied to WebSocket connections, which the ping interval watches instead.
        public var idleTimeoutSeconds = 60.0
        /// Connections the kernel queues before the node accepts them (`listen` backlog; Linux caps it at
        /// `net.core.somaxconn`). Dashboards reconnect all at once after a restart: with a short queue the overflow
        /// is dropped and the kernel retries it a second later.
        public var listenBacklog = 4096
        /// PEM certificate chain and private key: both set, the node serves only `https://` and `wss://`
        /// (TLS through swift-nio-ssl); both absent, plain HTTP. One without the other is a config error.
        public var tlsCertificateFile: String?
        public var tlsPrivateKeyFile: String?
        public init() {}

        /// True when the node serves TLS.
        public var usesTLS: Bool { tlsCertificateFile != nil }
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
        /// Client messages per second one connection may send (token bucket, burst as large); over it the message
        /// gets `rate_limited`, and a client that keeps going for another second's worth is closed with 1008.
        public var maxMessagesPerSecond = 20.0
        /// Milliseconds a connection's first queued frame may wait for more before they are written together
        /// (like Centrifugo's `write_delay`). 0 writes at once; a few milliseconds let a busy node write several
        /// events per system call instead of one, trading that much latency for CPU. Uncompressed connections only.
        public var writeDelayMs = 0.0
        /// Feed events (event types with a catalog `feed`) each node keeps, per partition, for the `recent` a subscribe
        /// may ask for: what a dashboard opened now shows of the alerts raised before it connected. 0: none kept.
        public var recentFeedKept = 1000
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
        /// Redis Sentinel addresses (`host:port`): the master is whichever they name `masterName`, and a failover
        /// is followed. `url`, if set, then gives only the master's user, password and database.
        public var sentinels: [String] = []
        public var masterName: String?
        /// Replicas that must hold an event (`WAIT`) before it is acknowledged; 0 acknowledges once the master has it.
        public var minReplicasAcked = 0
        /// Independent Redis servers (`redis://…` each) the partitions are placed on by consistent hashing
        /// (`HashRing`). Empty: the one Redis of `url` (or the sentinels' master) holds every partition.
        public var shards: [String] = []
        /// Seed nodes (`redis://…`) of a Redis Cluster the partitions are placed on: each partition on the master
        /// serving the slot of its hash tag (`ClusterSlotMaster`). Empty: no cluster.
        public var cluster: [String] = []
        /// Partitions the event space is split into by entity (`PartitionMap`). Unset: 1 on one Redis (today's key
        /// layout exactly), `partitionsPerShard` per shard with `shards`.
        public var partitions: Int?
        public init() {}

        /// Partitions per shard when `redis.shards` is set and `redis.partitions` is not: enough that consistent
        /// hashing spreads them about evenly (with one per shard, a shard can get none).
        public static let partitionsPerShard = 4
        /// Partitions when `redis.cluster` is set and `redis.partitions` is not: the masters are not known before
        /// the cluster is asked, and 16 slots spread over a few masters about evenly.
        public static let clusterPartitions = 16
        /// A resume token names one position per partition; past this it outgrows a URL's query.
        public static let maxPartitions = 256

        /// `partitions`, or its default.
        public var partitionCount: Int {
            partitions ?? (!cluster.isEmpty ? Self.clusterPartitions : shards.isEmpty ? 1 : shards.count * Self.partitionsPerShard)
        }
    }

    public struct Memory: Sendable, Equatable, Codable {
        /// Events the memory engine's history ring keeps.
        public var historyMaxLength = 100_000
        /// Seconds of history kept; 0 keeps history by count only.
        public var historyMaxAgeSeconds = 86_400
        /// Bytes of event JSON the history ring keeps (besides the count and age bounds): 100,000 events of 60 KB
        /// would otherwise be 6 GB.
        public var historyMaxBytes = 256 << 20
        public init() {}
    }

    /// Latest-state TTLs in seconds: each entity type's `ttl_seconds` from the catalog (seed 003 §4.2's for its
    /// types), overridden per type by `cache_ttl.<entity type>`.
    public struct CacheTTL: Sendable, Equatable, Codable {
        /// `cache_ttl.<name>` values, by entity type name.
        public var overrides: [String: Int] = [:]
        public init() {}

        public func seconds(for type: EntityType) -> Int { overrides[type.rawValue] ?? type.definition.ttlSeconds }

        /// `event`'s state's TTL: its entity type's, but none (0) for a state that holds its entity (`StateHold`): a
        /// quarantine is lifted by a release, not by a day without news of the lot.
        public func seconds(for event: ValidatedEvent) -> Int { event.hold?.sets != nil ? 0 : seconds(for: event.entityType) }

        // The seed 003 types by name, as before the catalog (read: the override or the shipped catalog's TTL).
        public var `operator`: Int { get { seconds(for: .operator) } set { overrides["operator"] = newValue } }
        public var machine: Int { get { seconds(for: .machine) } set { overrides["machine"] = newValue } }
        public var material: Int { get { seconds(for: .material) } set { overrides["material"] = newValue } }
        public var workOrder: Int { get { seconds(for: .workOrder) } set { overrides["work_order"] = newValue } }
        public var allocation: Int { get { seconds(for: .allocation) } set { overrides["allocation"] = newValue } }

        public init(from decoder: any Decoder) throws {
            // Keys are entity type names, as written (`HubConfig.camelCased` leaves this section alone).
            overrides = try decoder.singleValueContainer().decode([String: Int].self)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(overrides)
        }
    }

    /// Where the event catalog is read from (README, "Event catalog").
    /// The plant's shifts (seed 003 §4.2's `stats:shift:{shift_id}:operators_available` expires at the shift's end).
    public struct Shifts: Sendable, Equatable, Codable {
        /// `"<name> HH:MM"` in the plant's local time, each shift lasting until the next one starts.
        public var schedule = ["A 06:00", "B 14:00", "C 22:00"]
        /// The plant's offset from UTC, `±HH:MM`.
        public var utcOffset = "+00:00"
        public init() {}
    }

    public struct CatalogFiles: Sendable, Equatable, Codable {
        /// Every `*.yaml` of this directory is loaded, in name order; "" loads none.
        public var directory = "config/catalog"
        /// Files loaded after the directory's (a plant's own types kept apart from the shipped seeds).
        public var files: [String] = []
        public init() {}
    }

    /// Who may publish and subscribe (see the README's Security section). Off by default: the demo mode.
    public struct Auth: Sendable, Equatable, Codable {
        /// One publisher key: only its SHA-256 is configured (`statushub hash-key` prints it), never the key.
        public struct APIKey: Sendable, Equatable, Codable {
            /// Names the key in logs and rate limits (the key itself is never logged).
            public var name: String
            /// Lowercase hex SHA-256 of the key (`sha256:` prefix allowed).
            public var hash: String
            /// Tenant the key's events belong to; default `default`.
            public var tenant: String?
            /// Entity types the key may publish; absent: all.
            public var entityTypes: [String]?
            /// Lines the key may publish on (an event without `line` is refused); absent: any, or none.
            public var lines: [String]?

            public init(name: String, hash: String, tenant: String? = nil, entityTypes: [String]? = nil, lines: [String]? = nil) {
                self.name = name
                self.hash = hash
                self.tenant = tenant
                self.entityTypes = entityTypes
                self.lines = lines
            }

            enum CodingKeys: String, CodingKey, CaseIterable {
                case name, hash, tenant, entityTypes = "entity_types", lines
            }
        }

        /// True: `POST /v1/events` needs a configured API key and `GET /v1/ws` (and `/v1/state`) a valid JWT.
        /// False (default, the demo mode): anyone may publish to and read the default tenant; a key or token
        /// that is sent is still checked.
        public var required = false
        public var apiKeys: [APIKey] = []
        /// HS256 secret subscriber tokens may be signed with.
        public var jwtHs256Secret: String?
        /// Path of a PEM ES256 (P-256) public key subscriber tokens may be signed with.
        public var jwtEs256PublicKeyFile: String?
        /// Events per second one API key may publish (token bucket; 0: unlimited). Over it: 429 + Retry-After.
        public var ingestEventsPerSecond = 0.0
        /// Bucket size: events a key may send at once after a pause; default the rate (at least 1 event).
        public var ingestBurst = 0
        /// SHA-256 of the key a scraper presents (`Authorization: Bearer <key>`, Prometheus's `authorization`
        /// setting) for `GET /metrics`; absent: `/metrics` is open, for scraping from the plant's internal network.
        public var metricsKeyHash: String?
        public init() {}
    }

    public var server = Server()
    public var auth = Auth()
    public var websocket = WebSocket()
    public var redis = Redis()
    public var memory = Memory()
    public var cacheTTL = CacheTTL()
    public var catalogFiles = CatalogFiles()
    public var shifts = Shifts()
    /// The bridge from the plant's MQTT broker (`HubConfig+MQTT.swift`); off without `mqtt.url`.
    public var mqtt = MQTT()
    /// The catalog `catalogFiles` names, loaded by `load`; a config built in code has the shipped one
    /// (`Catalog.standard`, read only when asked for: an installed binary has no source tree to read it from).
    public var catalog: Catalog {
        get { loadedCatalog.catalog ?? .standard }
        set { loadedCatalog.catalog = newValue }
    }
    private var loadedCatalog = LoadedCatalog()

    /// Equal when the catalogs are, the shipped one standing in for none loaded.
    private struct LoadedCatalog: Sendable, Equatable {
        var catalog: Catalog?
        static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.catalog == nil && rhs.catalog == nil || (lhs.catalog ?? .standard) == (rhs.catalog ?? .standard)
        }
    }
    /// trace, debug, info, notice, warning, error, critical
    public var logLevel = "info"

    public init() {}
}

extension HubConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case server, auth, websocket, redis, memory, cacheTTL = "cache_ttl", catalogFiles = "catalog", shifts, mqtt, logLevel = "log_level"
    }
}

/// A config that cannot be used, naming the key and the reason.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(description: String) { self.description = description }
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
        for (section, value) in tree.sorted(by: { $0.key < $1.key }) {
            try checkNested(value, path: section, pattern: section)
        }
        try checkWholeNumbers(tree)
        do {
            // Every default comes from the Swift structs above; the file and environment only override.
            let defaults = try JSONSerialization.jsonObject(with: JSONEncoder().encode(HubConfig())) as? [String: Any] ?? [:]
            let merged = merge(camelCased(tree), over: defaults)
            var config = try JSONDecoder().decode(HubConfig.self, from: JSONSerialization.data(withJSONObject: merged))
            do {
                config.catalog = try CatalogLoader.load(directory: config.catalogFiles.directory, files: config.catalogFiles.files)
            } catch let error as CatalogError {
                throw ConfigError(description: error.description)
            }
            try config.check()
            return config
        } catch let error as ConfigError {
            throw error
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            throw ConfigError(description: "config: \(keyPath(context.codingPath)) must be \(Self.expectedKind(type))")
        } catch {
            throw ConfigError(description: "config: \(error)")
        }
    }

    /// Refuses a config that cannot be used, naming the key: settings out of range or contradicting each other,
    /// and names the catalog does not have. `load` runs it; run it again after changing a loaded config (flags).
    public func check() throws {
        for name in cacheTTL.overrides.keys.sorted() where catalog.entityType(named: name) == nil {
            throw ConfigError(description: "config: unknown key 'cache_ttl.\(name)'; known: \(catalog.entityTypeList)")
        }
        try checkRanges()
        try auth.check(catalog: catalog)
        try server.check()
        _ = try ShiftSchedule(shifts)
        try redis.check()
        try mqtt.check(catalog: catalog)
    }

    /// What a setting of Swift type `type` takes, in the words of a YAML file's reader ("Int" means nothing to them).
    static func expectedKind(_ type: Any.Type) -> String {
        if type is Int.Type { return "a whole number" }
        if type is Double.Type { return "a number" }
        if type is Bool.Type { return "true or false" }
        if type is String.Type { return "text" }
        let name = String(describing: type)
        if name.hasPrefix("Array") { return "a list" }
        if name.hasPrefix("Dictionary") { return "a mapping" }
        return name
    }

    /// Section keys are snake_case in YAML and camelCase in Swift; top-level sections keep their YAML names, and
    /// `cache_ttl`'s keys are entity type names, not settings (`robot_arm_2` would not survive the round trip).
    static func camelCased(_ tree: [String: Any]) -> [String: Any] {
        tree.reduce(into: [:]) { result, section in
            guard section.key != "cache_ttl", let mapping = section.value as? [String: Any] else {
                result[section.key] = section.value
                return
            }
            result[section.key] = Dictionary(uniqueKeysWithValues: mapping.map { (camelCased($0.key), $0.value) })
        }
    }

    static func camelCased(_ key: String) -> String {
        let parts = key.split(separator: "_")
        return (parts.first.map(String.init) ?? "") + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    public static func snakeCased(_ key: String) -> String {
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

    static func applyOverride(name: String, value: String, to tree: inout [String: Any]) throws {
        let path = name.dropFirst("STATUSHUB_".count).lowercased()
        let typed = (try? Yams.load(yaml: value)) ?? value
        if path == "log_level" {
            tree["log_level"] = value
            return
        }
        if path.hasPrefix("cache_ttl_"), path.count > "cache_ttl_".count {
            var mapping = tree["cache_ttl"] as? [String: Any] ?? [:]
            mapping[String(path.dropFirst("cache_ttl_".count))] = typed
            tree["cache_ttl"] = mapping
            return
        }
        for (section, keys) in knownKeys where path.hasPrefix(section + "_") {
            let key = String(path.dropFirst(section.count + 1))
            guard keys.contains(key) else { continue }
            var mapping = tree[section] as? [String: Any] ?? [:]
            mapping[key] = key == "url" || key == "host" || key.hasSuffix("_key") || key.hasSuffix("_secret") || key.hasSuffix("_file") || key.hasSuffix("_channel")
                || section == "mqtt" && ["client_id", "username", "password", "share_group", "tenant"].contains(key) ? value : typed
            tree[section] = mapping
            return
        }
        throw ConfigError(description: "environment: \(name) names no config key")
    }
}

extension HubConfig.Server {
    /// `trusted_proxies` as ranges; `check` has refused a config with an entry that is none.
    public var proxies: TrustedProxies { TrustedProxies(trustedProxies.compactMap(AddressRange.init)) }

    func check() throws {
        for (index, entry) in trustedProxies.enumerated() where AddressRange(entry) == nil {
            throw ConfigError(description: "config: server.trusted_proxies[\(index)]: '\(entry)' is not an address or a CIDR range (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)")
        }
        guard (tlsCertificateFile == nil) == (tlsPrivateKeyFile == nil) else {
            throw ConfigError(description: "config: server.tls_certificate_file and server.tls_private_key_file go together; set both or neither")
        }
    }
}

extension HubConfig.Redis {
    /// Refuses settings that contradict each other or are out of range, naming the key.
    public func check() throws {
        if !sentinels.isEmpty, (masterName ?? "").isEmpty {
            throw ConfigError(description: "config: redis.sentinels needs redis.master_name (the name the sentinels monitor)")
        }
        guard reconnectMaxSeconds >= reconnectInitialSeconds else {
            throw ConfigError(description: "config: redis.reconnect_max_seconds must be at least redis.reconnect_initial_seconds")
        }
        try checkCluster()
        guard !shards.isEmpty else { return }
        if url != nil {
            throw ConfigError(description: "config: redis.shards and redis.url both name where events go; set one (each shard's URL carries its own password and database)")
        }
        if !sentinels.isEmpty {
            throw ConfigError(description: "config: redis.shards cannot be combined with redis.sentinels (failover per shard is not built)")
        }
        for (index, shard) in shards.enumerated() where !shard.lowercased().hasPrefix("redis://") {
            throw ConfigError(description: "config: redis.shards[\(index)] must be a redis:// URL; it is '\(shard)'")
        }
        if partitionCount < shards.count {
            throw ConfigError(description: "config: redis.partitions (\(partitionCount)) is fewer than redis.shards (\(shards.count)): a shard would hold no partition")
        }
    }
}

extension HubConfig.Redis {
    /// `redis.cluster`: seeds that are `redis://` URLs of database 0 (a cluster has no other), and nothing else that
    /// names where events go.
    private func checkCluster() throws {
        guard !cluster.isEmpty else { return }
        let others = [
            ("redis.url", url != nil), ("redis.shards", !shards.isEmpty), ("redis.sentinels", !sentinels.isEmpty),
        ]
        for (key, isSet) in others where isSet {
            throw ConfigError(description: "config: redis.cluster cannot be combined with \(key): the cluster's nodes are where events go (the seed URLs carry the password)")
        }
        for (index, seed) in cluster.enumerated() {
            guard seed.lowercased().hasPrefix("redis://") else {
                throw ConfigError(description: "config: redis.cluster[\(index)] must be a redis:// URL; it is '\(seed)'")
            }
            let path = seed.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).joined(separator: "/")
            if !path.isEmpty, path != "0" {
                throw ConfigError(description: "config: redis.cluster[\(index)] names database '\(path)'; a Redis Cluster has database 0 only")
            }
        }
    }
}

extension HubConfig.Auth {
    /// Refuses keys that could never match or that name what does not exist, naming the key.
    func check(catalog: Catalog) throws {
        var names = Set<String>()
        var positions: [[UInt8]: Int] = [:]
        for (position, key) in apiKeys.enumerated() {
            let label = "auth.api_keys[\(position)]"
            guard !key.name.isEmpty, names.insert(key.name).inserted else {
                throw ConfigError(description: "config: \(label).name must be non-empty and unique")
            }
            guard let digest = Self.digest(fromHex: key.hash) else {
                throw ConfigError(description: "config: \(label).hash must be the 64 hex digits of the key's SHA-256 (statushub hash-key)")
            }
            // One key presented would be either entry, its tenant and scope whichever matched last.
            if let first = positions.updateValue(position, forKey: digest) {
                throw ConfigError(description: "config: \(label).hash is auth.api_keys[\(first)]'s too; give each publisher a key of its own")
            }
            if let tenant = key.tenant, !Tenant.isValid(tenant) {
                throw ConfigError(description: "config: \(label).tenant must be \(Tenant.rule)")
            }
            for type in key.entityTypes ?? [] where catalog.entityType(named: type) == nil {
                throw ConfigError(description: "config: \(label).entity_types: unknown '\(type)'; allowed: \(catalog.entityTypeList)")
            }
            for line in key.lines ?? [] where !ChannelName.isValidSegment(line) {
                throw ConfigError(description: "config: \(label).lines: '\(line)' must be \(ChannelName.segmentRule)")
            }
        }
        if let metricsKeyHash {
            guard let digest = Self.digest(fromHex: metricsKeyHash) else {
                throw ConfigError(description: "config: auth.metrics_key_hash must be the 64 hex digits of the key's SHA-256 (statushub hash-key)")
            }
            // A publisher's key would also open the node's figures; a scraper's would also publish.
            if let position = positions[digest] {
                throw ConfigError(description: "config: auth.metrics_key_hash is auth.api_keys[\(position)]'s too; give the scraper a key of its own")
            }
        }
        if let secret = jwtHs256Secret, secret.utf8.count < 32 {
            throw ConfigError(description: "config: auth.jwt_hs256_secret must be at least 32 bytes (the HS256 output size)")
        }
    }

    /// The 32 bytes of a configured hash (`<64 hex>` or `sha256:<64 hex>`), or nil.
    public static func digest(fromHex text: String) -> [UInt8]? {
        let hex = Array((text.hasPrefix("sha256:") ? text.dropFirst(7) : text[...]).lowercased().utf8)
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let high = hexValue(hex[index]), let low = hexValue(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
