import ArgumentParser
import Foundation
import HummingbirdWSClient
import Logging
import StatusHubCore
import StatusHubMQTT
import Synchronization

/// Simulated Sparkplug B edge nodes (one per line, its machines as devices) publishing status changes to a broker:
/// the demo's plant floor for a hub whose `mqtt.sparkplug` bridge listens, and, with `--measure`, the bridge's load
/// test (loadtest/mqtt.sh): it also subscribes to the hub and reports edge-publish → WebSocket latency.
struct SparkplugEdgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparkplug-edge",
        abstract: "Run simulated Sparkplug B edge nodes (lines of machines) against an MQTT broker.",
        discussion: """
              statushub sparkplug-edge --broker mqtt://127.0.0.1:1883 --lines 2 --machines 4 --rate 2
              statushub sparkplug-edge --rate 2000 --duration 20 --measure ws://127.0.0.1:8080/v1/ws
            Machines are M-<line><nn> (M-101, M-102, … on Line-1); the edge node of a line is named after it, so a
            hub with the default mqtt.sparkplug mapping files them under line:Line-1:*. Interrupting the command
            drops its connections without DISCONNECT: the broker publishes each node's NDEATH and the hub marks its
            machines offline.
            """
    )

    @Option(name: .long, help: "Broker URL (mqtt:// or mqtts://).")
    var broker = "mqtt://127.0.0.1:1883"

    @Option(name: .long, help: "Sparkplug group id.")
    var group = "Plant"

    @Option(name: .long, help: "Lines, one edge node each.")
    var lines = 2

    @Option(name: .long, help: "Machines (devices) per line.")
    var machines = 4

    @Option(name: .long, help: "Status changes per second, all machines together (open loop).")
    var rate = 2.0

    @Option(name: .long, help: "Seconds to run; 0 runs until interrupted.")
    var duration = 0.0

    @Option(name: .long, help: "Hub WebSocket URL: also subscribe there and report publish → WebSocket latency and loss.")
    var measure: String?

    func validate() throws {
        guard (1...99).contains(lines), (1...99).contains(machines) else { throw ValidationError("--lines and --machines go from 1 to 99") }
        guard rate > 0 else { throw ValidationError("--rate must be above 0") }
        guard duration >= 0 else { throw ValidationError("--duration must be 0 or more") }
        if measure != nil, duration == 0 { throw ValidationError("--measure needs a --duration") }
    }

    func run() async throws {
        let nodes = try (1...lines).map { line in
            try SparkplugEdgeNode(
                endpoint: MQTTEndpoint(url: broker, clientID: "statushub-edge-\(group)-Line-\(line)-\(ProcessInfo.processInfo.processIdentifier)"),
                group: group, node: "Line-\(line)", devices: (1...machines).map { String(format: "M-%d%02d", line, $0) })
        }
        let latencies = LatencyLog()
        let measuring = measure.map { url in Task { try await Self.subscribe(url: url, into: latencies) } }
        if measuring != nil { try await Task.sleep(for: .milliseconds(500)) }
        for node in nodes { try await node.start() }
        FileHandle.standardError.write(Data("sparkplug-edge: \(lines) edge nodes, \(lines * machines) machines on \(broker), \(rate) status changes/s\n".utf8))

        // Open loop: publishes fall due at the rate whatever the broker or hub do, a tick's worth at a time.
        let statuses = ["running", "running", "running", "idle", "idle", "breakdown", "maintenance"]
        var generator = SystemRandomNumberGenerator()
        let start = ContinuousClock.now
        var sent = 0
        while duration == 0 || ContinuousClock.now - start < .seconds(duration) {
            let due = Int((ContinuousClock.now - start) / .seconds(1) * rate)
            while sent < due {
                let node = nodes[sent % nodes.count]
                let device = node.devices[Int.random(in: 0..<node.devices.count, using: &generator)]
                try node.publishStatus(device: device, status: statuses.randomElement(using: &generator)!)
                if sent % 10 == 0 {
                    try node.publishMetrics(device: device, ["temperature_celsius": Double.random(in: 35...80, using: &generator)])
                }
                sent += 1
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        let elapsed = (ContinuousClock.now - start) / .seconds(1)
        guard let measuring else {
            for node in nodes { await node.stop() }
            return
        }
        // Late arrivals get two seconds, then everything not seen is lost.
        try await Task.sleep(for: .seconds(2))
        measuring.cancel()
        for node in nodes { await node.stop() }
        let seen = latencies.sorted()
        func percentile(_ p: Double) -> Double { seen.isEmpty ? .nan : seen[min(seen.count - 1, Int(Double(seen.count) * p))] }
        let report: JSONValue = .object([
            "sent": .number(Double(sent)), "received": .number(Double(seen.count)), "lost": .number(Double(max(0, sent - seen.count))),
            "seconds": .number((elapsed * 10).rounded() / 10), "sent_per_second": .number((Double(sent) / elapsed).rounded()),
            "latency_ms": .object([
                "p50": .number(percentile(0.5)), "p99": .number(percentile(0.99)), "p999": .number(percentile(0.999)),
                "max": .number(seen.last ?? .nan),
            ]),
        ])
        var bytes: [UInt8] = []
        report.write(into: &bytes)
        print(String(decoding: bytes, as: UTF8.self))
    }

    /// Every DDATA status event's latency: arrival minus the metric timestamp the edge node set when it published
    /// (one machine, one clock; milliseconds, the resolution of Sparkplug timestamps).
    static func subscribe(url: String, into log: LatencyLog) async throws {
        let subscribe = #"{"op":"subscribe","id":"measure","channels":["machine:*"]}"#
        _ = try await WebSocketClient.connect(
            url: url, configuration: .init(maxFrameSize: 1 << 26), logger: Logger(label: "sparkplug-edge")
        ) { inbound, outbound, _ in
            try await outbound.write(.text(subscribe))
            for try await message in inbound.messages(maxSize: 1 << 26) {
                guard case .text(let text) = message, let event = try? JSONValue.parse(text.utf8)["event"],
                    event["event_type"]?.stringValue == "resource_status_changed",
                    event["metadata"]?["triggered_by"]?.stringValue?.hasPrefix("DDATA") == true,
                    let stamp = event["timestamp"]?.stringValue,
                    let published = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(stamp)
                else { continue }
                log.add(Date().timeIntervalSince(published) * 1000)
            }
        }
    }
}

final class LatencyLog: Sendable {
    private let values = Mutex<[Double]>([])
    func add(_ milliseconds: Double) { values.withLock { $0.append(milliseconds) } }
    func sorted() -> [Double] { values.withLock { $0.sorted() } }
}
