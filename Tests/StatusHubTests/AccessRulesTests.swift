import Foundation
import NIOEmbedded
import StatusHubCore
import Testing

@testable import StatusHubServer

/// The pure rules behind access control: containment, tenant scoping, token buckets, key hashes, config.
@Suite struct AccessRulesTests {
    func pattern(_ text: String) -> ChannelPattern { try! ChannelPattern(parsing: text) }

    @Test(arguments: [
        ("line:Line-2:*", "line:Line-2:alerts:*", true),
        ("line:Line-2:*", "line:Line-2:*", true),
        ("line:Line-2:*", "line:*:alerts:*", false),
        ("line:Line-2:*", "*", false),
        ("*", "line:*:alerts:*", true),
        ("machine:*", "machine:M-1", true),
        ("machine:*", "machine", false),
        ("line:*:alerts:*", "line:Line-2:alerts:machine:M-1", true),
        ("line:*:alerts:*", "line:Line-2:*", false),
        ("machine:M-1", "machine:*", false),
        ("a:*:c", "a:b:c", true),
        ("a:*:c", "a:*:c", true),
        ("a:*:c", "a:*", false),
    ])
    func containment(allowed: String, requested: String, expected: Bool) {
        #expect(pattern(allowed).contains(pattern(requested)) == expected)
        // Containment agrees with matching on concrete channels.
        if expected, pattern(requested).isExact { #expect(pattern(allowed).matches(requested)) }
    }

    @Test func wildcardsNeverCrossTenants() {
        let acme = ValidatedEvent(
            eventType: .alertRaised, entityType: .machine, entityID: "M-1", line: "Line-2", bodyAfterID: [], tenant: "acme")
        #expect(acme.channels.allSatisfy { $0.hasPrefix("@acme:") } && acme.entityKey == "@acme:resource:machine:M-1")
        for text in ["*", "line:*", "*:*:*:*:*", "alerts"] {
            #expect(!acme.channels.contains { pattern(text).matches($0) })
        }
        #expect(pattern("*").scoped(to: "acme").matches("@acme:alerts"))
        #expect(!pattern("*").scoped(to: "other").matches("@acme:alerts"))
        let index = SubscriptionIndex<Int>()
        index.add(1, to: pattern("*"))
        index.add(2, to: pattern("*").scoped(to: "acme"))
        #expect(index.subscribers(matching: acme.channels) == [2])
        #expect(index.subscribers(matching: ["alerts"]) == [1])
        #expect(pattern("line:*").scoped(to: "acme").unscoped.pattern.text == "line:*")
    }

    @Test func tokenBucketRefillsAtItsRate() {
        var bucket = TokenBucket(rate: 2, burst: 3, now: 0)
        for _ in 0..<3 { #expect(bucket.take(now: 0).allowed) }
        let refused = bucket.take(now: 0)
        #expect(!refused.allowed && refused.retryAfter == 0.5)
        #expect(bucket.take(now: 0.5).allowed)
        #expect(!bucket.take(now: 0.5).allowed)
        // A batch above the burst needs a full bucket and pays for all of it.
        #expect(bucket.take(10, now: 100).allowed && !bucket.take(now: 101).allowed)
    }

    @Test func messagesOverTheRateAreLimitedThenClosed() {
        let access = SessionAccess(subscriber: .anonymous, tokens: nil, messagesPerSecond: 5)
        let screens = (0..<11).map { _ in access.screenMessage() }
        #expect(screens == Array(repeating: .pass, count: 5) + Array(repeating: .limited, count: 5) + [.close])
    }

    /// A node without token keys can never see an `exp` (no token verifies there), so its sessions keep no expiry
    /// watch; with a key one is kept even for a session without a token, since an `auth` may bring one that expires.
    @Test func expiryIsWatchedOnlyWhereATokenCanExpire() throws {
        let loop = EmbeddedEventLoop()
        let keyless = SessionAccess(subscriber: .anonymous, tokens: try SubscriberTokens(config: HubConfig.Auth()), messagesPerSecond: 0)
        #expect(keyless.watchExpiry(on: loop) {} == nil)
        var auth = HubConfig.Auth()
        auth.jwtHs256Secret = String(repeating: "k", count: 32)  // config requires 32 bytes or more
        let keyed = SessionAccess(subscriber: .anonymous, tokens: try SubscriberTokens(config: auth), messagesPerSecond: 0)
        let watch = keyed.watchExpiry(on: loop) {}
        #expect(watch != nil)
        watch?.cancel()
        let expiring = Subscriber(tenant: Tenant.defaultName, allowed: nil, expires: Date().addingTimeInterval(60))
        let held = SessionAccess(subscriber: expiring, tokens: nil, messagesPerSecond: 0).watchExpiry(on: loop) {}
        #expect(held != nil)
        held?.cancel()
    }

    @Test func keysAreComparedByHashOnly() {
        var auth = HubConfig.Auth()
        auth.required = true
        auth.apiKeys = [.init(name: "k", hash: PublisherKeys.hash(key: "secret"), tenant: "acme")]
        let keys = PublisherKeys(config: auth)
        #expect(keys.authenticate(authorization: "Bearer secret") == .publisher(.init(name: "k", tenant: "acme")))
        #expect(keys.authenticate(authorization: "bearer  secret") == .publisher(.init(name: "k", tenant: "acme")))
        #expect(keys.authenticate(authorization: "Bearer secre") == .unauthorized("unknown API key"))
        #expect(keys.authenticate(authorization: nil) != .publisher(.anonymous))
        #expect(PublisherKeys.hash(key: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func authConfigIsCheckedWhenLoaded() throws {
        let config = try HubConfig.load(yaml: """
            auth:
              required: true
              api_keys:
                - name: mes
                  hash: "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                  tenant: acme
                  entity_types: [machine]
                  lines: [Line-2]
              ingest_events_per_second: 50
            server:
              max_event_bytes: 1000
            websocket:
              max_messages_per_second: 5
            """, environment: ["STATUSHUB_AUTH_JWT_HS256_SECRET": String(repeating: "7", count: 32)])
        #expect(config.auth.required && config.auth.apiKeys.first?.entityTypes == ["machine"])
        #expect(config.auth.jwtHs256Secret == String(repeating: "7", count: 32) && config.server.maxEventBytes == 1000)
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "auth:\n  api_keys:\n    - {name: x, hash: nothex}\n") }
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "auth:\n  jwt_hs256_secret: short\n") }
        #expect(throws: ConfigError.self) {
            try HubConfig.load(yaml: "auth:\n  api_keys:\n    - {name: x, hash: \(PublisherKeys.hash(key: "a")), entity_types: [robot]}\n")
        }
    }
}
