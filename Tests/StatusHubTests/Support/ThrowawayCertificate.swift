import Crypto
import Foundation
import NIOSSL
import X509

/// A self-signed P-256 certificate for `localhost`, made fresh for a test and written to a temporary directory
/// as the PEM files a hub's config names. Nothing leaves the test: the directory is removed by `remove()`.
struct ThrowawayCertificate {
    let directory: URL
    let certificateFile: String
    let privateKeyFile: String
    /// What a client trusts to talk to a hub serving this certificate.
    let certificate: NIOSSLCertificate

    init() throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("localhost") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(3600),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                SubjectAlternativeNames([.dnsName("localhost")])
            },
            issuerPrivateKey: .init(key))
        let pem = try certificate.serializeAsPEM().pemString
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("statushub-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        certificateFile = directory.appendingPathComponent("cert.pem").path
        privateKeyFile = directory.appendingPathComponent("key.pem").path
        try Data(pem.utf8).write(to: URL(fileURLWithPath: certificateFile))
        try Data(key.pemRepresentation.utf8).write(to: URL(fileURLWithPath: privateKeyFile))
        self.certificate = try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem)
    }

    /// A client configuration that trusts this certificate only (full verification, host name included).
    var clientConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates([certificate])
        return configuration
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}
