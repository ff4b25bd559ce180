import Foundation
import StatusHubCore
import StatusHubMQTT
import Testing

/// The Sparkplug host's mapping on its own, fed payloads as a broker would hand them over: what any client on the
/// plant's broker can send must never stop the bridge (docs/operations.md, *MQTT bridge*).
@Suite("Sparkplug host")
struct SparkplugHostTests {
    static let group = "G9", node = "Line-9", device = "SP-9"

    static func payload(seq: UInt64?, timestamp: UInt64? = nil, _ metrics: [SparkplugPayload.Metric]) -> [UInt8] {
        var payload = SparkplugPayload()
        if let seq { payload.seq = seq }
        if let timestamp { payload.timestamp = timestamp }
        payload.metrics = metrics
        return try! payload.serializedBytes()
    }

    static func metric(name: String? = nil, alias: UInt64? = nil, int: UInt32? = nil, long: UInt64? = nil, timestamp: UInt64? = nil) -> SparkplugPayload.Metric {
        var metric = SparkplugPayload.Metric()
        if let name { metric.name = name }
        if let alias { metric.alias = alias }
        if let int {
            metric.datatype = UInt32(SparkplugDataType.int32.rawValue)
            metric.intValue = int
        }
        if let long {
            metric.datatype = UInt32(SparkplugDataType.uint64.rawValue)
            metric.longValue = long
        }
        if let timestamp { metric.timestamp = timestamp }
        return metric
    }

    /// NBIRTH and a DBIRTH whose status metric (alias 1) reads 1.
    static func bornHost() -> SparkplugHost {
        var host = SparkplugHost(config: HubConfig.Sparkplug())
        _ = receive(&host, .nodeBirth, payload(seq: 0, [metric(name: "bdSeq", long: 0)]))
        _ = receive(&host, .deviceBirth, payload(seq: 1, [metric(name: "Status", alias: 1, int: 1)]))
        return host
    }

    static func receive(_ host: inout SparkplugHost, _ kind: SparkplugTopic.Kind, _ bytes: [UInt8]) -> SparkplugHost.Output {
        let isDevice = [.deviceBirth, .deviceDeath, .deviceData].contains(kind)
        let topic = SparkplugTopic(group: group, kind: kind, node: node, device: isDevice ? device : nil)
        return host.receive(topic: topic, payload: bytes, key: "\(kind.rawValue)-\(bytes.count)", now: .now)
    }

    static func statusTimestamp(_ output: SparkplugHost.Output) -> Date? {
        output.events.compactMap { event -> Date? in
            guard event["event_type"] == .string("resource_status_changed"), case .string(let text)? = event["timestamp"] else { return nil }
            return try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
        }.first
    }

    @Test("a status dated at the end of UInt64 is refused, and the device's death that follows is dated when heard", arguments: [SparkplugTopic.Kind.deviceDeath, .nodeDeath])
    func statusDatedPastTheCalendar(death: SparkplugTopic.Kind) throws {
        var host = Self.bornHost()
        let data = Self.receive(&host, .deviceData, Self.payload(seq: 2, [Self.metric(alias: 1, int: 2, timestamp: .max)]))
        #expect(data.events.isEmpty)
        #expect(data.refusals.contains { $0.contains("past 9999-12-31") })

        // The death (the device's own, or its node's will) used to be dated one millisecond after that time: an
        // arithmetic overflow that stopped the process.
        let before = Date()
        let died = death == .deviceDeath
            ? Self.receive(&host, .deviceDeath, Self.payload(seq: 3, timestamp: .max, []))
            : Self.receive(&host, .nodeDeath, Self.payload(seq: nil, [Self.metric(name: "bdSeq", long: 0)]))
        let dated = try #require(Self.statusTimestamp(died))
        #expect(abs(dated.timeIntervalSince(before)) < 5)
        #expect(died.events.first?["data"]?["current_status"] == .string("offline"))
        #expect(host.onlineDevices(of: Self.group, node: Self.node).isEmpty)
    }

    @Test("a metric's milliseconds are the event's, exactly", arguments: [UInt64(1_763_475_825_678), 1_763_475_825_001, 1_763_475_825_999, 0])
    func exactMilliseconds(milliseconds: UInt64) throws {
        var host = Self.bornHost()
        let data = Self.receive(&host, .deviceData, Self.payload(seq: 2, [Self.metric(alias: 1, int: 2, timestamp: milliseconds)]))
        let expected = String(Date(timeIntervalSince1970: Double(milliseconds / 1000)).formatted(Date.ISO8601FormatStyle()).dropLast())
            + String(format: ".%03dZ", Int(milliseconds % 1000))
        #expect(data.events.first?["timestamp"] == .string(expected))
    }

    @Test("the last datable millisecond is taken, and a death after it is dated after it")
    func lastDatableMillisecond() throws {
        var host = Self.bornHost()
        let last: UInt64 = 253_402_300_799_999
        let data = Self.receive(&host, .deviceData, Self.payload(seq: 2, [Self.metric(alias: 1, int: 2, timestamp: last)]))
        #expect(data.refusals.isEmpty)
        #expect(data.events.first?["timestamp"] == .string("9999-12-31T23:59:59.999Z"))
        let died = Self.receive(&host, .deviceDeath, Self.payload(seq: 3, []))
        // Past the calendar by a millisecond: the validator refuses that event, and nothing traps on the way.
        #expect(died.events.count == 1)
    }
}
