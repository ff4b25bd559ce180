import Foundation
import Synchronization
import StatusHubRedis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `redis-server` for one test: its own free loopback port, its own scratch directory, no persistence
/// unless `extraArguments` turn it on (`--appendonly yes`). Use `withRedisServer { server in … }`, which always
/// stops it, however the test ends.
final class RedisServer: Sendable {
    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    let port: Int
    let directory: URL
    private let extraArguments: [String]
    /// A config file's text to start from (a sentinel's `sentinel monitor …`): written into the directory and
    /// named first on the command line.
    private let configFile: String?
    private let process = Mutex<ChildProcess?>(nil)

    var url: String { "redis://127.0.0.1:\(port)" }

    private init(port: Int, directory: URL, extraArguments: [String], configFile: String? = nil) {
        self.port = port
        self.directory = directory
        self.extraArguments = extraArguments
        self.configFile = configFile
    }

    /// - Parameter configFile: a config file's text; with `extraArguments` `["--sentinel"]` the server is a sentinel.
    static func start(extraArguments: [String] = [], configFile: String? = nil, portBelow: Int = 65_536) async throws -> RedisServer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("statushub-redis-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A free port can be taken by another process (a parallel test run) between our probe and redis-server's
        // bind: try another one then.
        for attempt in 1...5 {
            let port = try LoopbackPort.unused(below: portBelow)
            let server = RedisServer(port: port, directory: directory, extraArguments: extraArguments, configFile: configFile)
            do {
                try await server.launch()
                return server
            } catch let error as StartError where error.description.contains("Address already in use") && attempt < 5 {
                await server.stop()
            } catch {
                await server.stop()
                throw error
            }
        }
        throw StartError(description: "redis-server found no free port in 5 attempts")
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// SIGTERM, then waits for the exit (SIGKILL after 5 s). Idempotent.
    func stop() async {
        await terminate(signal: SIGTERM)
    }

    /// SIGKILL: Redis gets no chance to close its clients' sockets cleanly.
    func kill9() async {
        await terminate(signal: SIGKILL)
    }

    /// SIGSTOP / SIGCONT: a Redis that hangs with its sockets open.
    func pause() { signalProcess(SIGSTOP) }
    func resume() { signalProcess(SIGCONT) }

    /// Bytes clients have sent that the server has not read yet (`rx_queue` of its connections in
    /// /proc/net/tcp, established or closed by the client): with the server stopped, proof that a command
    /// reached it.
    /// - Parameter peerPort: only the connection whose client end has this port (see `clientPort(lastRunning:)`).
    func unreadBytes(fromPeerPort peerPort: Int? = nil) -> Int {
        // Read to the end: a procfs file reports size 0, and a one-shot read stops at the first page of sockets.
        guard let file = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return 0 }
        defer { try? file.close() }
        let table = String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
        let port = String(format: "%04X", self.port)
        return table.split(separator: "\n").dropFirst().reduce(0) { total, line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[1].hasSuffix(":" + port), fields[3] == "01" || fields[3] == "08" else { return total }
            if let peerPort, !fields[2].hasSuffix(String(format: ":%04X", peerPort)) { return total }
            return total + (Int(fields[4].split(separator: ":").last ?? "", radix: 16) ?? 0)
        }
    }

    /// Stops the server if it runs and starts it again on the same port and directory: with an empty dataset, or
    /// with what its AOF kept if `extraArguments` enabled one.
    /// - Parameter adding: arguments for this run only, after the server's own.
    func restart(adding: [String] = []) async throws {
        await stop()
        try await launch(adding: adding)
    }

    /// Stops the server and removes its directory.
    func destroy() async {
        await stop()
        try? FileManager.default.removeItem(at: directory)
    }

    private func launch(adding: [String] = []) async throws {
        let executable = Self.executable()
        var leading: [String] = []
        if let configFile {
            // A sentinel rewrites its config file; each start gets the given text afresh.
            let path = directory.appendingPathComponent("server-\(port).conf")
            try configFile.write(to: path, atomically: true, encoding: .utf8)
            leading = [path.path]
        }
        let process = try ChildProcess.spawn(executable, leading + [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory.path, "--logfile", directory.appendingPathComponent("redis-\(port).log").path,
            "--daemonize", "no",
        ] + extraArguments + adding)
        self.process.withLock { $0 = process }

        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let log = (try? String(contentsOf: directory.appendingPathComponent("redis-\(port).log"), encoding: .utf8)) ?? ""
                throw StartError(description: "redis-server on port \(port) exited: \(log.suffix(500))")
            }
            if Self.answersPing(port: port) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw StartError(description: "redis-server on port \(port) did not answer PING within 30 s (a loaded machine starts dozens at once)")
    }

    private func signalProcess(_ signal: Int32) {
        process.withLock { process in
            if let process, process.isRunning { _ = kill(process.processIdentifier, signal) }
        }
    }

    private func terminate(signal: Int32) async {
        guard let process = process.withLock({ $0 }) else { return }
        if process.isRunning {
            // A stopped process cannot act on SIGTERM.
            _ = kill(process.processIdentifier, SIGCONT)
            _ = kill(process.processIdentifier, signal)
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning {
            _ = kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        self.process.withLock { if $0 === process { $0 = nil } }
    }

    private static func executable() -> String {
        if let path = ProcessInfo.processInfo.environment["REDIS_SERVER"] { return path }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "/usr/bin/redis-server"
    }

    /// One short blocking exchange on a plain socket, independent of the client under test.
    static func answersPing(port: Int) -> Bool {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let ping = Array("PING\r\n".utf8)
        guard send(fd, ping, ping.count, 0) == ping.count else { return false }
        var reply = [UInt8](repeating: 0, count: 16)
        let count = recv(fd, &reply, reply.count, 0)
        // A server started with `--requirepass` answers before AUTH with NOAUTH: it is up all the same.
        return count >= 5 && (reply.prefix(5) == ArraySlice("+PONG".utf8) || reply.prefix(7) == ArraySlice("-NOAUTH".utf8))
    }
}

/// Runs `body` with a fresh Redis server and always destroys the server afterwards.
func withRedisServer<T>(
    extraArguments: [String] = [], _ body: (RedisServer) async throws -> T
) async throws -> T {
    let server = try await RedisServer.start(extraArguments: extraArguments)
    do {
        let result = try await body(server)
        await server.destroy()
        return result
    } catch {
        await server.destroy()
        throw error
    }
}

extension RedisServer {
    /// The client port of the connection whose latest command was `command` (from `CLIENT LIST`), if any.
    func clientPort(lastRunning command: String) async throws -> Int? {
        let connection = try await RedisConnection.connect(to: RedisURL(parsing: url))
        let reply = try await connection.send(["CLIENT", "LIST"])
        await connection.close()
        let list = reply.text ?? ""
        for client in list.split(separator: "\n") {
            let fields = Dictionary(
                client.split(separator: " ").compactMap { field -> (Substring, Substring)? in
                    guard let equals = field.firstIndex(of: "=") else { return nil }
                    return (field[..<equals], field[field.index(after: equals)...])
                }, uniquingKeysWith: { first, _ in first })
            guard fields["cmd"] == Substring(command), let address = fields["addr"], let port = address.split(separator: ":").last
            else { continue }
            return Int(port)
        }
        return nil
    }
}
