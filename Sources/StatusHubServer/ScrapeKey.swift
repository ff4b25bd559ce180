import Crypto
import StatusHubCore
import Synchronization

/// Who may read `GET /metrics` when `auth.metrics_key_hash` is set: the one scraper's key, checked as publisher keys
/// are (hashed, compared in constant time, never logged); replaced on SIGHUP as they are.
final class ScrapeKey: Sendable {
    private let current: Mutex<[UInt8]?>

    init(config: HubConfig.Auth) {
        current = Mutex(config.metricsKeyHash.flatMap(HubConfig.Auth.digest(fromHex:)))
    }

    func replace(config: HubConfig.Auth) {
        let digest = config.metricsKeyHash.flatMap(HubConfig.Auth.digest(fromHex:))
        current.withLock { $0 = digest }
    }

    /// Why a request with this `Authorization` header may not read the metrics; nil when it may.
    func refusal(authorization: String?) -> String? {
        guard let digest = current.withLock({ $0 }) else { return nil }
        guard let authorization else { return "is required: Authorization: Bearer <metrics key> (auth.metrics_key_hash)" }
        guard let key = PublisherKeys.bearer(authorization) else { return "must be 'Bearer <metrics key>'" }
        let presented = Array(SHA256.hash(data: Array(key.utf8)))
        return PublisherKeys.constantTimeEqual(digest, presented) ? nil : "unknown metrics key"
    }
}
