import Foundation
import StatusHubCore
import StatusHubMQTT

/// `statushub simulate --sparkplug`: each line of the simulated plant is a Sparkplug B edge node whose devices are
/// its machines, so machine status reaches the hub the way a PLC gateway's would — through the broker and the
/// hub's `mqtt.sparkplug` bridge — while everything else the plant says still goes over HTTP.
struct SimulatedSparkplugLines {
    private let nodes: [String: SparkplugEdgeNode]

    /// Connects one edge node per line (births follow on connect).
    static func start(broker: String, group: String = "Plant", machines: [(id: String, line: String)]) async throws -> SimulatedSparkplugLines {
        var devices: [String: [String]] = [:]
        for machine in machines { devices[machine.line, default: []].append(machine.id) }
        var nodes: [String: SparkplugEdgeNode] = [:]
        for (line, ids) in devices.sorted(by: { $0.key < $1.key }) {
            let node = try SparkplugEdgeNode(
                endpoint: MQTTEndpoint(url: broker, clientID: "statushub-simulate-\(line)-\(ProcessInfo.processInfo.processIdentifier)"),
                group: group, node: line, devices: ids)
            try await node.start()
            nodes[line] = node
        }
        return SimulatedSparkplugLines(nodes: nodes)
    }

    /// Publishes the machine status events as DDATA and returns the other events, for HTTP.
    func publishMachineStatus(_ events: [String]) throws -> [String] {
        var rest: [String] = []
        for text in events {
            guard let event = try? JSONValue.parse(Array(text.utf8)), event["event_type"]?.stringValue == "resource_status_changed",
                event["entity_type"]?.stringValue == "machine", let line = event["line"]?.stringValue, let node = nodes[line],
                let machine = event["entity_id"]?.stringValue, let status = event["data"]?["current_status"]?.stringValue
            else {
                rest.append(text)
                continue
            }
            try node.publishStatus(device: machine, status: status)
        }
        return rest
    }

    /// NDEATH and a clean disconnect for every line.
    func stop() async {
        for node in nodes.values { await node.stop() }
    }
}
