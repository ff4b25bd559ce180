import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real nginx (Debian's `nginx-light`) as a reverse proxy in front of one hub, configured as
/// `docs/operations.md` tells a plant to: WebSocket upgrades passed on, `X-Forwarded-For` appended, no buffering (SSE).
/// One process (`master_process off`), its own loopback port and prefix directory, logs to its directory. Use
/// `withNginx(in front of:) { proxy in … }`, which always stops it.
final class NginxProxy: Sendable {
    let port: Int
    let directory: URL
    private let process: ChildProcess

    private init(port: Int, directory: URL, process: ChildProcess) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    static func start(upstreamPort: Int) async throws -> NginxProxy {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("statushub-nginx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for attempt in 1...5 {
            let port = try LoopbackPort.unused()
            let config = directory.appendingPathComponent("nginx.conf")
            try """
                daemon off;
                master_process off;
                worker_processes 1;
                pid \(directory.path)/nginx.pid;
                error_log \(directory.path)/error.log info;
                events { worker_connections 256; }
                http {
                    access_log off;
                    client_body_temp_path \(directory.path)/body;
                    proxy_temp_path \(directory.path)/proxy;
                    fastcgi_temp_path \(directory.path)/fastcgi;
                    uwsgi_temp_path \(directory.path)/uwsgi;
                    scgi_temp_path \(directory.path)/scgi;
                    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
                    server {
                        listen 127.0.0.1:\(port);
                        location / {
                            proxy_pass http://127.0.0.1:\(upstreamPort);
                            proxy_http_version 1.1;
                            proxy_set_header Upgrade $http_upgrade;
                            proxy_set_header Connection $connection_upgrade;
                            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                            proxy_buffering off;
                            proxy_read_timeout 1h;
                        }
                    }
                }
                """.write(to: config, atomically: true, encoding: .utf8)
            let process = try ChildProcess.spawn(Self.executable(), ["-p", directory.path, "-c", config.path, "-e", directory.appendingPathComponent("error.log").path])
            let proxy = NginxProxy(port: port, directory: directory, process: process)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, process.isRunning {
                if let health = try? await HTTP.get(port: port, "/health"), health.status == 200 { return proxy }
                try await Task.sleep(for: .milliseconds(20))
            }
            await proxy.stop()
            if attempt == 5 {
                let log = (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
                throw RedisServer.StartError(description: "nginx did not proxy to port \(upstreamPort) within 10 s: \(log.suffix(600))")
            }
        }
        throw RedisServer.StartError(description: "nginx found no free port in 5 attempts")
    }

    func stop() async {
        if process.isRunning { _ = kill(process.processIdentifier, SIGQUIT) }
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { _ = kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    private static func executable() -> String {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "nginx"
    }
}

func withNginx<T>(inFrontOf upstreamPort: Int, _ body: (NginxProxy) async throws -> T) async throws -> T {
    let proxy = try await NginxProxy.start(upstreamPort: upstreamPort)
    do {
        let result = try await body(proxy)
        await proxy.stop()
        try? FileManager.default.removeItem(at: proxy.directory)
        return result
    } catch {
        await proxy.stop()
        try? FileManager.default.removeItem(at: proxy.directory)
        throw error
    }
}
