import Foundation
import StatusHubCore
import Testing

/// A request names at most `websocket.max_subscriptions` distinct patterns wherever it names them in its URL —
/// `GET /v1/state?pattern=…`, `GET /v1/sse?channels=…`, `GET /v1/ws?channels=…` — a repeat counting once: each pattern
/// costs a pass over the cache on the event loop, and 7,500 of them held a loop (and `/health`) for a second.
@Suite("Patterns one request may name")
struct PatternLimitTests {
    static let limit = HubConfig.WebSocket().maxSubscriptions

    static func machines(_ count: Int) -> [String] { (0..<count).map { "machine:M-\($0)" } }

    @Test func stateReadsAreHeldToTheLimitAndRepeatsCountOnce() async throws {
        try await withHub(engine: .memory) { hub in
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1"))

            let over = Self.machines(Self.limit + 1).map { "pattern=\($0)" }.joined(separator: "&")
            let refused = try await HTTP.get(port: hub.port, "/v1/state?\(over)")
            #expect(refused.status == 400, "\(refused.text)")
            #expect(refused.json["error"]?["field"]?.stringValue == "pattern", "\(refused.text)")
            #expect(refused.json["error"]?["reason"]?.stringValue?.contains("at most \(Self.limit)") == true, "\(refused.text)")

            // The limit's worth of distinct patterns, and one of them a thousand times more: taken, each event once.
            let repeated = (Self.machines(Self.limit) + Array(repeating: "machine:M-1", count: 1000)).map { "pattern=\($0)" }
            let taken = try await HTTP.get(port: hub.port, "/v1/state?\(repeated.joined(separator: "&"))")
            #expect(taken.status == 200, "\(taken.text)")
            #expect(taken.json["events"]?.arrayValue?.count == 1, "\(taken.text)")
        }
    }

    @Test func urlSubscriptionsAreHeldToTheLimit() async throws {
        try await withHub(engine: .memory) { hub in
            let over = Self.machines(Self.limit + 1).joined(separator: ",")
            let sse = try await SSEClient(port: hub.port, path: "/v1/sse?channels=\(over)")
            #expect(sse.status == 400)
            let body = try await sse.errorBody()
            #expect(body.contains(#""field":"channels""#) && body.contains("at most \(Self.limit)"), "\(body)")

            let upgrade = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(path: "/v1/ws?channels=\(over)")
                return socket.responseStatus()
            }
            #expect(upgrade.status == 400 && upgrade.text.contains(#""field":"channels""#), "\(upgrade.text)")

            // Repeats count once: the limit's worth, each named twice, opens the stream.
            let twice = (Self.machines(Self.limit) + Self.machines(Self.limit)).joined(separator: ",")
            let opened = try await SSEClient(port: hub.port, path: "/v1/sse?channels=\(twice)")
            #expect(opened.status == 200)
            opened.close()
        }
    }
}
