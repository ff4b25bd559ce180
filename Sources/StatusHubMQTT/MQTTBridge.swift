import Crypto
import Foundation
import Logging
import Prometheus
import StatusHubCore
import Synchronization

/// The plant's MQTT broker as a source of hub events (README, "MQTT bridge"): plain JSON topics mapped by
/// `mqtt.topics`, and Sparkplug B as a host application (`SparkplugHost`). Every event goes through the catalog's
/// `EventValidator` and `Engine.append`, as HTTP ingest's do, with an idempotency key derived from the message.
///
/// libmosquitto's network thread receives; `MessageHandoff` carries messages to the bridge's one task, which maps
/// them in broker order and appends each batch to the engine, retrying while the engine is unavailable (the
/// hand-off then fills and the client stops reading: back-pressure to the broker).
public final class MQTTBridge: IngestBridge {
    public var name: String { "mqtt" }

    private let config: HubConfig.MQTT
    private let validator: EventValidator
    private let engine: any Engine
    private let maxEventBytes: Int
    private let mappings: [JSONTopicMapping]
    private let handoff: MessageHandoff
    private let metrics: MQTTMetrics
    private let logger: Logger
    private let client: MosquittoClient
    private let endpoint: MQTTEndpoint
    /// The Sparkplug host's memory; used only when `config.sparkplug` is set, by the bridge's one task.
    private let host: Mutex<SparkplugHost>
    private let refusalLog = Mutex(RefusalLogBudget())
    /// `{"online":…,"timestamp":…}` of this session's STATE birth and will carry the same timestamp (spec 3.0).
    private let stateTimestamp: UInt64

    /// Throws `ConfigError` for a mapping the catalog cannot take or a broker URL that cannot be used, so a
    /// misconfigured node stops at start instead of refusing every message later.
    public init(config hubConfig: HubConfig, engine: any Engine, registry: PrometheusCollectorRegistry, logger: Logger) throws {
        let config = hubConfig.mqtt
        guard let url = config.url else { throw ConfigError(description: "config: mqtt.url is not set") }
        self.config = config
        self.engine = engine
        self.validator = EventValidator(catalog: hubConfig.catalog, maxClockAheadSeconds: hubConfig.server.maxClockAheadSeconds)
        self.maxEventBytes = hubConfig.server.maxEventBytes
        self.logger = logger
        let metrics = MQTTMetrics(registry: registry)
        self.metrics = metrics
        mappings = try config.topics.enumerated().map { try JSONTopicMapping($1, position: $0, catalog: hubConfig.catalog) }
        if let sparkplug = config.sparkplug {
            try Self.check(sparkplug, catalog: hubConfig.catalog)
        }
        host = Mutex(SparkplugHost(config: config.sparkplug ?? .init()))
        let handoff = MessageHandoff(capacity: config.maxPendingMessages)
        self.handoff = handoff
        var endpoint: MQTTEndpoint
        do {
            endpoint = try MQTTEndpoint(url: url, clientID: config.clientId ?? Self.defaultClientID())
        } catch {
            throw ConfigError(description: "config: mqtt.url: \(error.description)")
        }
        endpoint.username = config.username
        endpoint.password = config.password
        endpoint.caFile = config.tlsCaFile
        endpoint.certificateFile = config.tlsCertificateFile
        endpoint.privateKeyFile = config.tlsPrivateKeyFile
        endpoint.keepAliveSeconds = config.keepaliveSeconds
        endpoint.reconnectInitialSeconds = config.reconnectInitialSeconds
        endpoint.reconnectMaxSeconds = config.reconnectMaxSeconds
        self.endpoint = endpoint

        let stateTimestamp = UInt64(Date().timeIntervalSince1970 * 1000)
        self.stateTimestamp = stateTimestamp
        let will = config.sparkplug.map {
            MQTTMessage(topic: SparkplugTopic.state(hostID: $0.hostId), payload: Self.statePayload(online: false, timestamp: stateTimestamp), retain: true)
        }
        var handlers = MQTTHandlers()
        let subscriptions = Self.subscriptions(config: config, mappings: self.mappings)
        let birth = will.map { MQTTMessage(topic: $0.topic, payload: Self.statePayload(online: true, timestamp: stateTimestamp), retain: true) }
        handlers.connected = { [metrics, logger, endpoint] client in
            metrics.connected.set(1.0)
            logger.notice("mqtt: connected to \(endpoint.host):\(endpoint.port) as \(endpoint.clientID)")
            // A clean session keeps no subscriptions: every (re)connect subscribes again, then says the host is online.
            for filter in subscriptions {
                do { try client.subscribe(filter, qos: 1) } catch { logger.error("mqtt: \(error)") }
            }
            if let birth {
                do { try client.publish(birth) } catch { logger.error("mqtt: \(error)") }
            }
        }
        handlers.disconnected = { [metrics, logger] reason in
            metrics.connected.set(0.0)
            metrics.disconnects.increment()
            logger.warning("mqtt: \(reason); reconnecting with backoff unless the node is stopping")
        }
        handlers.message = { [handoff] message in
            handoff.put(message)
        }
        do {
            client = try MosquittoClient(endpoint: endpoint, will: will, handlers: handlers)
        } catch {
            throw ConfigError(description: "config: mqtt: \(error.description)")
        }
    }

    /// The filters a (re)connect subscribes: plain topics shared (`$share/<group>/…`) unless `share_group` is "",
    /// Sparkplug never (a host needs all of a node's messages, in order).
    static func subscriptions(config: HubConfig.MQTT, mappings: [JSONTopicMapping]) -> [String] {
        var filters: [String] = []
        for filter in Set(mappings.map(\.filter)).sorted() {
            filters.append(config.shareGroup.isEmpty ? filter : "$share/\(config.shareGroup)/\(filter)")
        }
        if let sparkplug = config.sparkplug {
            filters += sparkplug.groups.isEmpty ? ["\(SparkplugTopic.namespace)/#"] : sparkplug.groups.map { "\(SparkplugTopic.namespace)/\($0)/#" }
        }
        return filters
    }

    public var problem: String? {
        client.isConnected ? nil : "not connected to the broker at \(endpoint.host):\(endpoint.port)\(client.lastError.map { ": \($0)" } ?? "")"
    }

    public var isConnected: Bool { client.isConnected }

    /// Messages received and not yet stored (or given up).
    public var pending: Int { handoff.held }

    public func run() async throws {
        await client.start()
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                // The Sparkplug reorder timeout is measured against this clock.
                group.addTask { [handoff] in
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(100))
                        handoff.wake()
                    }
                }
                await consume()
                group.cancelAll()
            }
        } onCancel: { [handoff] in
            handoff.close()
        }
        if let sparkplug = config.sparkplug {
            // A clean goodbye: the broker keeps the retained offline STATE (the will is for a crash).
            try? client.publish(MQTTMessage(
                topic: SparkplugTopic.state(hostID: sparkplug.hostId), payload: Self.statePayload(online: false, timestamp: stateTimestamp), retain: true))
        }
        await client.stop()
    }

    /// Maps and stores batches until the hand-off closes.
    private func consume() async {
        while let messages = await handoff.take(limit: 500) {
            var drafts: [Draft] = []
            var commands: [MQTTMessage] = []
            let receivedAt = Date()
            for message in messages {
                metrics.messagesReceived.increment()
                route(message, receivedAt: receivedAt, drafts: &drafts, commands: &commands)
            }
            if config.sparkplug != nil {
                let ticked = host.withLock { $0.tick(now: .now) }
                collect(ticked, origin: "sparkplug", drafts: &drafts, commands: &commands)
            }
            for command in commands {
                do {
                    try client.publish(command)
                    metrics.rebirthRequests.increment()
                } catch {
                    logger.warning("mqtt: \(error)")
                }
            }
            await store(drafts, receivedAt: receivedAt)
            handoff.release(messages.count)
        }
    }

    private struct Draft {
        var envelope: JSONValue
        var topic: String
    }

    private func route(_ message: MQTTMessage, receivedAt: Date, drafts: inout [Draft], commands: inout [MQTTMessage]) {
        if config.sparkplug != nil, message.topic.hasPrefix(SparkplugTopic.namespace + "/") {
            guard let topic = SparkplugTopic(message.topic) else {
                // STATE of host applications (this one's too) is not ours; anything else in the namespace is malformed.
                if !SparkplugTopic.isHostState(message.topic) {
                    refuse(topic: message.topic, "not a Sparkplug B node or device topic (spBv1.0/<group>/<type>/<node>[/<device>])")
                }
                return
            }
            let key = Self.key(topic: message.topic, payload: message.payload)
            let output = host.withLock { $0.receive(topic: topic, payload: message.payload, key: key, now: .now) }
            collect(output, origin: message.topic, drafts: &drafts, commands: &commands)
            return
        }
        for mapping in mappings {
            guard let names = mapping.match(message.topic) else { continue }
            switch mapping.map(topic: message.topic, names: names, payload: message.payload, receivedAt: receivedAt) {
            case .event(var envelope, let hasSourceTimestamp):
                // Derived from the message when it carries its own timestamp, so every node bridging the broker
                // without shared subscriptions stores it once. Without one, two equal payloads are two readings
                // (a heartbeat that keeps a state fresh), so the key is this node's own: safe to retry, never merged.
                let key = hasSourceTimestamp ? Self.key(topic: message.topic, payload: message.payload) : "mqtt:" + UUID().uuidString
                if case .object(var members) = envelope {
                    members["idempotency_key"] = .string(key)
                    envelope = .object(members)
                }
                drafts.append(Draft(envelope: envelope, topic: message.topic))
            case .refused(let reason):
                refuse(topic: message.topic, reason)
            }
            return
        }
        refuse(topic: message.topic, "no mqtt.topics mapping matches")
    }

    private func collect(_ output: SparkplugHost.Output, origin: String, drafts: inout [Draft], commands: inout [MQTTMessage]) {
        for refusal in output.refusals { refuse(topic: origin, refusal) }
        drafts += output.events.map { Draft(envelope: $0, topic: origin) }
        commands += output.commands
    }

    /// Validates like HTTP ingest, then appends in order, retrying while the engine is unavailable.
    private func store(_ drafts: [Draft], receivedAt: Date) async {
        var events: [ValidatedEvent] = []
        for draft in drafts {
            switch validator.validate(draft.envelope, receivedAt: receivedAt, tenant: config.tenant) {
            case .valid(let event):
                if event.bodyAfterID.count > maxEventBytes {
                    refuse(topic: draft.topic, "event: \(event.bodyAfterID.count) bytes is over the \(maxEventBytes)-byte limit (server.max_event_bytes)")
                } else {
                    events.append(event)
                }
            case .invalid(let problems):
                refuse(topic: draft.topic, problems.map { "\($0.field): \($0.reason)" }.joined(separator: "; "))
            }
        }
        guard !events.isEmpty else { return }
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let appended = try await engine.append(events)
                metrics.eventsMapped.increment(by: Int64(appended.count(where: \.stored)))
                metrics.duplicates.increment(by: Int64(appended.count(where: { $0.duplicate })))
                return
            } catch {
                // Every event carries an idempotency key, so resending after a lost answer stores each once.
                metrics.engineRetries.increment()
                logger.warning("mqtt: \(events.count) events wait for the engine (\(error)); retrying in \(delay)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
        logger.error("mqtt: stopping with \(events.count) events the engine never took; they are lost")
    }

    private func refuse(topic: String, _ reason: String) {
        metrics.messagesRefused.increment()
        if refusalLog.withLock({ $0.spend(now: .now) }) {
            logger.warning("mqtt: refused \(topic): \(reason)")
        }
    }

    /// The message's own key: the same on every node that receives it.
    static func key(topic: String, payload: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(data: Array(topic.utf8))
        hash.update(data: [0])
        hash.update(data: payload)
        return "mqtt:" + hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func statePayload(online: Bool, timestamp: UInt64) -> [UInt8] {
        Array(#"{"online":\#(online),"timestamp":\#(timestamp)}"#.utf8)
    }

    static func defaultClientID() -> String {
        "statushub-\(ProcessInfo.processInfo.hostName.prefix(40))-\(ProcessInfo.processInfo.processIdentifier)"
    }

    static func check(_ sparkplug: HubConfig.Sparkplug, catalog: Catalog) throws {
        let label = "mqtt.sparkplug"
        guard let entityType = catalog.entityType(named: sparkplug.entityType) else {
            throw ConfigError(description: "config: \(label).entity_type '\(sparkplug.entityType)' is not in the catalog; known: \(catalog.entityTypeList)")
        }
        for (field, name) in [("status_event_type", sparkplug.statusEventType), ("metrics_event_type", sparkplug.metricsEventType)] where !name.isEmpty {
            guard let eventType = catalog.publishableEventType(named: name) else {
                throw ConfigError(description: "config: \(label).\(field) '\(name)' is not in the catalog; known: \(catalog.publishableList)")
            }
            try CatalogAgreement.check(entityType, carries: eventType, label: label, eventKey: field)
        }
        if !sparkplug.statusEventType.isEmpty {
            try CatalogAgreement.check(status: sparkplug.offlineStatus, of: entityType, key: "\(label).offline_status")
            for (raw, status) in sparkplug.statusValues.sorted(by: { $0.key < $1.key }) {
                try CatalogAgreement.check(status: status, of: entityType, key: "\(label).status_values.\(raw)")
            }
        }
        for (field, template) in [("entity_id", sparkplug.entityId), ("line", sparkplug.line ?? "")] {
            for name in TopicTemplate.names(in: template) where !["group", "node", "device"].contains(name) {
                throw ConfigError(description: "config: \(label).\(field) uses {\(name)}; Sparkplug names are {group}, {node} and {device}")
            }
        }
        guard !sparkplug.hostId.isEmpty, !sparkplug.hostId.contains(where: { "/+#".contains($0) }) else {
            throw ConfigError(description: "config: \(label).host_id must be non-empty without '/', '+' or '#'")
        }
    }
}

/// At most 20 refusal lines a second in the log; the counter counts them all.
struct RefusalLogBudget {
    var second: ContinuousClock.Instant?
    var spent = 0

    mutating func spend(now: ContinuousClock.Instant) -> Bool {
        if let second, now - second < .seconds(1) {
            spent += 1
            return spent <= 20
        }
        second = now
        spent = 1
        return true
    }
}

/// The bridge's counters, in the hub's registry (`GET /metrics`).
struct MQTTMetrics: Sendable {
    let messagesReceived: Counter
    let eventsMapped: Counter
    let messagesRefused: Counter
    let duplicates: Counter
    let rebirthRequests: Counter
    let engineRetries: Counter
    let disconnects: Counter
    let connected: Gauge

    init(registry: PrometheusCollectorRegistry) {
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: .init(namespace: "statushub", subsystem: "mqtt", metricName: name, unitName: "total", helpText: help))
        }
        messagesReceived = counter("messages_received", "MQTT messages the bridge received")
        eventsMapped = counter("events_mapped", "Hub events the bridge stored from MQTT messages")
        messagesRefused = counter("messages_refused", "MQTT messages (or Sparkplug metrics) the bridge could not map or validate")
        duplicates = counter("duplicates", "Bridged events already stored (another node, or a redelivery)")
        rebirthRequests = counter("rebirth_requests", "Sparkplug rebirth requests sent (seq gap, unknown node or alias)")
        engineRetries = counter("engine_retries", "Bridged batches retried because the engine was unavailable")
        disconnects = counter("disconnects", "Connections to the broker lost")
        connected = registry.makeGauge(
            descriptor: .init(namespace: "statushub", subsystem: "mqtt", metricName: "connected", unitName: "", helpText: "1 while connected to the broker"))
    }
}
