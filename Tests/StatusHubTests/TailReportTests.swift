import Foundation
import StatusHubCore
import Testing

/// `statushub tail --filter … --report N` as a separate process: it prints only what the filter admits, and its
/// latency reports reach `GET /v1/slo`.
@Suite("statushub tail --filter --report")
struct TailReportTests {
    @Test func tailFiltersAndReportsItsLatency() async throws {
        try await withHub(engine: .memory) { hub in
            let output = Pipe()
            let process = try ChildProcess.spawn(HubProcess.executable.path, [
                "tail", "--url", "ws://127.0.0.1:\(hub.port)/v1/ws", "--filter", "data.current_status = breakdown", "--report", "0.2",
                "resource-status",
            ], stdout: .pipe(output))
            defer { if process.isRunning { process.terminate() } }
            // Publish until the hub has a report from it (the tail needs a moment to connect and subscribe).
            var reported = 0.0
            for round in 0..<100 where reported == 0 {
                _ = try await HTTP.post(port: hub.port, events: [
                    SampleEvents.machineStatus("M-\(round)", "running"), SampleEvents.machineStatus("B-\(round)", "breakdown"),
                ])
                try await Task.sleep(for: .milliseconds(100))
                let slo = try await HTTP.get(port: hub.port, "/v1/slo").json
                let status = slo["categories"]?.arrayValue?.first { $0["category"] == .string("resource-status") }
                reported = status?["clients"]?["count"]?.numberValue ?? 0
            }
            #expect(reported > 0)
            process.terminate()
            process.waitUntilExit()
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let lines = printed.split(separator: "\n")
            #expect(!lines.isEmpty)
            #expect(lines.allSatisfy { $0.contains(#""current_status":"breakdown""#) }, "\(printed.prefix(500))")
        }
    }
}
