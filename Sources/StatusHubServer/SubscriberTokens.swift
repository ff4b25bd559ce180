import Foundation
import JWTKit
import StatusHubCore
import SwiftASN1
import Synchronization

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

/// The claims of a token whose signature held but whose claims `SubscriberClaims` cannot take, each as sent, to name
/// the one that is wrong.
struct ClaimsAsSent: JWTPayload {
    var tenant: JSONValue?
    var patterns: JSONValue?
    var see: JSONValue?
    var exp: JSONValue?
    var nbf: JSONValue?
    var sub: JSONValue?

    func verify(using algorithm: some JWTAlgorithm) async throws {}

    /// What is wrong with them, for the refusal ("token claim 'exp' is required …").
    var problem: String {
        func isList(_ value: JSONValue?) -> Bool {
            guard case .array(let items)? = value else { return false }
            return items.allSatisfy { $0.stringValue != nil }
        }
        func given(_ value: JSONValue?) -> String { value.map { "it is \($0.typeName)" } ?? "it is missing" }
        if exp?.numberValue == nil { return "claim 'exp' is required: seconds since 1970 (a number); \(given(exp))" }
        if !isList(patterns) { return "claim 'patterns' is required: a list of pattern strings; \(given(patterns))" }
        if let tenant, tenant.stringValue == nil { return "claim 'tenant' must be a string; \(given(tenant))" }
        if let see, !isList(see) { return "claim 'see' must be a list of strings; \(given(see))" }
        if let nbf, nbf.numberValue == nil { return "claim 'nbf' must be seconds since 1970 (a number); \(given(nbf))" }
        if let sub, sub.stringValue == nil { return "claim 'sub' must be a string; \(given(sub))" }
        return "claims cannot be read"
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
    /// The user the token names (`sub`), whose session (`/v1/session`) it reads and writes; nil: none named.
    var user: String? = nil

    static let anonymous = Subscriber(tenant: Tenant.defaultName, allowed: nil, expires: nil)

    func allows(_ pattern: ChannelPattern) -> Bool { allowed.map(pattern.isAllowed(by:)) ?? true }
}

/// Verifies subscriber JWTs (HS256 with `auth.jwt_hs256_secret`, ES256 with any of the keys in
/// `auth.jwt_es256_public_key_file`).
final class SubscriberTokens: Sendable {
    struct Refusal: Error, Sendable, Equatable {
        var reason: String
    }

    let required: Bool
    /// Whether any key is configured: without one no token verifies, so no session can come to hold an `exp`.
    var verifiesTokens: Bool { current.withLock { $0.verifiesTokens } }
    /// The algorithms tokens may be signed with, for the log.
    var algorithms: [String] { current.withLock { $0.algorithms } }

    private struct Keys: Sendable {
        var verifiesTokens: Bool
        var algorithms: [String]
        /// The keys of each algorithm, chosen by the token's `alg`, each in a collection of its own and tried in turn
        /// until one's signature holds. One collection of every key answered with the first key's error: an ES256
        /// token that had expired was "not valid (signature …)" (4401, not 4003) beside an HS256 secret, and a
        /// token's claims that did not decode were never named.
        var collections: Task<[String: [JWTKeyCollection]], Never>
    }

    /// Replaced whole on SIGHUP (`replace`), so a secret or key is rotated without a restart.
    private let current: Mutex<Keys>

    /// Throws `ConfigError` when the ES256 key file cannot be read or is not a PEM P-256 public key: the node then
    /// stops at start-up instead of refusing every token later.
    init(config: HubConfig.Auth) throws {
        required = config.required
        current = Mutex(try Self.keys(config))
    }

    /// The secret and key of `config` for tokens verified from now on; sessions opened with a token keep it until it
    /// expires or is renewed. Throws `ConfigError`, and changes nothing, when the ES256 key file cannot be used.
    func replace(config: HubConfig.Auth) throws {
        let replacement = try Self.keys(config)
        current.withLock { $0 = replacement }
    }

    private static func keys(_ config: HubConfig.Auth) throws -> Keys {
        let secret = config.jwtHs256Secret.flatMap { $0.isEmpty ? nil : $0 }
        let publicKeys = try config.jwtEs256PublicKeyFile.map(Self.loadES256PublicKeys(path:)) ?? []
        return Keys(
            verifiesTokens: secret != nil || !publicKeys.isEmpty,
            algorithms: (secret != nil ? ["HS256"] : [])
                + (publicKeys.isEmpty ? [] : [publicKeys.count == 1 ? "ES256" : "ES256 (\(publicKeys.count) keys)"]),
            collections: Task {
                var keys: [String: [JWTKeyCollection]] = [:]
                if let secret { keys["HS256"] = [await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)] }
                for publicKey in publicKeys { keys["ES256", default: []].append(await JWTKeyCollection().add(ecdsa: publicKey)) }
                return keys
            })
    }

    /// The P-256 public keys of a PEM file: one, or several (a key rotation: the new one added beside the old).
    private static func loadES256PublicKeys(path: String) throws -> [ES256PublicKey] {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(description: "config: auth.jwt_es256_public_key_file: cannot read \(path)")
        }
        let documents = (try? PEMDocument.parseMultiple(pemString: pem)) ?? []
        guard !documents.isEmpty else {
            throw ConfigError(description: "config: auth.jwt_es256_public_key_file: \(path) is not a PEM P-256 (ES256) public key")
        }
        return try documents.enumerated().map { index, document in
            do {
                return try ES256PublicKey(pem: document.pemString)
            } catch {
                throw ConfigError(
                    description: "config: auth.jwt_es256_public_key_file: \(path) is not a PEM P-256 (ES256) public key\(documents.count > 1 ? " (its block \(index + 1) of \(documents.count))" : "")")
            }
        }
    }

    /// The subscriber `token` describes; without a token, anonymous unless auth is required.
    func authenticate(token: String?) async -> Result<Subscriber, Refusal> {
        guard let token else {
            return required ? .failure(Refusal(reason: "a token is required: Authorization: Bearer <JWT> or ?token=<JWT>")) : .success(.anonymous)
        }
        let keys = await current.withLock { $0.collections }.value
        // Read before anything is verified: the header's `alg` picks the key, and the claims as sent name a wrong one.
        guard let (header, sent, _) = try? DefaultJWTParser().parse(Array(token.utf8), as: ClaimsAsSent.self) else {
            return .failure(Refusal(reason: "token not valid (not a JWT: header.payload.signature, each base64url JSON)"))
        }
        guard let algorithm = header.alg, let candidates = keys[algorithm], !candidates.isEmpty else {
            let accepted = keys.isEmpty
                ? "this node has no key to verify tokens with (auth.jwt_hs256_secret, auth.jwt_es256_public_key_file)"
                : "accepted: \(keys.keys.sorted().joined(separator: ", "))"
            return .failure(Refusal(reason: "token algorithm \(header.alg.map { "'\($0.prefix(16))'" } ?? "(none)") is not accepted; \(accepted)"))
        }
        var verified: SubscriberClaims?
        for key in candidates where verified == nil {
            do {
                verified = try await key.verify(token, as: SubscriberClaims.self)
            } catch let error as JWTError where error.errorType == .claimVerificationFailure {
                if let notBefore = error.failedClaim as? NotBeforeClaim {
                    return .failure(Refusal(reason: "token not valid before \(notBefore.value.formatted(.iso8601)) (nbf)"))
                }
                return .failure(Refusal(reason: "token expired"))
            } catch let error as JWTError where error.errorType == .malformedToken && error.reason?.contains("payload") == true {
                // The signature held (jwt-kit reads the claims only after it): say which claim is wrong.
                return .failure(Refusal(reason: "token \(sent.problem)"))
            } catch {
                continue  // not this key's signature: the next one's, if any
            }
        }
        guard let claims = verified else {
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
        return .success(Subscriber(
            tenant: tenant, allowed: allowed, expires: claims.exp.value, claims: Set(claims.see ?? []), user: claims.sub?.value))
    }

    /// The token of a request: `Authorization: Bearer <JWT>`, else the `token` query parameter of `path` (nil: the
    /// header only, for a caller that reads the query itself, `SubscribeQuery`), decoded as `SubscribeQuery` decodes
    /// it; `token=` alone is no token (`split` drops the empty value), as there.
    static func token(authorization: String?, path: String?) -> String? {
        if let authorization, let bearer = PublisherKeys.bearer(authorization) { return String(bearer) }
        guard let query = path?.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == "token" { return SubscribeQuery.formDecoded(String(parts[1])) ?? String(parts[1]) }
        }
        return nil
    }
}
