import Foundation
import StatusHubCore
import Synchronization
import Testing

/// The newcomer's first minute, run for real: `statushub tail` in one process, `statushub publish` in another.
@Suite("Command line")
struct CommandLineTests {
    func statushub(_ arguments: [String], stdout: Pipe? = nil, stdin: Pipe? = nil) throws -> Process {
        let process = Process()
        process.executableURL = HubProcess.executable
        process.arguments = arguments
        process.standardOutput = stdout ?? FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        if let stdin { process.standardInput = stdin }
        try launchWithSignalsUnblocked(process)
        return process
    }

    @Test func publishAndTailTalkToAHub() async throws {
        try await withHub(engine: .memory) { hub in
            let tailOutput = Pipe()
            let printed = Mutex("")
            // Read as it arrives: a blocking read would hang the test if tail printed nothing.
            tailOutput.fileHandleForReading.readabilityHandler = { handle in
                let chunk = String(decoding: handle.availableData, as: UTF8.self)
                printed.withLock { $0 += chunk }
            }
            let tail = try statushub(["tail", "--url", "ws://127.0.0.1:\(hub.port)/v1/ws", "line:Line-2:*"], stdout: tailOutput)
            defer {
                if tail.isRunning { tail.terminate() }
                tailOutput.fileHandleForReading.readabilityHandler = nil
            }
            // Wait until the tail's subscription is registered.
            try await eventually("tail subscribed") {
                (try await HTTP.get(port: hub.port, "/metrics")).text.contains("statushub_websocket_connections 1.0")
            }
            try await Task.sleep(for: .milliseconds(200))

            let publish = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)", "--entity", "machine:M-203", "--status", "breakdown", "--line", "Line-2"])
            let refused = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)", "--entity", "machine:M-203", "--status", "melted"])
            let input = Pipe()
            let fromStdin = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)"], stdin: input)
            input.fileHandleForWriting.write(Data((SampleEvents.alert("M-9") + "\n").utf8))
            try input.fileHandleForWriting.close()
            for process in [publish, refused, fromStdin] {
                try await eventually("publish to finish") { !process.isRunning }
            }
            #expect(publish.terminationStatus == 0)
            #expect(refused.terminationStatus != 0)
            #expect(fromStdin.terminationStatus == 0)

            var lines: [String] = []
            try await eventually("two events printed by tail") {
                lines = printed.withLock { $0 }.split(separator: "\n").map(String.init)
                return lines.count >= 2
            }
            let events = lines.compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
            // The two publishers ran side by side, so either may come first.
            #expect(Set(events.compactMap { $0["entity_id"]?.stringValue }) == ["M-203", "M-9"])
            let machine = events.first { $0["entity_id"] == .string("M-203") }
            #expect(machine?["data"]?["current_status"] == .string("breakdown"))
        }
    }
}
