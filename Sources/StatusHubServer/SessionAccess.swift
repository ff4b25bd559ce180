import Foundation
import NIOCore
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
        /// Messages since the first refusal of the current run over the rate; nil while the client keeps to it.
        var sinceFirstRefusal: Int?
        /// Messages let through in a row since the last refusal.
        var passedInARow = 0
    }

    private let state: Mutex<State>
    private let tokens: SubscriberTokens?
    private let rate: Double
    private let start = ContinuousClock.now
    /// The expiry watch, so that `refresh` can make it look at the new `exp` at once. A cancelled watch holds
    /// nothing of its session (`SessionAccess.open` is shared by every connection without auth).
    private let expiryWatch = Mutex<ExpiryWatch?>(nil)

    init(subscriber: Subscriber, tokens: SubscriberTokens?, messagesPerSecond: Double) {
        rate = messagesPerSecond
        state = Mutex(State(subscriber: subscriber, bucket: messagesPerSecond > 0 ? TokenBucket(rate: messagesPerSecond, burst: messagesPerSecond, now: 0) : nil))
        self.tokens = tokens
    }

    static let open = SessionAccess(subscriber: .anonymous, tokens: nil, messagesPerSecond: 0)

    var subscriber: Subscriber { state.withLock { $0.subscriber } }

    /// Counts one client message against `websocket.max_messages_per_second`. A client refused once and refused again
    /// a second's worth of messages (`rate` of them) later is still over the rate: closed. One that gets a second's
    /// worth through in a row is back under it. Counting only refusals in a row never closed anyone: a client
    /// sending at several times the rate gets a message through every time a token refills.
    func screenMessage() -> Screen {
        let elapsed = start.duration(to: .now)
        let now = elapsed.seconds
        let secondsWorth = max(1, Int(rate.rounded(.up)))
        return state.withLock { state in
            guard state.bucket != nil else { return .pass }
            let allowed = state.bucket!.take(1, now: now).allowed
            guard let counted = state.sinceFirstRefusal else {
                if allowed { return .pass }
                state.sinceFirstRefusal = 0
                state.passedInARow = 0
                return .limited
            }
            state.sinceFirstRefusal = counted + 1
            if allowed {
                state.passedInARow += 1
                if state.passedInARow >= secondsWorth { state.sinceFirstRefusal = nil }
                return .pass
            }
            state.passedInARow = 0
            return counted + 1 >= secondsWorth ? .close : .limited
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
            let sameTenant = state.withLock { state in
                guard fresh.tenant == state.subscriber.tenant else { return false }
                state.subscriber = fresh
                return true
            }
            guard sameTenant else { return .failure(.init(reason: "a token cannot change the connection's tenant; reconnect")) }
            // The new `exp` may come sooner than the expiry watch's next look: it looks again now.
            expiryWatch.withLock { $0 }?.recheck()
            return .success(held.filter { !fresh.allows($0.unscoped.pattern) })
        }
    }

    /// Calls `expired` once, when the token expires (following refreshes), from a timer on `loop` — an idle
    /// connection holds no task for this. Nothing happens for a token without `exp`. Cancel the returned watch
    /// when the session ends. Nil on a node without token keys, where no `exp` can ever come: the watch, its
    /// timer closure and its recheck were ~170 bytes of every idle connection for nothing (loadtest/RESULTS.md).
    func watchExpiry(on loop: any EventLoop, expired: @escaping @Sendable () -> Void) -> ExpiryWatch? {
        guard tokens?.verifiesTokens == true || subscriber.expires != nil else { return nil }
        let watch = ExpiryWatch()
        @Sendable func check() {
            guard !watch.isCancelled, let expires = subscriber.expires else { return }
            let left = expires.timeIntervalSinceNow
            if left <= 0 { return expired() }
            // At most a minute at a time, so a refresh that moved `exp` is followed without a timer per refresh.
            watch.replace(loop.scheduleTask(in: .milliseconds(Int64(min(left, 60) * 1000) + 1)) { check() })
        }
        loop.execute { check() }
        watch.setRecheck { loop.execute { check() } }
        expiryWatch.withLock { $0 = watch }
        return watch
    }
}

/// The timer behind `SessionAccess.watchExpiry`.
final class ExpiryWatch: Sendable {
    private let timer = Mutex<(scheduled: Scheduled<Void>?, cancelled: Bool, recheck: (@Sendable () -> Void)?)>((nil, false, nil))

    fileprivate func setRecheck(_ recheck: @escaping @Sendable () -> Void) {
        timer.withLock { if !$0.cancelled { $0.recheck = recheck } }
    }

    /// Looks at the token's `exp` again now (a refresh may have moved it sooner).
    func recheck() {
        timer.withLock { $0.recheck }?()
    }

    /// Schedules `next` in place of the timer before it (a refresh may have moved `exp`).
    fileprivate func replace(_ next: Scheduled<Void>) {
        let (cancelled, previous) = timer.withLock { timer in
            guard !timer.cancelled else { return (true, Scheduled<Void>?.none) }
            defer { timer.scheduled = next }
            return (false, timer.scheduled)
        }
        previous?.cancel()
        if cancelled { next.cancel() }
    }

    var isCancelled: Bool { timer.withLock { $0.cancelled } }

    func cancel() {
        timer.withLock { timer in
            timer.cancelled = true
            // The recheck reaches the session's connection: let it go with the session.
            timer.recheck = nil
            return timer.scheduled.take()
        }?.cancel()
    }

}
