import StatusHubCore
import Synchronization

/// Token buckets by name (an API key's name; anonymous publishers, allowed only with `auth.required` off, share one
/// bucket, "(anonymous)"), under one lock.
final class RateLimiter: Sendable {
    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant

    /// `rate` 0 disables the limit.
    init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = burst > 0 ? Double(burst) : max(1, rate)
        start = clock.now
    }

    var isEnabled: Bool { rate > 0 }

    var describe: String { "limit of \(rate) events/s (burst \(Int(burst)))" }

    /// nil when allowed, else whole seconds to wait (at least 1).
    func take(_ cost: Int, for name: String) -> Int? {
        guard isEnabled else { return nil }
        let elapsed = start.duration(to: clock.now)
        let now = elapsed.seconds
        let (allowed, retryAfter) = buckets.withLock { buckets in
            var bucket = buckets[name] ?? TokenBucket(rate: rate, burst: burst, now: now)
            defer { buckets[name] = bucket }
            return bucket.take(Double(cost), now: now)
        }
        return allowed ? nil : max(1, Int(retryAfter.rounded(.up)))
    }
}
