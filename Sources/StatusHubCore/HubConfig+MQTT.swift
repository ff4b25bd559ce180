import Foundation

extension HubConfig {
    /// The bridge from the plant's MQTT broker (docs/configuration.md, "mqtt"). Off while `url` is absent.
    public struct MQTT: Sendable, Equatable, Codable {
        /// `mqtt://host:1883` or `mqtts://host:8883` (TLS). Absent: no bridge.
        public var url: String?
        /// MQTT client id; absent: `statushub-<host name>-<pid>`. Each node needs its own: a broker drops the older
        /// of two connections with one id.
        public var clientId: String?
        public var username: String?
        public var password: String?
        /// PEM CA bundle for `mqtts://` (absent: the system's trust store); client certificate and key if the broker
        /// asks for one.
        public var tlsCaFile: String?
        public var tlsCertificateFile: String?
        public var tlsPrivateKeyFile: String?
        public var keepaliveSeconds = 30
        /// Seconds between reconnect attempts start here and double up to `reconnect_max_seconds` (whole seconds,
        /// the client's own backoff).
        public var reconnectInitialSeconds = 1
        public var reconnectMaxSeconds = 30
        /// Plain topics are subscribed as `$share/<share_group>/<filter>` (MQTT 5 shared subscriptions, which
        /// mosquitto 2 also offers to 3.1.1 clients), so the broker gives each message to one bridging node; ""
        /// subscribes every node to everything (the idempotency key then keeps one event per message).
        /// Sparkplug topics are never shared: a host application needs every message of an edge node, in order.
        public var shareGroup = "statushub"
        /// Messages received and not yet stored; when full the bridge stops reading from the broker until the engine
        /// catches up (back-pressure: the broker holds the rest).
        public var maxPendingMessages = 10_000
        /// Tenant the bridged events belong to.
        public var tenant = Tenant.defaultName
        /// Plain JSON topics.
        public var topics: [TopicMapping] = []
        /// Sparkplug B host application; absent: Sparkplug topics are not subscribed.
        public var sparkplug: Sparkplug?

        public init() {}

        public var isEnabled: Bool { url != nil }
    }

    /// One plain topic: its levels name the envelope's parts, its JSON payload becomes `data`.
    public struct TopicMapping: Sendable, Equatable, Codable {
        /// Topic levels, literal or `{name}` (one level each): `plant/{site}/{area}/{line}/{cell}/{machine}/status`.
        public var topic: String
        public var eventType: String
        public var entityType: String
        /// Templates over the topic's names: `{machine}`, `M-{cell}`.
        public var entityId: String
        public var line: String?
        /// Payload field renames: `{"state": "current_status"}` stores the payload's `state` as `data.current_status`.
        public var fields: [String: String] = [:]
        /// Payload values renamed per data field: `{"current_status": {"RUN": "running", "STOP": "idle"}}`.
        public var values: [String: [String: String]] = [:]

        public init(topic: String, eventType: String, entityType: String, entityId: String, line: String? = nil) {
            self.topic = topic
            self.eventType = eventType
            self.entityType = entityType
            self.entityId = entityId
            self.line = line
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case topic, eventType = "event_type", entityType = "entity_type", entityId = "entity_id", line, fields, values
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            topic = try container.decode(String.self, forKey: .topic)
            eventType = try container.decode(String.self, forKey: .eventType)
            entityType = try container.decode(String.self, forKey: .entityType)
            entityId = try container.decode(String.self, forKey: .entityId)
            line = try container.decodeIfPresent(String.self, forKey: .line)
            fields = try container.decodeIfPresent([String: String].self, forKey: .fields) ?? [:]
            values = try container.decodeIfPresent([String: [String: String]].self, forKey: .values) ?? [:]
        }
    }

    /// The Sparkplug B host application (docs/configuration.md, "mqtt.sparkplug").
    public struct Sparkplug: Sendable, Equatable, Codable {
        /// Sparkplug group ids to subscribe (`spBv1.0/<group>/#`); empty: all (`spBv1.0/#`).
        public var groups: [String] = []
        /// Host id of the STATE message (`spBv1.0/STATE/<host_id>`, retained, with a will saying offline). One per
        /// hub node: the will of one must not declare the others offline.
        public var hostId = "statushub"
        /// Which hub entity a device is: templates over `{group}`, `{node}` and `{device}`.
        public var entityType = "machine"
        public var entityId = "{device}"
        public var line: String? = "{node}"
        /// The metric that is the device's status, and its values by status (`{"1": "running", "2": "idle"}`; a
        /// value not listed is used as it is).
        public var statusMetric = "Status"
        public var statusValues: [String: String] = [:]
        public var statusEventType = "resource_status_changed"
        /// Every other device metric goes into one event of this type per message (renamed by `metric_fields`);
        /// "" drops them.
        public var metricsEventType = "machine_metrics_reported"
        public var metricFields: [String: String] = [:]
        /// The status a device gets when its node dies (NDEATH) or it dies (DDEATH).
        public var offlineStatus = "offline"
        /// Milliseconds a message after a `seq` gap waits for the missing ones before the host asks for a rebirth.
        public var reorderTimeoutMs = 2000

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case groups, hostId = "host_id", entityType = "entity_type", entityId = "entity_id", line,
                statusMetric = "status_metric", statusValues = "status_values", statusEventType = "status_event_type",
                metricsEventType = "metrics_event_type", metricFields = "metric_fields", offlineStatus = "offline_status",
                reorderTimeoutMs = "reorder_timeout_ms"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Sparkplug()
            groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? defaults.groups
            hostId = try container.decodeIfPresent(String.self, forKey: .hostId) ?? defaults.hostId
            entityType = try container.decodeIfPresent(String.self, forKey: .entityType) ?? defaults.entityType
            entityId = try container.decodeIfPresent(String.self, forKey: .entityId) ?? defaults.entityId
            line = container.contains(.line) ? try container.decodeIfPresent(String.self, forKey: .line) : defaults.line
            statusMetric = try container.decodeIfPresent(String.self, forKey: .statusMetric) ?? defaults.statusMetric
            statusValues = try container.decodeIfPresent([String: String].self, forKey: .statusValues) ?? defaults.statusValues
            statusEventType = try container.decodeIfPresent(String.self, forKey: .statusEventType) ?? defaults.statusEventType
            metricsEventType = try container.decodeIfPresent(String.self, forKey: .metricsEventType) ?? defaults.metricsEventType
            metricFields = try container.decodeIfPresent([String: String].self, forKey: .metricFields) ?? defaults.metricFields
            offlineStatus = try container.decodeIfPresent(String.self, forKey: .offlineStatus) ?? defaults.offlineStatus
            reorderTimeoutMs = try container.decodeIfPresent(Int.self, forKey: .reorderTimeoutMs) ?? defaults.reorderTimeoutMs
        }
    }
}

extension HubConfig.MQTT {
    /// The section's own rules (its numbers' ranges are in `HubConfig.ranges`); the mappings are checked against the
    /// catalog by the bridge when it is built (`TopicMapping` names event and entity types), at start, before
    /// anything is subscribed.
    func check(catalog: Catalog) throws {
        guard isEnabled else { return }
        guard reconnectMaxSeconds >= reconnectInitialSeconds else {
            throw ConfigError(description: "config: mqtt.reconnect_max_seconds must be at least mqtt.reconnect_initial_seconds")
        }
        guard !topics.isEmpty || sparkplug != nil else {
            throw ConfigError(description: "config: mqtt has a url but neither topics nor sparkplug: the bridge would hear nothing")
        }
        guard shareGroup.isEmpty || !shareGroup.contains(where: { "/+#".contains($0) }) else {
            throw ConfigError(description: "config: mqtt.share_group must not contain '/', '+' or '#'")
        }
        guard (tlsCertificateFile == nil) == (tlsPrivateKeyFile == nil) else {
            throw ConfigError(description: "config: mqtt.tls_certificate_file and mqtt.tls_private_key_file go together; set both or neither")
        }
    }
}
