import Foundation
import NIOCore
import NIOSSL
import StatusHubCore
import Testing

@testable import StatusHubServer

/// `https://` and `wss://` with a certificate made for the test, and the start-up refusals of files that cannot
/// be used.
@Suite("TLS")
struct TLSTests {
    @Test(arguments: EngineKind.allCases)
    func hubServesHTTPSAndWSSAndNothingInTheClear(_ kind: EngineKind) async throws {
        let certificate = try ThrowawayCertificate()
        defer { certificate.remove() }
        let trust = certificate.clientConfiguration
        try await withHub(engine: kind, configure: {
            $0.server.tlsCertificateFile = certificate.certificateFile
            $0.server.tlsPrivateKeyFile = certificate.privateKeyFile
        }) { hub in
            // Both write paths: frames written below the encoder (uncompressed) and through it (deflate).
            let plain = try await TestSocket(port: hub.port, tls: trust)
            let deflated = try await TestSocket(port: hub.port, compression: true, tls: trust)
            try await plain.subscribe(["alerts"])
            try await deflated.subscribe(["alerts"])

            let accepted = try await TLSHTTPClient.request(
                port: hub.port, method: .POST, path: "/v1/events", body: SampleEvents.alert("M-7"), trust: trust)
            #expect(accepted.status == 202)
            #expect(try await plain.nextEvent()["entity_id"] == .string("M-7"))
            #expect(try await deflated.nextEvent()["entity_id"] == .string("M-7"))
            let status = try await TLSHTTPClient.request(
                port: hub.port, method: .POST, path: "/v1/events", body: SampleEvents.machineStatus("M-8"), trust: trust)
            #expect(status.status == 202)
            let state = try await TLSHTTPClient.request(port: hub.port, path: "/v1/state/machine/M-8", trust: trust)
            #expect(state.status == 200 && state.body.contains("M-8"))

            // A client that does not trust the certificate gets no connection.
            await #expect(throws: (any Error).self) {
                _ = try await TLSHTTPClient.request(port: hub.port, path: "/health", trust: .makeClientConfiguration())
            }
            // Plain HTTP on the TLS port gets no HTTP answer: nothing is served in the clear.
            let clear = try await RawSocket.offPool { () -> String in
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return String(decoding: socket.read(timeout: 5).bytes, as: UTF8.self)
            }
            #expect(!clear.contains("HTTP/1.1"))
            _ = await plain.close()
            _ = await deflated.close()
        }
    }

    @Test func unusableCertificateKeyOrTokenKeyFilesStopTheNode() throws {
        let certificate = try ThrowawayCertificate()
        defer { certificate.remove() }
        let garbage = certificate.directory.appendingPathComponent("garbage.pem").path
        try Data("not a pem file\n".utf8).write(to: URL(fileURLWithPath: garbage))

        func startupError(_ configure: (inout HubConfig) -> Void) -> String? {
            var config = HubConfig()
            configure(&config)
            do {
                _ = try StatusHub(config: config, engine: MemoryEngine(config: config))
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(startupError { _ in } == nil)
        #expect(startupError {
            $0.server.tlsCertificateFile = certificate.certificateFile
            $0.server.tlsPrivateKeyFile = certificate.privateKeyFile
        } == nil)
        #expect(startupError {
            $0.server.tlsCertificateFile = "/nonexistent/cert.pem"
            $0.server.tlsPrivateKeyFile = certificate.privateKeyFile
        }?.contains("server.tls_certificate_file") == true)
        #expect(startupError {
            $0.server.tlsCertificateFile = certificate.certificateFile
            $0.server.tlsPrivateKeyFile = garbage
        }?.contains("server.tls_private_key_file") == true)
        #expect(startupError { $0.auth.jwtEs256PublicKeyFile = "/nonexistent/es256.pem" }?.contains("auth.jwt_es256_public_key_file") == true)
        #expect(startupError { $0.auth.jwtEs256PublicKeyFile = garbage }?.contains("not a PEM P-256") == true)
        // A file of several keys (a rotation) names the block that is none: here a certificate after a key.
        let keyThenCertificate = certificate.directory.appendingPathComponent("keys.pem").path
        let publicKey = try String(contentsOfFile: try TokenIssuer().writePublicKey(), encoding: .utf8)
        try Data((publicKey + String(contentsOfFile: certificate.certificateFile, encoding: .utf8)).utf8)
            .write(to: URL(fileURLWithPath: keyThenCertificate))
        #expect(startupError { $0.auth.jwtEs256PublicKeyFile = keyThenCertificate }?.contains("(its block 2 of 2)") == true)

        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  tls_certificate_file: /etc/cert.pem\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  idle_timeout_seconds: 0\n") }
    }

    /// A renewed certificate and key are served after SIGHUP, without a restart: new connections get the new pair, a
    /// dashboard connected before keeps its connection and its events; files that cannot be used are refused, named
    /// in the log, and the pair in use stays. Before, SIGHUP's default action ended the node on the spot.
    @Test func aRenewedCertificateIsServedAfterSIGHUP() async throws {
        let first = try ThrowawayCertificate()
        let renewed = try ThrowawayCertificate()
        defer {
            first.remove()
            renewed.remove()
        }
        // The node's own files, where a renewal writes: the first pair for now.
        let served = first.directory.appendingPathComponent("served")
        try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
        let certificateFile = served.appendingPathComponent("fullchain.pem").path
        let keyFile = served.appendingPathComponent("privkey.pem").path
        func install(_ pair: ThrowawayCertificate) throws {
            try Data(contentsOf: URL(fileURLWithPath: pair.certificateFile)).write(to: URL(fileURLWithPath: certificateFile))
            try Data(contentsOf: URL(fileURLWithPath: pair.privateKeyFile)).write(to: URL(fileURLWithPath: keyFile))
        }
        try install(first)
        let trustFirst = first.clientConfiguration, trustRenewed = renewed.clientConfiguration
        @Sendable func answers(_ port: Int, trusting trust: TLSConfiguration) async -> Bool {
            await answer(port, trusting: trust) == "200"
        }
        /// The status, or why there is none.
        @Sendable func answer(_ port: Int, trusting trust: TLSConfiguration) async -> String {
            do {
                return String(try await TLSHTTPClient.request(port: port, path: "/health", trust: trust).status)
            } catch {
                return "\(error)"
            }
        }
        let stderr = Pipe()
        var afterBotchedRenewal = ""
        let hub = try await HubProcess.start(
            environment: [
                "STATUSHUB_LOG_LEVEL": "info", "STATUSHUB_SERVER_TLS_CERTIFICATE_FILE": certificateFile,
                "STATUSHUB_SERVER_TLS_PRIVATE_KEY_FILE": keyFile,
            ], stderr: stderr, ready: { await answers($0, trusting: trustFirst) })
        do {
            let dashboard = try await TestSocket(port: hub.port, tls: trustFirst)
            try await dashboard.subscribe(["alerts"])

            try install(renewed)
            hub.send(SIGHUP)
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while !(await answers(hub.port, trusting: trustRenewed)), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(await answers(hub.port, trusting: trustRenewed), "the renewed certificate is served")
            #expect(!(await answers(hub.port, trusting: trustFirst)), "the first is not, to new connections")
            let posted = try await TLSHTTPClient.request(
                port: hub.port, method: .POST, path: "/v1/events", body: SampleEvents.alert("M-RENEWED"), trust: trustRenewed)
            #expect(posted.status == 202)
            #expect(try await dashboard.nextEvent()["entity_id"] == .string("M-RENEWED"), "the dashboard connected before keeps its events")

            // A botched renewal: the node keeps what it serves.
            try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: certificateFile))
            hub.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            afterBotchedRenewal = await answer(hub.port, trusting: trustRenewed)
            _ = await dashboard.close()
        } catch {
            _ = await hub.terminate()
            throw error
        }
        #expect(await hub.terminate() == 0, "a node that took two SIGHUPs stops cleanly on SIGTERM")
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(afterBotchedRenewal == "200", "the renewed certificate is still served: \(afterBotchedRenewal); \(log.suffix(1500))")
        #expect(log.contains("SIGHUP: reloaded the TLS certificate and key; new connections get"), "\(log.suffix(1500))")
        #expect(log.contains("SIGHUP: kept the TLS certificate in use: config: server.tls_certificate_file: cannot load a PEM certificate chain from \(certificateFile)"), "\(log.suffix(1500))")
    }

    /// A node without TLS takes SIGHUP too (it reads its credentials again, `CredentialRotationTests`), and goes on
    /// serving: the signal ended it before.
    @Test func aPlainNodeTakesSIGHUPAndGoesOn() async throws {
        let stderr = Pipe()
        let hub = try await HubProcess.start(environment: ["STATUSHUB_LOG_LEVEL": "info"], stderr: stderr)
        hub.send(SIGHUP)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await HTTP.get(port: hub.port, "/health").status == 200)
        #expect(await hub.terminate() == 0)
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("SIGHUP: reloaded the credentials from the defaults and STATUSHUB_* variables: 0 API keys"), "\(log.suffix(1000))")
        #expect(!log.contains("TLS certificate"), "\(log.suffix(1000))")
    }
}
