import Foundation
import StatusHubMQTT
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real `mosquitto` broker (2.x) for one test: its own free loopback port and config file (`listener PORT
/// 127.0.0.1`, `allow_anonymous true`), no persistence; with a certificate, that listener speaks TLS only. Use
/// `withMosquitto { broker in … }`, which always stops it.
final class MosquittoBroker: Sendable {
    let port: Int
    let directory: URL
    /// The broker's certificate (TLS listener), which clients trust as their CA file.
    let tls: ThrowawayCertificate?
    /// With TLS: the one client certificate the broker accepts (`require_certificate`); nil: none asked for.
    let clientCertificate: ThrowawayCertificate?
    private let process = Mutex<ChildProcess?>(nil)

    /// TLS: by the name the certificate carries (`localhost`), so the client's hostname check passes.
    var url: String { tls == nil ? "mqtt://127.0.0.1:\(port)" : "mqtts://localhost:\(port)" }

    private init(port: Int, directory: URL, tls: ThrowawayCertificate?, clientCertificate: ThrowawayCertificate?) {
        self.port = port
        self.directory = directory
        self.tls = tls
        self.clientCertificate = clientCertificate
    }

    static func start(tls: ThrowawayCertificate? = nil, clientCertificate: ThrowawayCertificate? = nil) async throws -> MosquittoBroker {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("statushub-mosquitto-\(UUID().uuidString)", isDirectory: true)
        // mosquitto started as root drops to the `mosquitto` user before it opens its log.
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        for attempt in 1...5 {
            let broker = MosquittoBroker(
                port: try LoopbackPort.unused(), directory: directory, tls: tls, clientCertificate: clientCertificate)
            do {
                try await broker.launch()
                return broker
            } catch where attempt < 5 {
                await broker.stop()
            }
        }
        throw RedisServer.StartError(description: "mosquitto found no free port in 5 attempts")
    }

    /// Stops the broker and starts it again on the same port, with no memory of sessions or retained messages.
    func restart() async throws {
        await stop()
        try await launch()
    }

    func stop() async {
        guard let process = process.withLock({ $0 }) else { return }
        if process.isRunning { _ = kill(process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning {
            _ = kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        self.process.withLock { if $0 === process { $0 = nil } }
    }

    func destroy() async {
        await stop()
        try? FileManager.default.removeItem(at: directory)
    }

    private func launch() async throws {
        let config = directory.appendingPathComponent("mosquitto.conf")
        try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence false
            log_dest file \(directory.appendingPathComponent("mosquitto.log").path)
            \(tls.map { "certfile \($0.certificateFile)\nkeyfile \($0.privateKeyFile)" } ?? "")
            \(clientCertificate.map { "require_certificate true\ncafile \($0.certificateFile)" } ?? "")
            """.write(to: config, atomically: true, encoding: .utf8)
        let process = try ChildProcess.spawn(Self.executable(), ["-c", config.path])
        self.process.withLock { $0 = process }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let log = (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
                throw RedisServer.StartError(description: "mosquitto on port \(port) exited: \(log.suffix(500))")
            }
            // Its own log line, not just an open port: another test's server may have taken the port between the
            // probe that found it free and mosquitto's bind (mosquitto then exits and the port answers all the same).
            let log = (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
            if log.contains("listen socket on port \(port)"), process.isRunning, Self.accepts(port: port) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RedisServer.StartError(description: "mosquitto on port \(port) did not accept connections within 10 s")
    }

    private static func executable() -> String {
        for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return "mosquitto"
    }

    private static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// A plain client of this broker (publisher or listener in a test).
    func client(id: String = "test-\(UUID().uuidString.prefix(8))", handlers: MQTTHandlers = MQTTHandlers()) throws -> MosquittoClient {
        try MosquittoClient(endpoint: endpoint(id: id), handlers: handlers)
    }

    func endpoint(id: String) -> MQTTEndpoint {
        guard let tls else { return MQTTEndpoint(host: "127.0.0.1", port: port, clientID: id) }
        return MQTTEndpoint(
            host: "localhost", port: port, useTLS: true, clientID: id, caFile: tls.certificateFile,
            certificateFile: clientCertificate?.certificateFile, privateKeyFile: clientCertificate?.privateKeyFile)
    }
}

func withMosquitto<T>(
    tls: ThrowawayCertificate? = nil, clientCertificate: ThrowawayCertificate? = nil, _ body: (MosquittoBroker) async throws -> T
) async throws -> T {
    let broker = try await MosquittoBroker.start(tls: tls, clientCertificate: clientCertificate)
    do {
        let result = try await body(broker)
        await broker.destroy()
        return result
    } catch {
        await broker.destroy()
        throw error
    }
}
