import Foundation
import Synchronization

/// A Sparkplug B edge node with devices, over the same libmosquitto client: the hub's tests drive it, and
/// `statushub sparkplug-edge` runs it against a plant's (or the demo's) broker. It follows the specification's
/// edge-node side: NDEATH as the will with this session's `bdSeq`, NBIRTH (seq 0) then a DBIRTH per device, DDATA
/// naming metrics by alias, `seq` 0…255 wrapping, and a fresh NBIRTH/DBIRTH set on `Node Control/Rebirth`.
public final class SparkplugEdgeNode: Sendable {
    public let group: String
    public let node: String
    public let devices: [String]
    public let statusMetric: String
    /// Numeric metrics each device is born with (and may report in `publishMetrics`).
    public let metricNames: [String]

    private let client: MosquittoClient
    private let state: Mutex<State>
    private let bdSeq: UInt64

    private struct State {
        var seq: UInt8 = 0
        var status: [String: String] = [:]
        var rebirthRequests = 0
        var births = 0
    }

    /// Alias of a device's metric: unique across the node, as the specification asks.
    private func alias(device: String, metric: String) -> UInt64 {
        let deviceIndex = UInt64(devices.firstIndex(of: device) ?? 0)
        let metricIndex = UInt64(metric == statusMetric ? 0 : (metricNames.firstIndex(of: metric) ?? 0) + 1)
        return 1 + deviceIndex * 64 + metricIndex
    }

    public init(
        endpoint: MQTTEndpoint, group: String, node: String, devices: [String], statusMetric: String = "Status",
        metricNames: [String] = ["temperature_celsius", "units_produced"], bdSeq: UInt64 = 0
    ) throws(MQTTError) {
        self.group = group
        self.node = node
        self.devices = devices
        self.statusMetric = statusMetric
        self.metricNames = metricNames
        self.bdSeq = bdSeq
        let state = Mutex(State())
        self.state = state
        var will = SparkplugPayload()
        will.timestamp = Self.now()
        will.metrics = [Self.metric("bdSeq", .uint64, long: bdSeq)]
        var handlers = MQTTHandlers()
        let rebirthTopic = SparkplugTopic(group: group, kind: .nodeCommand, node: node).description
        let box = Mutex<SparkplugEdgeNode?>(nil)
        handlers.connected = { client in
            try? client.subscribe(rebirthTopic, qos: 0)
            box.withLock { $0 }?.birth()
        }
        handlers.message = { message in
            guard message.topic == rebirthTopic, let payload = try? SparkplugPayload(serializedBytes: message.payload),
                payload.metrics.contains(where: { $0.name == "Node Control/Rebirth" && $0.booleanValue })
            else { return }
            guard let node = box.withLock({ $0 }) else { return }
            node.state.withLock { $0.rebirthRequests += 1 }
            node.birth()
        }
        client = try MosquittoClient(
            endpoint: endpoint,
            will: MQTTMessage(
                topic: SparkplugTopic(group: group, kind: .nodeDeath, node: node).description,
                payload: (try? will.serializedBytes()) ?? [], qos: 1),
            handlers: handlers)
        unregister = { box.withLock { $0 = nil } }
        box.withLock { $0 = self }
    }

    private let unregister: @Sendable () -> Void

    /// Connects (the births follow on connect) and waits until the broker accepted the connection.
    public func start(timeout: Duration = .seconds(10)) async throws(MQTTError) {
        await client.start()
        let deadline = ContinuousClock.now + timeout
        while !client.isConnected || state.withLock({ $0.births }) == 0 {
            guard ContinuousClock.now < deadline else {
                throw MQTTError("edge node \(group)/\(node) could not connect: \(client.lastError ?? "no answer")")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// NDEATH, then a clean disconnect.
    public func stop() async {
        var death = SparkplugPayload()
        death.timestamp = Self.now()
        death.metrics = [Self.metric("bdSeq", .uint64, long: bdSeq)]
        try? client.publish(MQTTMessage(topic: topic(.nodeDeath), payload: (try? death.serializedBytes()) ?? []))
        await client.stop()
        unregister()
    }

    /// Drops the connection without DISCONNECT, as a crash or a pulled cable would: the broker publishes the
    /// NDEATH will.
    public func kill() async {
        await client.stop(sendWill: true)
        unregister()
    }

    public var rebirthRequests: Int { state.withLock { $0.rebirthRequests } }
    public var births: Int { state.withLock { $0.births } }

    /// DDATA with the device's status metric (by alias). `timestamp` defaults to now; `historical` marks a
    /// back-filled value.
    public func publishStatus(device: String, status: String, timestamp: Date = Date(), historical: Bool = false) throws(MQTTError) {
        var metric = Self.metric(nil, .string, string: status)
        metric.alias = alias(device: device, metric: statusMetric)
        metric.timestamp = Self.milliseconds(timestamp)
        if historical { metric.isHistorical = true }
        if !historical { state.withLock { $0.status[device] = status } }
        try publishData(device: device, metrics: [metric], timestamp: timestamp)
    }

    /// DDATA with numeric metrics, by alias.
    public func publishMetrics(device: String, _ values: [String: Double], timestamp: Date = Date()) throws(MQTTError) {
        let metrics = values.keys.sorted().map { name in
            var metric = Self.metric(nil, .double, double: values[name]!)
            metric.alias = alias(device: device, metric: name)
            return metric
        }
        try publishData(device: device, metrics: metrics, timestamp: timestamp)
    }

    /// Uses up a `seq` without publishing: the host sees a gap.
    public func skipSeq() {
        state.withLock { $0.seq &+= 1 }
    }

    /// Any payload on a device's DDATA topic (a malformed one, in tests).
    public func publishRaw(device: String, payload: [UInt8]) throws(MQTTError) {
        try client.publish(MQTTMessage(topic: topic(.deviceData, device: device), payload: payload))
    }

    private func publishData(device: String, metrics: [SparkplugPayload.Metric], timestamp: Date) throws(MQTTError) {
        var payload = SparkplugPayload()
        payload.timestamp = Self.milliseconds(timestamp)
        payload.metrics = metrics
        // seq and publish under one lock: messages leave in seq order.
        try state.withLock { (state: inout State) throws(MQTTError) in
            payload.seq = UInt64(state.seq)
            state.seq &+= 1
            try client.publish(MQTTMessage(topic: topic(.deviceData, device: device), payload: (try? payload.serializedBytes()) ?? []))
        }
    }

    /// NBIRTH (seq 0, bdSeq, the rebirth control), then each device's DBIRTH with its metrics' names, aliases and
    /// current values.
    private func birth() {
        state.withLock { state in
            state.seq = 0
            state.births += 1
            var nodeBirth = SparkplugPayload()
            nodeBirth.timestamp = Self.now()
            nodeBirth.seq = 0
            nodeBirth.metrics = [
                Self.metric("bdSeq", .uint64, long: bdSeq),
                Self.metric("Node Control/Rebirth", .boolean, bool: false),
            ]
            try? client.publish(MQTTMessage(topic: topic(.nodeBirth), payload: (try? nodeBirth.serializedBytes()) ?? []))
            state.seq = 1
            for device in devices {
                var birth = SparkplugPayload()
                birth.timestamp = Self.now()
                birth.seq = UInt64(state.seq)
                state.seq &+= 1
                var status = Self.metric(statusMetric, .string, string: state.status[device] ?? "idle")
                status.alias = alias(device: device, metric: statusMetric)
                birth.metrics = [status] + metricNames.map { name in
                    var metric = Self.metric(name, .double, double: 0)
                    metric.alias = alias(device: device, metric: name)
                    return metric
                }
                try? client.publish(MQTTMessage(topic: topic(.deviceBirth, device: device), payload: (try? birth.serializedBytes()) ?? []))
            }
        }
    }

    private func topic(_ kind: SparkplugTopic.Kind, device: String? = nil) -> String {
        SparkplugTopic(group: group, kind: kind, node: node, device: device).description
    }

    static func now() -> UInt64 { milliseconds(Date()) }
    static func milliseconds(_ date: Date) -> UInt64 { UInt64(max(0, date.timeIntervalSince1970 * 1000)) }

    static func metric(
        _ name: String?, _ type: SparkplugDataType, long: UInt64? = nil, bool: Bool? = nil, string: String? = nil, double: Double? = nil
    ) -> SparkplugPayload.Metric {
        var metric = SparkplugPayload.Metric()
        if let name { metric.name = name }
        metric.datatype = UInt32(type.rawValue)
        if let long { metric.longValue = long }
        if let bool { metric.booleanValue = bool }
        if let string { metric.stringValue = string }
        if let double { metric.doubleValue = double }
        return metric
    }
}
