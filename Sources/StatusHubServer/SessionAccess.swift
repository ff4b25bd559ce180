import Foundation
import StatusHubCore
import Synchronization

/// What one WebSocket connection may do: its subscriber (tenant, allowed patterns, token expiry) and its
/// message rate. Shared by the session's read loop and its expiry watch.
final class SessionAccess: Sendable {
    enum Screen: Sendable, Equatable {
        case pass
        /// Over the rate: answer `rate_limited`.
        case limited
        /// Still going a second's worth of messages later: close with 1008.
        case close
    }

    private struct State {
        var subscriber: Subscriber
        var bucket: TokenBucket?
        var strikes = 0
    }

    private let state: Mutex<State>
    private let tokens: SubscriberTokens?
    private let rate: Double
    private let start = ContinuousClock.now

    init(subscriber: Subscriber, tokens: SubscriberTokens?, messagesPerSecond: Double) {
        rate = messagesPerSecond
        state = Mutex(State(subscriber: subscriber, bucket: messagesPerSecond > 0 ? TokenBucket(rate: messagesPerSecond, burst: messagesPerSecond, now: 0) : nil))
        self.tokens = tokens
    }

    static let open = SessionAccess(subscriber: .anonymous, tokens: nil, messagesPerSecond: 0)

    var subscriber: Subscriber { state.withLock { $0.subscriber } }

    /// Counts one client message against `websocket.max_messages_per_second`.
    func screenMessage() -> Screen {
        let elapsed = start.duration(to: .now)
        let now = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return state.withLock { state in
            guard state.bucket != nil else { return .pass }
            if state.bucket!.take(1, now: now).allowed {
                state.strikes = 0
                return .pass
            }
            state.strikes += 1
            return Double(state.strikes) > max(1, rate) ? .close : .limited
        }
    }

    /// The client's patterns split into those its token allows, scoped to its tenant (for the index and the
    /// engine), and those it does not.
    func partition(_ patterns: [ChannelPattern]) -> (allowed: [ChannelPattern], forbidden: [ChannelPattern]) {
        let subscriber = subscriber
        var allowed: [ChannelPattern] = []
        var forbidden: [ChannelPattern] = []
        for pattern in patterns {
            if subscriber.allows(pattern) { allowed.append(pattern.scoped(to: subscriber.tenant)) } else { forbidden.append(pattern) }
        }
        return (allowed, forbidden)
    }

    func scoped(_ patterns: [ChannelPattern]) -> [ChannelPattern] {
        let tenant = subscriber.tenant
        return patterns.map { $0.scoped(to: tenant) }
    }

    /// `{"op":"auth"}`: a valid token of the same tenant replaces the current one. Returns the scoped patterns
    /// `held` that the new token no longer allows (to be dropped), or the refusal.
    func refresh(token: String, held: Set<ChannelPattern>) async -> Result<[ChannelPattern], SubscriberTokens.Refusal> {
        guard let tokens else { return .failure(.init(reason: "this node verifies no tokens (auth not configured)")) }
        switch await tokens.authenticate(token: token) {
        case .failure(let refusal):
            return .failure(refusal)
        case .success(let fresh):
            return state.withLock { state in
                guard fresh.tenant == state.subscriber.tenant else {
                    return .failure(.init(reason: "a token cannot change the connection's tenant; reconnect"))
                }
                state.subscriber = fresh
                return .success(held.filter { !fresh.allows($0.unscoped.pattern) })
            }
        }
    }

    /// Sleeps until the token expires (following refreshes): true once it has; false without a token or when
    /// cancelled.
    func waitForExpiry() async -> Bool {
        while !Task.isCancelled {
            guard let expires = subscriber.expires else { return false }
            let left = expires.timeIntervalSinceNow
            if left <= 0 { return true }
            try? await Task.sleep(for: .milliseconds(Int64(min(left, 60) * 1000) + 1))
        }
        return false
    }
}
