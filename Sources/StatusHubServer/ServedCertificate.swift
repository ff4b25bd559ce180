import Foundation
import NIOCore
import NIOSSL
import StatusHubCore
import Synchronization

/// The server side of `https://` and `wss://`: the certificate chain and key named in the config, loaded at start-up
/// so a missing or unreadable file stops the node with the key's name rather than failing handshakes, and loaded
/// again on `reload()` (SIGHUP) so a renewed certificate (ACME's every 60–90 days) is served without a restart — a
/// restart that would close every dashboard and bring them all back at once.
///
/// The reloaded pair reaches new handshakes through swift-nio-ssl's context callback (`sslContextCallback`, its way
/// to choose a certificate per handshake), so Hummingbird's `TLSChannel` and the connections already open stay as
/// they are.
final class ServedCertificate: Sendable {
    let certificateFile: String
    let privateKeyFile: String
    /// What new handshakes use: nil until the first reload (the start-up pair, in the context itself). In a class of
    /// its own, for the context callback to hold before `self` is whole.
    private final class Reloaded: Sendable {
        let pair = Mutex<NIOSSLContextConfigurationOverride?>(nil)
    }
    private let reloaded = Reloaded()

    /// The configuration Hummingbird's `TLSChannel` builds its context from, for the pair in the files now.
    let configuration: TLSConfiguration

    /// nil when the config asks for plain HTTP.
    init?(_ server: HubConfig.Server) throws {
        guard let certificateFile = server.tlsCertificateFile, let keyFile = server.tlsPrivateKeyFile else { return nil }
        self.certificateFile = certificateFile
        self.privateKeyFile = keyFile
        let pair = try Self.load(certificateFile: certificateFile, privateKeyFile: keyFile)
        var configuration = Self.configuration(pair)
        let reloaded = self.reloaded
        configuration.sslContextCallback = { _, promise in
            promise.succeed(reloaded.pair.withLock { $0 } ?? .noChanges)
        }
        self.configuration = configuration
    }

    /// Loads the files again; new handshakes use the new pair from now on. A pair that cannot be used (unreadable,
    /// not PEM, a key that does not match) throws `ConfigError` naming the key and changes nothing.
    /// - Returns: the new chain's first certificate, described.
    @discardableResult
    func reload() throws -> String {
        let pair = try Self.load(certificateFile: certificateFile, privateKeyFile: privateKeyFile)
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = pair.chain.map { .certificate($0) }
        override.privateKey = .privateKey(pair.key)
        reloaded.pair.withLock { $0 = override }
        return pair.chain[0].description
    }

    private struct Pair {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    private static func configuration(_ pair: Pair) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: pair.chain.map { .certificate($0) }, privateKey: .privateKey(pair.key))
        configuration.minimumTLSVersion = .tlsv12
        // WebSocket upgrades are HTTP/1.1 requests; say so to clients that negotiate ALPN.
        configuration.applicationProtocols = ["http/1.1"]
        return configuration
    }

    private static func load(certificateFile: String, privateKeyFile keyFile: String) throws -> Pair {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw ConfigError(description: "config: server.tls_certificate_file: cannot load a PEM certificate chain from \(certificateFile) (\(error))")
        }
        guard !chain.isEmpty else {
            throw ConfigError(description: "config: server.tls_certificate_file: \(certificateFile) holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ConfigError(description: "config: server.tls_private_key_file: cannot load a PEM private key from \(keyFile) (\(error))")
        }
        let pair = Pair(chain: chain, key: key)
        // Building a context checks that the key belongs to the certificate, here rather than on the first client.
        do {
            _ = try NIOSSLContext(configuration: configuration(pair))
        } catch {
            throw ConfigError(description: "config: server.tls_private_key_file does not match server.tls_certificate_file, or TLS cannot use them (\(error))")
        }
        return pair
    }
}
