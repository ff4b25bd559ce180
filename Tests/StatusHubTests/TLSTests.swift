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

        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  tls_certificate_file: /etc/cert.pem\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "server:\n  idle_timeout_seconds: 0\n") }
    }
}
