import Foundation
import StatusHubCore
@testable import StatusHubServer
import Testing

/// Credentials rotated on a running node (SIGHUP, `HangupReload`): a `statushub serve` process reads its config file
/// again and takes the new API keys and token key from then on, keeps what it has when the new file cannot be used,
/// and names the other changed settings as waiting for the next start.
@Suite struct CredentialRotationTests {
    @Test func aRotatedAPIKeyAndTokenKeyTakeEffectOnSIGHUPWithoutARestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("statushub-rotation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let configFile = directory.appendingPathComponent("statushub.yaml").path
        let oldIssuer = TokenIssuer(), newIssuer = TokenIssuer()
        let oldTokenKey = try oldIssuer.writePublicKey(), newTokenKey = try newIssuer.writePublicKey()
        // The rotation's middle step: the new key added beside the old in one PEM file.
        let bothTokenKeys = directory.appendingPathComponent("both.pem").path
        try Data((try String(contentsOfFile: oldTokenKey, encoding: .utf8) + "\n" + String(contentsOfFile: newTokenKey, encoding: .utf8)).utf8)
            .write(to: URL(fileURLWithPath: bothTokenKeys))
        defer { for file in [oldTokenKey, newTokenKey] { try? FileManager.default.removeItem(atPath: file) } }
        func writeConfig(key: String, name: String, tokenKey: String, metricsKey: String? = nil, extra: String = "") throws {
            try Data("""
                \(extra)auth:
                  required: true
                  api_keys:
                    - {name: \(name), hash: \(APIKeyHash.hex(of: key))}
                  jwt_es256_public_key_file: \(tokenKey)
                \(metricsKey.map { "  metrics_key_hash: \(APIKeyHash.hex(of: $0))" } ?? "")

                """.utf8).write(to: URL(fileURLWithPath: configFile))
        }
        try writeConfig(key: "old-mes-key", name: "mes-2025", tokenKey: oldTokenKey)
        let oldToken = try await oldIssuer.es256(patterns: ["*"]), newToken = try await newIssuer.es256(patterns: ["*"])
        @Sendable func post(_ port: Int, key: String) async throws -> Int {
            try await HTTP.request(
                "POST", port: port, "/v1/events", body: Data(SampleEvents.alert("M-ROT").utf8), headers: ["Authorization": "Bearer \(key)"]
            ).status
        }
        @Sendable func read(_ port: Int, token: String) async throws -> Int {
            try await HTTP.request("GET", port: port, "/v1/lines", contentType: nil, headers: ["Authorization": "Bearer \(token)"]).status
        }

        let stderr = Pipe()
        let hub = try await HubProcess.start(arguments: ["--config", configFile], environment: ["STATUSHUB_LOG_LEVEL": "info"], stderr: stderr)
        do {
            #expect(try await post(hub.port, key: "old-mes-key") == 202)
            #expect(try await post(hub.port, key: "new-mes-key") == 401)
            #expect(try await read(hub.port, token: oldToken) == 200)
            #expect(try await read(hub.port, token: newToken) == 401)
            #expect(try await HTTP.get(port: hub.port, "/metrics").status == 200, "no scraper key yet")

            // The new token key beside the old: tokens of both verify. And a scraper's key from now on.
            try writeConfig(
                key: "new-mes-key", name: "mes-2026", tokenKey: bothTokenKeys, metricsKey: "scraper-key", extra: "server: {max_connections: 5000}\n")
            hub.send(SIGHUP)
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while try await post(hub.port, key: "new-mes-key") != 202, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await post(hub.port, key: "new-mes-key") == 202)
            #expect(try await post(hub.port, key: "old-mes-key") == 401)
            #expect(try await read(hub.port, token: newToken) == 200)
            #expect(try await read(hub.port, token: oldToken) == 200)
            #expect(try await HTTP.get(port: hub.port, "/metrics").status == 401)
            #expect(try await HTTP.request("GET", port: hub.port, "/metrics", contentType: nil, headers: ["Authorization": "Bearer scraper-key"]).status == 200)
            // Then the old key removed.
            try writeConfig(key: "new-mes-key", name: "mes-2026", tokenKey: newTokenKey)
            hub.send(SIGHUP)
            let removed = ContinuousClock.now.advanced(by: .seconds(10))
            while try await read(hub.port, token: oldToken) != 401, ContinuousClock.now < removed {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await read(hub.port, token: oldToken) == 401)
            #expect(try await read(hub.port, token: newToken) == 200)

            // A config that cannot be used — a token key file that is not there, then YAML cut short — changes nothing.
            try writeConfig(key: "third-key", name: "mes-2027", tokenKey: directory.appendingPathComponent("missing.pem").path)
            hub.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            try Data("auth: {required: true, api_keys: [".utf8).write(to: URL(fileURLWithPath: configFile))
            hub.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await post(hub.port, key: "new-mes-key") == 202)
            #expect(try await post(hub.port, key: "third-key") == 401)
            #expect(try await read(hub.port, token: newToken) == 200)
        } catch {
            _ = await hub.terminate()
            throw error
        }
        #expect(await hub.terminate() == 0)
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("SIGHUP: reloaded the credentials from \(configFile): 1 API keys; subscriber tokens signed with ES256 (2 keys)"), "\(log.suffix(2000))")
        #expect(log.contains("SIGHUP: reloaded the credentials from \(configFile): 1 API keys; subscriber tokens signed with ES256\n"), "\(log.suffix(2000))")
        #expect(log.contains("SIGHUP: changed settings that take effect at the next start: server.max_connections"), "\(log.suffix(2000))")
        #expect(log.contains("SIGHUP: kept the credentials in use: config: auth.jwt_es256_public_key_file: cannot read"), "\(log.suffix(2000))")
        #expect(log.contains("SIGHUP: kept the credentials in use: config: not valid YAML"), "\(log.suffix(2000))")
        #expect(!log.contains("old-mes-key") && !log.contains("new-mes-key"), "no key in the log")
    }

    @Test func settingsOtherThanCredentialsAreNamedAsWaitingForTheNextStart() throws {
        let running = try HubConfig.load(yaml: "auth: {jwt_hs256_secret: one-secret-of-sufficient-length-0123456789}")
        let reread = try HubConfig.load(yaml: """
            server: {port: 9090, trusted_proxies: [10.0.0.0/8]}
            websocket: {ping_interval_seconds: 10}
            auth: {jwt_hs256_secret: another-secret-of-sufficient-length-0123456789, metrics_key_hash: \(APIKeyHash.hex(of: "scraper"))}
            """)
        #expect(StatusHub.settingsNeedingRestart(running: running, reread: reread)
            == ["server.port", "server.trusted_proxies", "websocket.ping_interval_seconds"])
        #expect(StatusHub.settingsNeedingRestart(running: running, reread: running).isEmpty)
    }
}
