import Foundation
import StatusHubCore
import SwiftProtobuf

/// The Sparkplug B host application's memory of the edge nodes it hears (specification 3.0, chapter 5), and the
/// mapping of their messages to hub events. Pure state: the bridge feeds it messages in the order the broker
/// delivered them and the clock's ticks, and carries out what it answers (events to append, commands to publish).
/// One task at a time calls it.
///
/// - Births record each metric's name, alias and datatype; data messages may then name metrics by alias alone.
/// - `seq` (0…255, wrapping) orders a node's messages after its NBIRTH. A message ahead of the expected one waits
///   (up to `reorder_timeout_ms`) for the ones missing; when they do not come, the waiting messages are mapped in
///   `seq` order and the node is asked to rebirth (NCMD `Node Control/Rebirth`), as is a node heard from without a
///   birth, or a metric alias the births never named.
/// - NDEATH whose `bdSeq` matches the node's birth (a stale will of an earlier session does not) and DDEATH mark
///   the devices `offline_status` at once, one event per device.
/// - A metric's `timestamp` becomes the event's `timestamp`; `is_historical` metrics are mapped with their own
///   (older) timestamps, which the engine's source-time order stores as history without replacing the live state.
public struct SparkplugHost: Sendable {
    public struct Output: Sendable {
        /// Envelopes for `EventValidator`, each with an idempotency key derived from the message.
        public var events: [JSONValue] = []
        /// Rebirth requests to publish.
        public var commands: [MQTTMessage] = []
        /// Messages or metrics that could not be mapped, with the reason (counted and logged by the bridge).
        public var refusals: [String] = []
    }

    struct Metric: Sendable {
        var name: String
        var datatype: UInt32
    }

    struct Device: Sendable {
        var online = true
        var lastStatus: String?
        /// Milliseconds of the newest live status mapped: a death is dated after it, so it is never late.
        var lastTimestamp: UInt64 = 0
    }

    struct Node: Sendable {
        var bdSeq: UInt64?
        var online = true
        /// The `seq` the next message should carry.
        var expectedSeq: UInt8 = 1
        var aliases: [UInt64: Metric] = [:]
        var devices: [String: Device] = [:]
        /// Messages ahead of `expectedSeq`, by seq, and when the oldest started waiting.
        var waiting: [UInt8: Pending] = [:]
        var waitingSince: ContinuousClock.Instant?
        var lastRebirthRequest: ContinuousClock.Instant?
    }

    struct Pending: Sendable {
        var topic: SparkplugTopic
        var payload: SparkplugPayload
        var key: String
    }

    let config: HubConfig.Sparkplug
    var nodes: [SparkplugTopic.NodeKey: Node] = [:]

    public init(config: HubConfig.Sparkplug) {
        self.config = config
    }

    /// Devices currently online, by node (for tests and logs).
    public func onlineDevices(of group: String, node: String) -> [String] {
        (nodes[.init(group: group, node: node)]?.devices.filter { $0.value.online }.keys.sorted()) ?? []
    }

    /// Maps one message. `key` is derived from the message (topic and payload) so that every hub node that bridges
    /// the same broker derives the same idempotency keys.
    public mutating func receive(topic: SparkplugTopic, payload bytes: [UInt8], key: String, now: ContinuousClock.Instant) -> Output {
        var output = Output()
        let payload: SparkplugPayload
        do {
            payload = try SparkplugPayload(serializedBytes: bytes)
        } catch {
            output.refusals.append("\(topic.description): not a Sparkplug B payload (\(error))")
            return output
        }
        switch topic.kind {
        case .nodeCommand, .deviceCommand:
            return output
        case .nodeBirth:
            birth(topic: topic, payload: payload, key: key, into: &output)
        case .nodeDeath:
            death(topic: topic, payload: payload, key: key, into: &output)
        case .deviceBirth, .deviceDeath, .nodeData, .deviceData:
            sequenced(topic: topic, payload: payload, key: key, now: now, into: &output)
        }
        return output
    }

    /// Gives up on gaps older than the reorder timeout: maps what waited, asks for a rebirth.
    public mutating func tick(now: ContinuousClock.Instant) -> Output {
        var output = Output()
        let timeout = Duration.milliseconds(config.reorderTimeoutMs)
        for key in nodes.keys {
            guard let since = nodes[key]?.waitingSince, now - since >= timeout else { continue }
            let waiting = nodes[key]!.waiting
            nodes[key]!.waiting = [:]
            nodes[key]!.waitingSince = nil
            let expected = nodes[key]!.expectedSeq
            // In seq order from the expected one, wrapping at 256.
            let ordered = waiting.sorted { UInt8(truncatingIfNeeded: $0.key &- expected) < UInt8(truncatingIfNeeded: $1.key &- expected) }
            for (seq, pending) in ordered {
                apply(topic: pending.topic, payload: pending.payload, key: pending.key, into: &output)
                nodes[key]?.expectedSeq = seq &+ 1
            }
            output.refusals.append("\(key): seq \(expected) did not arrive within \(config.reorderTimeoutMs) ms; rebirth requested")
            requestRebirth(key, now: now, into: &output, force: true)
        }
        return output
    }

    private mutating func birth(topic: SparkplugTopic, payload: SparkplugPayload, key: String, into output: inout Output) {
        var node = Node()
        node.bdSeq = payload.metrics.first { $0.name == "bdSeq" }.flatMap(Self.unsigned)
        node.expectedSeq = UInt8(truncatingIfNeeded: payload.seq &+ 1)
        // A rebirth keeps the devices it knew until their own DBIRTH, which follows.
        node.devices = nodes[topic.nodeKey]?.devices ?? [:]
        for metric in payload.metrics where metric.hasName && metric.hasAlias {
            node.aliases[metric.alias] = Metric(name: metric.name, datatype: metric.datatype)
        }
        nodes[topic.nodeKey] = node
    }

    private mutating func death(topic: SparkplugTopic, payload: SparkplugPayload, key: String, into output: inout Output) {
        guard var node = nodes[topic.nodeKey] else { return }
        let bdSeq = payload.metrics.first { $0.name == "bdSeq" }.flatMap(Self.unsigned)
        if let bdSeq, let current = node.bdSeq, bdSeq != current {
            // The will of an earlier session, delivered after the node was born again: not this session's death.
            output.refusals.append("\(topic.description): bdSeq \(bdSeq) is not the current session's \(current); ignored")
            return
        }
        node.online = false
        node.waiting = [:]
        node.waitingSince = nil
        // The will was written when the node connected, so its timestamp is older than everything since: the death
        // is dated when the host hears it (and never before the device's newest status, whatever the clocks say).
        let heard = Self.milliseconds(Date())
        for device in node.devices.keys.sorted() where node.devices[device]!.online {
            let timestamp = Self.timestamp(max(heard, node.devices[device]!.lastTimestamp + 1))  // datable: never overflows
            node.devices[device]!.online = false
            let previous = node.devices[device]!.lastStatus
            node.devices[device]!.lastStatus = config.offlineStatus
            output.events.append(statusEvent(
                topic: topic, device: device, status: config.offlineStatus, previous: previous, timestamp: timestamp,
                trigger: "NDEATH", key: "\(key):\(device)"))
        }
        nodes[topic.nodeKey] = node
    }

    private mutating func sequenced(
        topic: SparkplugTopic, payload: SparkplugPayload, key: String, now: ContinuousClock.Instant, into output: inout Output
    ) {
        let nodeKey = topic.nodeKey
        guard let node = nodes[nodeKey], node.online else {
            output.refusals.append("\(topic.description): no NBIRTH heard from \(nodeKey); rebirth requested")
            requestRebirth(nodeKey, now: now, into: &output, force: false)
            return
        }
        guard payload.hasSeq else {
            apply(topic: topic, payload: payload, key: key, into: &output)
            return
        }
        let seq = UInt8(truncatingIfNeeded: payload.seq)
        let ahead = seq &- node.expectedSeq
        if ahead == 0 {
            apply(topic: topic, payload: payload, key: key, into: &output)
            nodes[nodeKey]!.expectedSeq = seq &+ 1
            drainWaiting(nodeKey, into: &output)
        } else if ahead < 128 {
            nodes[nodeKey]!.waiting[seq] = Pending(topic: topic, payload: payload, key: key)
            if nodes[nodeKey]!.waitingSince == nil { nodes[nodeKey]!.waitingSince = now }
        } else {
            // Behind: a redelivery (the idempotency key stores it once) or an old message; mapped as it is, its
            // timestamps decide whether it replaces anything.
            apply(topic: topic, payload: payload, key: key, into: &output)
        }
    }

    private mutating func drainWaiting(_ nodeKey: SparkplugTopic.NodeKey, into output: inout Output) {
        while let expected = nodes[nodeKey]?.expectedSeq, let next = nodes[nodeKey]?.waiting.removeValue(forKey: expected) {
            apply(topic: next.topic, payload: next.payload, key: next.key, into: &output)
            nodes[nodeKey]!.expectedSeq = expected &+ 1
        }
        if nodes[nodeKey]?.waiting.isEmpty == true { nodes[nodeKey]!.waitingSince = nil }
    }

    private mutating func requestRebirth(_ nodeKey: SparkplugTopic.NodeKey, now: ContinuousClock.Instant, into output: inout Output, force: Bool) {
        // One request per reorder timeout and node: a node that streams data without a birth is asked once, not
        // once per message.
        if !force, let last = nodes[nodeKey]?.lastRebirthRequest, now - last < .milliseconds(config.reorderTimeoutMs) { return }
        if nodes[nodeKey] == nil { nodes[nodeKey] = Node(online: false) }
        nodes[nodeKey]!.lastRebirthRequest = now
        output.commands.append(Self.rebirthRequest(for: nodeKey))
    }

    /// NCMD `Node Control/Rebirth` = true (specification 3.0, 6.4.11).
    public static func rebirthRequest(for node: SparkplugTopic.NodeKey) -> MQTTMessage {
        var payload = SparkplugPayload()
        payload.timestamp = UInt64(Date().timeIntervalSince1970 * 1000)
        var metric = SparkplugPayload.Metric()
        metric.name = "Node Control/Rebirth"
        metric.datatype = UInt32(SparkplugDataType.boolean.rawValue)
        metric.booleanValue = true
        payload.metrics = [metric]
        let topic = SparkplugTopic(group: node.group, kind: .nodeCommand, node: node.node).description
        return MQTTMessage(topic: topic, payload: (try? payload.serializedBytes()) ?? [], qos: 0, retain: false)
    }

    /// Maps a DBIRTH, DDEATH, NDATA or DDATA that is next in `seq` order.
    private mutating func apply(topic: SparkplugTopic, payload: SparkplugPayload, key: String, into output: inout Output) {
        let nodeKey = topic.nodeKey
        switch topic.kind {
        case .deviceBirth:
            guard let device = topic.device else { return }
            for metric in payload.metrics where metric.hasName && metric.hasAlias {
                nodes[nodeKey]?.aliases[metric.alias] = Metric(name: metric.name, datatype: metric.datatype)
            }
            var state = nodes[nodeKey]?.devices[device] ?? Device()
            state.online = true
            nodes[nodeKey]?.devices[device] = state
            mapDeviceMetrics(topic: topic, device: device, payload: payload, key: key, trigger: "DBIRTH", into: &output)
        case .deviceDeath:
            guard let device = topic.device, nodes[nodeKey]?.devices[device]?.online == true else { return }
            let previous = nodes[nodeKey]?.devices[device]?.lastStatus
            // A death dated past what the hub can store is dated when heard, as a will's would be.
            let sent = payload.hasTimestamp && payload.timestamp <= Self.latestDatable ? payload.timestamp : Self.milliseconds(Date())
            let dated = max(sent, (nodes[nodeKey]?.devices[device]?.lastTimestamp ?? 0) + 1)
            nodes[nodeKey]?.devices[device]?.online = false
            nodes[nodeKey]?.devices[device]?.lastStatus = config.offlineStatus
            output.events.append(statusEvent(
                topic: topic, device: device, status: config.offlineStatus, previous: previous,
                timestamp: Self.timestamp(dated), trigger: "DDEATH", key: key))
        case .deviceData:
            guard let device = topic.device else { return }
            if nodes[nodeKey]?.devices[device] == nil { nodes[nodeKey]?.devices[device] = Device() }
            mapDeviceMetrics(topic: topic, device: device, payload: payload, key: key, trigger: "DDATA", into: &output)
        case .nodeData:
            // Node metrics describe the gateway, not a machine: only a rebirth request is acted on (by the node).
            for metric in payload.metrics where !metric.hasName && metric.hasAlias && nodes[nodeKey]?.aliases[metric.alias] == nil {
                output.refusals.append("\(topic.description): metric alias \(metric.alias) was never born")
            }
        default:
            return
        }
    }

    /// The status metric becomes a status event; every other metric goes into one metrics event per timestamp.
    private mutating func mapDeviceMetrics(
        topic: SparkplugTopic, device: String, payload: SparkplugPayload, key: String, trigger: String, into output: inout Output
    ) {
        let nodeKey = topic.nodeKey
        let payloadTimestamp: UInt64? = payload.hasTimestamp ? payload.timestamp : nil
        var metricsByTime: [(timestamp: UInt64?, historical: Bool, data: [String: JSONValue])] = []
        var unknownAlias = false
        for (index, metric) in payload.metrics.enumerated() {
            let name: String
            if metric.hasName {
                name = metric.name
            } else if metric.hasAlias, let known = nodes[nodeKey]?.aliases[metric.alias] {
                name = known.name
            } else {
                output.refusals.append("\(topic.description): metric \(metric.hasAlias ? "alias \(metric.alias)" : "#\(index)") was never born")
                unknownAlias = true
                continue
            }
            if name.hasPrefix("Device Control/") || name.hasPrefix("Properties/") || metric.isNull { continue }
            let timestamp = metric.hasTimestamp ? metric.timestamp : payloadTimestamp
            if let timestamp, timestamp > Self.latestDatable {
                // Refused here, not only by the validator: a status dated past year 9999 must not become the device's
                // newest time, which a death is dated after.
                output.refusals.append("\(topic.description): metric '\(name)' is dated \(timestamp) ms, past 9999-12-31")
                continue
            }
            if name == config.statusMetric {
                guard let raw = Self.text(of: metric) else {
                    output.refusals.append("\(topic.description): status metric '\(name)' has no value that names a status")
                    continue
                }
                let status = config.statusValues[raw] ?? raw
                let previous = nodes[nodeKey]?.devices[device]?.lastStatus
                if !metric.isHistorical {
                    nodes[nodeKey]?.devices[device]?.lastStatus = status
                    let dated = timestamp ?? Self.milliseconds(Date())
                    if dated > nodes[nodeKey]?.devices[device]?.lastTimestamp ?? 0 { nodes[nodeKey]?.devices[device]?.lastTimestamp = dated }
                }
                output.events.append(statusEvent(
                    topic: topic, device: device, status: status, previous: previous == status ? nil : previous,
                    timestamp: Self.timestamp(timestamp), trigger: trigger, key: "\(key):s\(index)"))
            } else if !config.metricsEventType.isEmpty, let value = Self.json(of: metric) {
                let field = config.metricFields[name] ?? name
                if let slot = metricsByTime.firstIndex(where: { $0.timestamp == timestamp && $0.historical == metric.isHistorical }) {
                    metricsByTime[slot].data[field] = value
                } else {
                    metricsByTime.append((timestamp, metric.isHistorical, [field: value]))
                }
            }
        }
        for (position, group) in metricsByTime.enumerated() {
            output.events.append(event(
                type: config.metricsEventType, topic: topic, device: device, data: group.data,
                timestamp: Self.timestamp(group.timestamp), trigger: trigger, key: "\(key):m\(position)"))
        }
        if unknownAlias { requestRebirth(nodeKey, now: .now, into: &output, force: false) }
    }

    private func statusEvent(
        topic: SparkplugTopic, device: String, status: String, previous: String?, timestamp: String, trigger: String, key: String
    ) -> JSONValue {
        var data: [String: JSONValue] = ["current_status": .string(status)]
        if let previous { data["previous_status"] = .string(previous) }
        return event(type: config.statusEventType, topic: topic, device: device, data: data, timestamp: timestamp, trigger: trigger, key: key)
    }

    private func event(
        type: String, topic: SparkplugTopic, device: String, data: [String: JSONValue], timestamp: String, trigger: String, key: String
    ) -> JSONValue {
        let names = ["group": topic.group, "node": topic.node, "device": device]
        var envelope: [String: JSONValue] = [
            "event_type": .string(type),
            "entity_type": .string(config.entityType),
            "entity_id": .string(TopicTemplate.fill(config.entityId, with: names)),
            "timestamp": .string(timestamp),
            "data": .object(data),
            "metadata": .object(["source": .string("sparkplug"), "triggered_by": .string("\(trigger) \(topic.nodeKey)")]),
            "idempotency_key": .string(key),
        ]
        if let line = config.line { envelope["line"] = .string(TopicTemplate.fill(line, with: names)) }
        return .object(envelope)
    }

    // MARK: values

    static func unsigned(_ metric: SparkplugPayload.Metric) -> UInt64? {
        switch metric.value {
        case .intValue(let value)?: UInt64(value)
        case .longValue(let value)?: value
        default: nil
        }
    }

    /// The metric's value as JSON, signed integers read back from their two's-complement encoding
    /// (specification 6.4.16).
    static func json(of metric: SparkplugPayload.Metric) -> JSONValue? {
        let type = SparkplugDataType(rawValue: Int(metric.datatype)) ?? .unknown
        switch metric.value {
        case .intValue(let value)?:
            switch type {
            case .int8: return .number(Double(Int8(truncatingIfNeeded: value)))
            case .int16: return .number(Double(Int16(truncatingIfNeeded: value)))
            case .int32: return .number(Double(Int32(bitPattern: value)))
            default: return .number(Double(value))
            }
        case .longValue(let value)?:
            if type == .dateTime { return .string(timestamp(value)) }
            return .number(type == .int64 ? Double(Int64(bitPattern: value)) : Double(value))
        case .floatValue(let value)?: return value.isFinite ? .number(Double(value)) : nil
        case .doubleValue(let value)?: return value.isFinite ? .number(value) : nil
        case .booleanValue(let value)?: return .bool(value)
        case .stringValue(let value)?: return .string(value)
        default: return nil
        }
    }

    /// The metric's value as text, for the status lookup (`status_values` keys are text: `"1"`, `"true"`, `"RUN"`).
    static func text(of metric: SparkplugPayload.Metric) -> String? {
        switch json(of: metric) {
        case .string(let text)?: return text
        case .number(let number)?: return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .bool(let flag)?: return String(flag)
        default: return nil
        }
    }

    /// Milliseconds since the epoch as the envelope's ISO-8601 timestamp; nil: now.
    static func timestamp(_ milliseconds: UInt64?) -> String {
        guard let milliseconds else { return Date().formatted(Self.iso8601) }
        // Through a `Date` (a Double of seconds) a count of milliseconds came out one early about half the time
        // (…825678 as .677Z, …825001 as .000Z), so a death dated a millisecond after a status could read as the same
        // moment: whole seconds are formatted, the milliseconds written as they are.
        let seconds = Date(timeIntervalSince1970: Double(milliseconds / 1000)).formatted(Self.wholeSeconds)
        let fraction = String(milliseconds % 1000)
        return String(seconds.dropLast()) + "." + String(repeating: "0", count: 3 - fraction.count) + fraction + "Z"
    }

    static func milliseconds(_ date: Date) -> UInt64 { UInt64(max(0, date.timeIntervalSince1970 * 1000)) }

    /// 9999-12-31T23:59:59.999Z, the last moment an event's `timestamp` may name (`EventValidator`): every time a
    /// device keeps is at most this, so dating a death one millisecond after it cannot overflow.
    static let latestDatable: UInt64 = 253_402_300_799_999

    private static let iso8601 = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let wholeSeconds = Date.ISO8601FormatStyle()
}
