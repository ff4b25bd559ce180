import Foundation
import StatusHubCore
import Testing

/// `server.trusted_proxies`: behind a reverse proxy or load balancer the per-address connection limit counts the
/// client the proxy names, not the proxy; nobody else can choose the address they are counted under.
@Suite struct TrustedProxyTests {
    @Test func addressRangesMatchTheirAddressesOnly() throws {
        let tens = try #require(AddressRange("10.0.0.0/8"))
        #expect(tens.contains("10.200.3.4") && !tens.contains("11.0.0.1") && !tens.contains("fd00::1") && !tens.contains("nonsense"))
        #expect(tens.contains("::ffff:10.1.2.3"), "an IPv4 peer of a dual-stack socket")
        let one = try #require(AddressRange("192.0.2.7"))
        #expect(one.contains("192.0.2.7") && !one.contains("192.0.2.8"))
        let odd = try #require(AddressRange("192.0.2.64/27"))
        #expect(odd.contains("192.0.2.95") && !odd.contains("192.0.2.96") && !odd.contains("192.0.2.63"))
        let v6 = try #require(AddressRange("fd00::/8"))
        #expect(v6.contains("fd12:3456::1") && !v6.contains("fe80::1") && !v6.contains("10.0.0.1"))
        #expect(try #require(AddressRange("::1")).contains("::1"))
        #expect(try #require(AddressRange("0.0.0.0/0")).contains("203.0.113.9"))
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0", "proxy.local", "", "10.0.0.0/-1"] {
            #expect(AddressRange(bad) == nil, "\(bad)")
        }
    }

    @Test(arguments: [
        // An untrusted peer is the client, whatever it sends.
        ("198.51.100.1", ["203.0.113.7"], [], "198.51.100.1"),
        // A trusted proxy names the client.
        ("10.0.0.2", ["203.0.113.7"], [], "203.0.113.7"),
        ("10.0.0.2", ["203.0.113.7:51234"], [], "203.0.113.7"),
        // Through two trusted proxies: the first untrusted address from the right.
        ("10.0.0.2", ["203.0.113.7, 10.0.0.9"], [], "203.0.113.7"),
        ("10.0.0.2", ["203.0.113.7", "10.0.0.9"], [], "203.0.113.7"),
        // What the client wrote left of the address its proxy appended changes nothing.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.7"], [], "203.0.113.7"),
        // Every address trusted: the leftmost.
        ("10.0.0.2", ["10.0.0.5, 10.0.0.9"], [], "10.0.0.5"),
        // No header: the proxy itself.
        ("10.0.0.2", [], [], "10.0.0.2"),
        // RFC 7239, read only without X-Forwarded-For.
        ("10.0.0.2", [], [#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9"#], "2001:db8:cafe::17"),
        ("10.0.0.2", [], ["For=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        ("10.0.0.2", ["203.0.113.7"], ["for=192.0.2.60"], "203.0.113.7"),
        ("::ffff:10.0.0.2", ["203.0.113.7"], [], "203.0.113.7"),
    ] as [(String, [String], [String], String)])
    func theClientIsTheFirstUntrustedAddressFromTheRight(peer: String, forwardedFor: [String], forwarded: [String], client: String) {
        let proxies = TrustedProxies(["10.0.0.0/8"].compactMap(AddressRange.init))
        #expect(proxies.clientAddress(peer: peer, forwardedFor: forwardedFor, forwarded: forwarded) == client)
    }

    @Test func aConfigNamesTheEntryThatIsNoAddress() throws {
        #expect(try HubConfig.load(yaml: "server: {trusted_proxies: [10.0.0.0/8, '::1']}").server.proxies.ranges.count == 2)
        let environment = try HubConfig.load(yaml: "", environment: ["STATUSHUB_SERVER_TRUSTED_PROXIES": "[127.0.0.1, 10.0.0.0/8]"])
        #expect(environment.server.trustedProxies == ["127.0.0.1", "10.0.0.0/8"])
        do {
            _ = try HubConfig.load(yaml: "server: {trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]}")
            Issue.record("a range with a 33-bit prefix was taken")
        } catch let error as ConfigError {
            #expect(error.description.contains("server.trusted_proxies[1]: '10.0.0.0/33' is not an address or a CIDR range"), "\(error)")
        }
    }

    /// Two dashboards per address: through a trusted proxy (the test's own 127.0.0.1) each forwarded client gets its
    /// two, over WebSocket and SSE alike; a third from one of them is refused (4429 / 429), and one from another
    /// client is not. Without the setting the proxy's own address is counted, the headers ignored.
    @Test func dashboardsBehindATrustedProxyAreCountedByTheClientItNames() async throws {
        try await withHub(engine: .memory, configure: {
            $0.server.maxConnectionsPerAddress = 2
            $0.server.trustedProxies = ["127.0.0.1"]
        }) { hub in
            let first = try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "203.0.113.1"])
            let second = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts", headers: ["X-Forwarded-For": "203.0.113.1"])
            #expect(second.status == 200)
            #expect(try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "203.0.113.1"]).outcome == 4429)
            let refusedStream = try await SSEClient(port: hub.port, path: "/v1/sse?channels=alerts", headers: ["X-Forwarded-For": "203.0.113.1"])
            #expect(refusedStream.status == 429)
            let other = try await ForwardedDashboard.open(port: hub.port, headers: ["Forwarded": "for=203.0.113.2"])
            #expect(other.outcome == nil)
            // A client cannot choose its address by writing one left of the one the proxy appended.
            #expect(try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "198.51.100.9, 203.0.113.1"]).outcome == 4429)
            for dashboard in [first, other] { dashboard.close() }
            second.close()
        }
        try await withHub(engine: .memory, configure: { $0.server.maxConnectionsPerAddress = 2 }) { hub in
            let first = try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "203.0.113.1"])
            let second = try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "203.0.113.2"])
            #expect([first.outcome, second.outcome] == [nil, nil])
            #expect(try await ForwardedDashboard.open(port: hub.port, headers: ["X-Forwarded-For": "203.0.113.3"]).outcome == 4429)
            for dashboard in [first, second] { dashboard.close() }
        }
    }

    /// Through a real nginx set up as `docs/operations.md` says (upgrades passed on, `X-Forwarded-For` appended):
    /// dashboards from two client addresses, 127.0.0.2 and 127.0.0.3, all reach the hub from nginx's 127.0.0.1. With
    /// nginx trusted each client gets its two, the hub's 4429 for a third comes back through nginx, and events
    /// flow; untrusted, nginx's address holds them all and the second client is refused.
    @Test func throughNginxEachClientIsCountedByItsOwnAddress() async throws {
        try await withHub(engine: .memory, configure: {
            $0.server.maxConnectionsPerAddress = 2
            $0.server.trustedProxies = ["127.0.0.1"]
        }) { hub in
            try await withNginx(inFrontOf: hub.port) { proxy in
                var open: [ForwardedDashboard] = []
                for source in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
                    open.append(try await ForwardedDashboard.open(port: proxy.port, from: source))
                }
                #expect(open.map(\.outcome) == [nil, nil, nil, nil])
                #expect(try await ForwardedDashboard.open(port: proxy.port, from: "127.0.0.2").outcome == 4429)
                #expect(try await HTTP.post(port: proxy.port, event: SampleEvents.alert("M-NGINX")).status == 202)
                for dashboard in open { #expect(try await dashboard.receives("M-NGINX")) }
                for dashboard in open { dashboard.close() }
            }
        }
        try await withHub(engine: .memory, configure: { $0.server.maxConnectionsPerAddress = 2 }) { hub in
            try await withNginx(inFrontOf: hub.port) { proxy in
                let first = try await ForwardedDashboard.open(port: proxy.port, from: "127.0.0.2")
                let second = try await ForwardedDashboard.open(port: proxy.port, from: "127.0.0.2")
                #expect(try await ForwardedDashboard.open(port: proxy.port, from: "127.0.0.3").outcome == 4429)
                for dashboard in [first, second] { dashboard.close() }
            }
        }
    }
}

/// A WebSocket subscribed to `alerts` in its URL, from the loopback address `source`, with `headers` (what a proxy
/// would add): admitted (its `subscribed` came, `outcome` nil) or refused (the close code).
private final class ForwardedDashboard: @unchecked Sendable {
    private let socket: RawSocket
    private(set) var outcome: UInt16?
    private var received: [UInt8] = []

    private init(socket: RawSocket) { self.socket = socket }

    static func open(port: Int, from source: String? = nil, headers: [String: String] = [:]) async throws -> ForwardedDashboard {
        let dashboard = ForwardedDashboard(socket: try RawSocket(port: port, from: source))
        try dashboard.socket.upgrade(path: "/v1/ws?channels=alerts", headers: headers)
        try await RawSocket.offPool { [dashboard] in
            let bytes = dashboard.socket.read(timeout: 10) {
                RawSocket.closeCode(in: $0) != nil || $0.firstRange(of: Array(#""op":"subscribed""#.utf8)) != nil
            }.bytes
            dashboard.outcome = RawSocket.closeCode(in: bytes)
            if dashboard.outcome == nil, bytes.firstRange(of: Array(#""op":"subscribed""#.utf8)) == nil {
                throw TestSocket.Timeout(waitingFor: "a subscribed or a close frame; got \(String(decoding: bytes, as: UTF8.self))")
            }
        }
        return dashboard
    }

    /// Whether `text` arrives within 10 s.
    func receives(_ text: String) async throws -> Bool {
        try await RawSocket.offPool { [self] in
            received += socket.read(timeout: 10) { $0.firstRange(of: Array(text.utf8)) != nil }.bytes
            return received.firstRange(of: Array(text.utf8)) != nil
        }
    }

    func close() { socket.reset() }
}
