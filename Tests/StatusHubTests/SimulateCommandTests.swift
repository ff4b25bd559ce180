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
            let output = Pipe()
            // At 100× a plant minute is 0.6 s: status every 0.3 s, the silent machine quiet after 0.6–1.2 s.
            let process = try ChildProcess.spawn(HubProcess.executable.path, [
                "simulate", "--url", "http://127.0.0.1:\(hub.port)", "--lines", "1", "--machines", "3", "--operators", "2",
                "--speed", "100", "--duration", "8", "--seed", "7",
            ], stdout: .pipe(output), stderr: .pipe(output))

            // Until the silent machine has gone stale and every kind of event was seen. (On a loaded machine the
            // simulator's own pauses may let another machine's state expire too: that is not what is checked.)
            var types: Set<String> = []
            var stale: Set<String> = []
            let expected: Set<String> = ["resource_status_changed", "work_order_progress", "material_inventory_changed", "machine_metrics_reported", "idle_time_predicted"]
            let deadline = ContinuousClock.now.advanced(by: .seconds(30))
            while !(stale.contains("M-103") && expected.isSubset(of: types)), ContinuousClock.now < deadline {
                guard let event = try? await socket.nextEvent(timeout: .seconds(10)) else { break }
                if let type = event["event_type"]?.stringValue { types.insert(type) }
                if event["event_type"] == .string("status_stale"), let id = event["entity_id"]?.stringValue { stale.insert(id) }
            }
            _ = await process.exited(within: .seconds(120))  // not waitpid: it would hold one of the pool's two threads
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 0, "\(printed.suffix(800))")
            #expect(printed.contains("0 refused"), "\(printed.suffix(800))")
            #expect(stale.contains("M-103"), "stale: \(stale.sorted())")
            #expect(expected.isSubset(of: types), "seen: \(types.sorted())")
            let states = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-1:resource-status:operator:*").json["events"]?.arrayValue ?? []
            #expect(states.count == 2)
            _ = await socket.close()
        }
    }

    /// Redis down for a moment under the simulator: the hub answers 503 `not_stored`, and the simulator resends each
    /// batch as told once Redis is back, so no request of the run failed (it counted them failed and dropped the
    /// plant's events, and the hub's picture of the plant stayed wrong until each entity's next event).
    @Test func aBatchAnswered503IsResentAsTheHubSays() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url) { hub in
                let output = Pipe()
                let process = try ChildProcess.spawn(HubProcess.executable.path, [
                    "simulate", "--url", "http://127.0.0.1:\(hub.port)", "--lines", "1", "--machines", "3", "--operators", "2",
                    "--speed", "100", "--duration", "8", "--seed", "7",
                ], stdout: .pipe(output), stderr: .pipe(output))
                try await Task.sleep(for: .seconds(1))
                await redis.kill9()
                try await Task.sleep(for: .seconds(2))
                try await redis.restart()
                _ = await process.exited(within: .seconds(120))  // not waitpid: it would hold one of the pool's two threads
                let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(process.terminationStatus == 0, "\(printed.suffix(800))")
                #expect(printed.contains("HTTP 503: resending"), "\(printed.suffix(800))")
                #expect(printed.contains("0 refused, 0 failed requests"), "\(printed.suffix(800))")
            }
        }
    }
}
