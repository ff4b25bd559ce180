import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A hub node as a separate `statushub serve` process, so a test can kill it for real (SIGKILL).
final class HubProcess: Sendable {
    let port: Int
    private let process: ChildProcess

    private init(port: Int, process: ChildProcess) {
        self.port = port
        self.process = process
    }

    /// The `statushub` binary SwiftPM built beside the test bundle.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("statushub")
    }

    static func start(redisURL: String) async throws -> HubProcess {
        try await start(arguments: ["--redis", redisURL], environment: ["STATUSHUB_LOG_LEVEL": "warning"])
    }

    /// `statushub serve` on a free loopback port with `arguments` and `environment`, once `/ready` answers 200 (at
    /// most 15 s). `stderr`: where its log goes (a pipe the test reads; a hub that never got ready has its log's end
    /// in the error thrown). `descriptors`: the open-files limit it starts under (set by `sh`'s `ulimit`, as a
    /// shell or systemd's `LimitNOFILE=` would), instead of the test's own; soft first, which must not exceed the
    /// hard limit at any step.
    /// `ready`: how to tell it is ready (a TLS node's `/ready` needs the test's trust), `GET /ready` by default.
    static func start(
        arguments: [String] = [], environment: [String: String], stderr: Pipe? = nil, descriptors: (soft: Int, hard: Int)? = nil,
        ready: @Sendable (Int) async -> Bool = { port in (try? await HTTP.get(port: port, "/ready"))?.status == 200 }
    ) async throws -> HubProcess {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw TestSocket.Timeout(waitingFor: "the statushub binary at \(executable.path) (build it with `swift build`)")
        }
        let port = try LoopbackPort.unused()
        let serve = [executable.path, "serve", "--host", "127.0.0.1", "--port", String(port)] + arguments
        let command = descriptors.map { ["/bin/sh", "-c", "ulimit -Sn \($0.soft) && ulimit -Hn \($0.hard) && exec \"$@\"", "sh"] + serve } ?? serve
        let process = try ChildProcess.spawn(
            command[0], Array(command.dropFirst()), environment: environment, stderr: stderr.map { .pipe($0) } ?? .null)
        let hub = HubProcess(port: port, process: process)
        let deadline = ContinuousClock.now.advanced(by: .seconds(15))
        while ContinuousClock.now < deadline {
            if await ready(port) { return hub }
            try await Task.sleep(for: .milliseconds(50))
        }
        hub.kill9()
        let log = stderr.map { String(decoding: $0.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).suffix(800) } ?? ""
        throw TestSocket.Timeout(waitingFor: "statushub on port \(port) to be ready\(log.isEmpty ? "" : "; its log ends: \(log)")")
    }

    /// Sends `signal` (SIGHUP, SIGSTOP…) to the node.
    func send(_ signal: Int32) {
        process.signal(signal)
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func terminate() async -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now.advanced(by: .seconds(15))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill9() }
        return process.terminationStatus
    }
}
