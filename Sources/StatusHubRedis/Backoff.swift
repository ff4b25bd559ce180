/// Delays between reconnect attempts: doubling from `initial` up to `maximum`, each one jittered.
///
/// Jitter keeps the nodes of a cluster from reconnecting in lockstep after Redis comes back, which would
/// otherwise hit it with every node's reconnect, script load and resubscribe in the same millisecond.
/// "Equal jitter": half the delay is fixed and half random, so a delay never collapses to zero.
public struct Backoff: Sendable {
    public let initial: Double
    public let maximum: Double
    private var attempt = 0

    public init(initialSeconds: Double, maximumSeconds: Double) {
        self.initial = max(0.001, initialSeconds)
        self.maximum = max(self.initial, maximumSeconds)
    }

    /// The un-jittered delay of the next attempt, in seconds.
    public var nextCeiling: Double {
        // Capping the exponent keeps the power finite however long Redis stays down.
        min(maximum, initial * Double(1 << min(attempt, 32)))
    }

    /// The delay before the next attempt, in seconds, and advances the schedule.
    public mutating func next() -> Double {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    public mutating func next(using generator: inout some RandomNumberGenerator) -> Double {
        let ceiling = nextCeiling
        attempt += 1
        return ceiling / 2 + Double.random(in: 0...(ceiling / 2), using: &generator)
    }

    /// Back to `initial`, after a connection succeeded.
    public mutating func reset() { attempt = 0 }
}
