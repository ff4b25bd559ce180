import Foundation
import JWTKit
import StatusHubCore

/// The claims of a subscriber token: `{"tenant":"acme","patterns":["line:Line-2:*"],"exp":1763479425}`, and
/// optionally `nbf`, before which the token is not valid, and `see`, the catalog's restriction claims it holds
/// (`["pii","audit"]`, see `Restriction`).
struct SubscriberClaims: JWTPayload {
    var tenant: String?
    var patterns: [String]
    var see: [String]?
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var sub: SubjectClaim?

    /// How far ahead of this node's clock an issuer's may be for `nbf` (issuers commonly set it to the moment of
    /// issue).
    static let notBeforeLeeway: TimeInterval = 5

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore(currentDate: Date().addingTimeInterval(Self.notBeforeLeeway))
    }
}

/// A subscriber as its token describes it.
struct Subscriber: Sendable, Equatable {
    var tenant: String
    /// Patterns the subscriber may hold (see `ChannelPattern.contains`); nil: any (auth off, no token).
    var allowed: [ChannelPattern]?
    /// When the token expires; nil: never (no token).
    var expires: Date?
    /// The restriction claims it holds (`Restriction`); nil: all of them (auth off, no token).
    var claims: Set<String>? = nil

    static let anonymous = Subscriber(tenant: Tenant.defaultName, allowed: nil, expires: nil)

    func allows(_ pattern: ChannelPattern) -> Bool { allowed.map(pattern.isAllowed(by:)) ?? true }
}

/// Verifies subscriber JWTs (HS256 with `auth.jwt_hs256_secret`, ES256 with `auth.jwt_es256_public_key_file`).
final class SubscriberTokens: Sendable {
    struct Refusal: Error, Sendable, Equatable {
        var reason: String
    }

    let required: Bool
    /// Whether any key is configured: without one no token verifies, so no session can come to hold an `exp`.
    let verifiesTokens: Bool
    private let keys: Task<JWTKeyCollection, Never>

    /// Throws `ConfigError` when the ES256 key file cannot be read or is not a PEM P-256 public key: the node then
    /// stops at start-up instead of refusing every token later.
    init(config: HubConfig.Auth) throws {
        required = config.required
        let secret = config.jwtHs256Secret
        let publicKey = try config.jwtEs256PublicKeyFile.map(Self.loadES256PublicKey(path:))
        verifiesTokens = !(secret ?? "").isEmpty || publicKey != nil
        keys = Task {
            let keys = JWTKeyCollection()
            if let secret, !secret.isEmpty { await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: "hs256") }
            if let publicKey { await keys.add(ecdsa: publicKey, kid: "es256") }
            return keys
        }
    }

    private static func loadES256PublicKey(path: String) throws -> ES256PublicKey {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(description: "config: auth.jwt_es256_public_key_file: cannot read \(path)")
        }
        do {
            return try ES256PublicKey(pem: pem)
        } catch {
            throw ConfigError(description: "config: auth.jwt_es256_public_key_file: \(path) is not a PEM P-256 (ES256) public key")
        }
    }

    /// The subscriber `token` describes; without a token, anonymous unless auth is required.
    func authenticate(token: String?) async -> Result<Subscriber, Refusal> {
        guard let token else {
            return required ? .failure(Refusal(reason: "a token is required: Authorization: Bearer <JWT> or ?token=<JWT>")) : .success(.anonymous)
        }
        let claims: SubscriberClaims
        do {
            claims = try await keys.value.verify(token, as: SubscriberClaims.self, iteratingKeys: true)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            if let notBefore = error.failedClaim as? NotBeforeClaim {
                return .failure(Refusal(reason: "token not valid before \(notBefore.value.formatted(.iso8601)) (nbf)"))
            }
            return .failure(Refusal(reason: "token expired"))
        } catch {
            return .failure(Refusal(reason: "token not valid (signature, algorithm or format)"))
        }
        let tenant = claims.tenant ?? Tenant.defaultName
        guard Tenant.isValid(tenant) else { return .failure(Refusal(reason: "token tenant must be \(Tenant.rule)")) }
        var allowed: [ChannelPattern] = []
        for text in claims.patterns {
            guard let pattern = try? ChannelPattern(parsing: text) else {
                return .failure(Refusal(reason: "token pattern '\(text.prefix(64))' is not a valid pattern"))
            }
            allowed.append(pattern)
        }
        return .success(Subscriber(tenant: tenant, allowed: allowed, expires: claims.exp.value, claims: Set(claims.see ?? [])))
    }

    /// The token of a request: `Authorization: Bearer <JWT>`, else the `token` query parameter of `path` (nil: the
    /// header only, for a caller that reads the query itself, `SubscribeQuery`).
    static func token(authorization: String?, path: String?) -> String? {
        if let authorization, let bearer = PublisherKeys.bearer(authorization) { return String(bearer) }
        guard let query = path?.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == "token" { return String(parts[1]).removingPercentEncoding ?? String(parts[1]) }
        }
        return nil
    }
}
