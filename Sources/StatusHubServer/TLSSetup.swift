import NIOSSL
import StatusHubCore

/// The server side of `https://` and `wss://`: the certificate chain and key named in the config, loaded once at
/// start-up so a missing or unreadable file stops the node with the key's name rather than failing handshakes.
enum TLSSetup {
    /// nil when the config asks for plain HTTP.
    static func serverConfiguration(_ server: HubConfig.Server) throws -> TLSConfiguration? {
        guard let certificateFile = server.tlsCertificateFile, let keyFile = server.tlsPrivateKeyFile else { return nil }
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
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        // WebSocket upgrades are HTTP/1.1 requests; say so to clients that negotiate ALPN.
        configuration.applicationProtocols = ["http/1.1"]
        // Building a context checks that the key belongs to the certificate, here rather than on the first client.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigError(description: "config: server.tls_private_key_file does not match server.tls_certificate_file, or TLS cannot use them (\(error))")
        }
        return configuration
    }
}
