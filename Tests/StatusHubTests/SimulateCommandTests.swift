import Foundation
import StatusHubCore
import Testing

/// `statushub simulate` as a separate process against a live hub: everything it publishes is accepted, the plant
/// shows up in the cache, breakdowns come with alerts, and a silent machine's state goes stale.
@Suite("statushub simulate")
struct SimulateCommandTests {
    @Test func aPlantPublishesValidEventsAndASilentMachineGoesStale() async throws {
        // A two-second machine TTL, so the silent machine's state expires within the run.
        try await withHub(engine: .memory, configure: { $0.cacheTTL.machine = 2 }) { hub in
            let socket = try await TestSocket(port: hub.port)
            try await socket.subscribe(["line:Line-1:*"])
            let process = Process()
            process.executableURL = HubProcess.executable
            // At 100× a plant minute is 0.6 s: status every 0.3 s, the silent machine quiet after 0.6–1.2 s.
            process.arguments = [
                "simulate", "--url", "http://127.0.0.1:\(hub.port)", "--lines", "1", "--machines", "3", "--operators", "2",
                "--speed", "100", "--duration", "5", "--seed", "7",
            ]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try launchWithSignalsUnblocked(process)

            var types: Set<String> = []
            var staleMachine: String?
            let deadline = ContinuousClock.now.advanced(by: .seconds(20))
            while staleMachine == nil, ContinuousClock.now < deadline {
                let event = try await socket.nextEvent(timeout: .seconds(10))
                if let type = event["event_type"]?.stringValue { types.insert(type) }
                if event["event_type"] == .string("status_stale") { staleMachine = event["entity_id"]?.stringValue }
            }
            process.waitUntilExit()
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 0, "\(printed.suffix(800))")
            #expect(printed.contains("0 refused"), "\(printed.suffix(800))")
            #expect(staleMachine == "M-103")
            for expected in ["resource_status_changed", "work_order_progress", "material_inventory_changed", "machine_metrics_reported", "idle_time_predicted"] {
                #expect(types.contains(expected), "no \(expected) in \(types.sorted())")
            }
            let states = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-1:resource-status:operator:*").json["events"]?.arrayValue ?? []
            #expect(states.count == 2)
            _ = await socket.close()
        }
    }
}
