import HTTPTypes
import Hummingbird
import NIOCore
import StatusHubCore

/// Everything a node checks before it lets a client in: publisher keys and ingest rate, subscriber tokens,
/// connection limits.
final class HubAccess: Sendable {
    let publisherKeys: PublisherKeys
    let ingestRate: RateLimiter
    let subscriberTokens: SubscriberTokens
    let scrapeKey: ScrapeKey
    let connections: ConnectionLimiter
    let proxies: TrustedProxies
    let messagesPerSecond: Double
    init(config: HubConfig, descriptors: DescriptorLimit) throws {
        publisherKeys = PublisherKeys(config: config.auth)
        ingestRate = RateLimiter(rate: config.auth.ingestEventsPerSecond, burst: config.auth.ingestBurst)
        subscriberTokens = try SubscriberTokens(config: config.auth)
        scrapeKey = ScrapeKey(config: config.auth)
        connections = ConnectionLimiter(limits: config.server, descriptors: descriptors)
        proxies = config.server.proxies
        messagesPerSecond = config.websocket.maxMessagesPerSecond
    }

    /// The credentials of `auth` from now on (SIGHUP): API keys, the token secret and key, the scraper's key. Throws
    /// `ConfigError`, and changes nothing, when the token key file cannot be used.
    func replaceCredentials(_ auth: HubConfig.Auth) throws {
        try subscriberTokens.replace(config: auth)
        publisherKeys.replace(config: auth)
        scrapeKey.replace(config: auth)
    }

    enum Decision: Sendable {
        /// Let in, counted under `address` (who it is comes with its token, after the handshake).
        case admitted(address: String)
        /// Upgraded only to be closed at once with `code`: Hummingbird answers a refused upgrade with a bare 400,
        /// and a browser cannot read a handshake's HTTP status anyway, while it can read a close code.
        case refused(CloseCode, reason: String)
    }

    /// Counts a connection from its client's address — the peer's, or, from a trusted proxy, the one its
    /// `forwardedFor` (`X-Forwarded-For`) or `forwarded` (`Forwarded`) header values name (`TrustedProxies`) — or says
    /// which limit refuses it. Synchronous, so the upgrade decision stays on the event loop.
    func admitConnection(channel: any Channel, forwardedFor: [String], forwarded: [String]) -> Decision {
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let address = proxies.isEmpty ? peer : proxies.clientAddress(peer: peer, forwardedFor: forwardedFor, forwarded: forwarded)
        switch connections.acquire(address) {
        case nil:
            return .admitted(address: address)
        case .total(let limit)?:
            let setting = connections.totalSetBy.map { "the open-files limit, \($0.soft)" } ?? "server.max_connections"
            return .refused(.nodeFull, reason: "\(limit) connections open (\(setting)); try another node")
        case .perAddress(let limit)?:
            return .refused(.tooManyConnections, reason: "\(limit) connections from this address (server.max_connections_per_address)")
        }
    }

    /// Verifies the upgrade's token (right after the handshake): the subscriber, or the close code refusing it.
    func authenticate(token: String?) async -> Result<Subscriber, TokenRefusal> {
        switch await subscriberTokens.authenticate(token: token) {
        case .success(let subscriber): return .success(subscriber)
        case .failure(let refusal):
            return .failure(TokenRefusal(code: refusal.reason == "token expired" ? .tokenExpired : .unauthorized, reason: refusal.reason))
        }
    }

    struct TokenRefusal: Error {
        var code: CloseCode
        var reason: String
    }

    func session(for subscriber: Subscriber) -> SessionAccess {
        SessionAccess(subscriber: subscriber, tokens: subscriberTokens, messagesPerSecond: messagesPerSecond)
    }
}
