/// A token bucket: `rate` tokens a second, at most `burst` saved up. Pure (the caller passes the time), so
/// limits are testable without waiting.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    public private(set) var tokens: Double
    private var last: Double

    /// `now` in seconds on any monotonic clock. Starts full.
    public init(rate: Double, burst: Double, now: Double) {
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = max(1, burst)
        self.last = now
    }

    /// Takes `cost` tokens if there are enough; otherwise takes nothing and returns the seconds until there
    /// will be (for `Retry-After`). A cost above `burst` needs a full bucket and leaves it in debt, so a large
    /// batch is possible but pays for every event.
    public mutating func take(_ cost: Double = 1, now: Double) -> (allowed: Bool, retryAfter: Double) {
        if now > last {
            tokens = min(burst, tokens + (now - last) * rate)
            last = now
        }
        if tokens >= min(cost, burst) {
            tokens -= cost
            return (true, 0)
        }
        let needed = min(cost, burst) - tokens
        return (false, rate > 0 ? needed / rate : .infinity)
    }
}
