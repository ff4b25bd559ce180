import Foundation
import JWTKit
import StatusHubCore

/// Signs subscriber tokens the way an identity provider would: HS256 with a shared secret, ES256 with a key pair
/// whose public half the hub reads from a PEM file.
struct TokenIssuer: Sendable {
    static let secret = "test-secret-0123456789abcdef-0123456789"

    struct Claims: JWTPayload {
        var tenant: String?
        var patterns: [String]
        var exp: ExpirationClaim
        var nbf: NotBeforeClaim?
        var see: [String]?
        var sub: SubjectClaim?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// Claims of any shape, each `JSONValue` as given and absent when nil: what a misconfigured issuer sends.
    struct ClaimsOfAnyShape: JWTPayload {
        var exp: JSONValue?
        var patterns: JSONValue?
        var tenant: JSONValue?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    let es256 = ES256PrivateKey()

    /// The public key as a PEM file for `auth.jwt_es256_public_key_file`.
    func writePublicKey() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("statushub-es256-\(UUID().uuidString).pem").path
        try es256.publicKey.pemRepresentation.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `validIn`: seconds from now to the token's `nbf` (none without it).
    /// `see`: the restriction claims (`pii`, `audit`, …) the token carries.
    /// `user`: the `sub` claim (whose session `/v1/session` keeps).
    func hs256(
        tenant: String? = nil, patterns: [String], expiresIn: TimeInterval = 3600, validIn: TimeInterval? = nil, see: [String]? = nil,
        user: String? = nil
    ) async throws -> String {
        let keys = await JWTKeyCollection().add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        return try await keys.sign(Claims(
            tenant: tenant, patterns: patterns, exp: .init(value: Date().addingTimeInterval(expiresIn)),
            nbf: validIn.map { .init(value: Date().addingTimeInterval($0)) }, see: see, sub: user.map { SubjectClaim(value: $0) }))
    }

    func hs256(anyShape claims: ClaimsOfAnyShape) async throws -> String {
        try await JWTKeyCollection().add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256).sign(claims)
    }

    func es256(anyShape claims: ClaimsOfAnyShape) async throws -> String {
        try await JWTKeyCollection().add(ecdsa: es256).sign(claims)
    }

    func es256(tenant: String? = nil, patterns: [String], expiresIn: TimeInterval = 3600) async throws -> String {
        let keys = await JWTKeyCollection().add(ecdsa: es256)
        return try await keys.sign(Claims(tenant: tenant, patterns: patterns, exp: .init(value: Date().addingTimeInterval(expiresIn))))
    }
}
