import Foundation
import StatusHubCore
@testable import StatusHubServer
import Testing

@Suite("Latency against the catalog's budgets: hub measurement, client reports, GET /v1/slo")
struct LatencyTelemetryTests {
    @Test func receivedAtIsReadAsFoundationReadsIt() throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for text in ["2025-11-18T14:23:45.678Z", "2000-02-29T00:00:00.000Z", "2026-12-31T23:59:59.999Z", "1999-01-01T12:00:00.5Z"] {
            let parsed = try #require(LatencyTelemetry.parseUTC(Array(text.utf8)[...]))
            let expected = try #require(formatter.date(from: text))
            #expect(abs(parsed.timeIntervalSince(expected)) < 0.0005, "\(text)")
        }
        let json = Array(#"{"event_id":"1-0","data":{"received_at":"decoy"},"received_at":"2025-11-18T14:23:45.678Z","timestamp":"x"}"#.utf8)
        #expect(LatencyTelemetry.receivedAt(in: json) == formatter.date(from: "2025-11-18T14:23:45.678Z"))
    }

    @Test(arguments: EngineKind.allCases)
    func hubAndClientFiguresReachSLOAndMetrics(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let catalog = try await HTTP.get(port: hub.port, "/v1/catalog").json
            let budgets = catalog["categories"]?.arrayValue?.compactMap { c in c["latency_budget_ms"].map { (c["name"]!.stringValue!, $0) } } ?? []
            #expect(budgets.contains { $0.0 == "resource-status" && $0.1 == .number(500) })
            #expect(budgets.contains { $0.0 == "idle-time-predictions" && $0.1 == .number(3000) })

            let socket = try await TestSocket(port: hub.port)
            try await socket.subscribe(["resource-status"])
            _ = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-1"), SampleEvents.machineStatus("M-2")])
            _ = try await socket.nextEvent()
            _ = try await socket.nextEvent()

            socket.send(#"{"op":"report","id":"l","samples_ms":{"resource-status":[120,480,900],"alerts":[20]}}"#)
            let reported = try await socket.next(op: "reported")
            #expect(reported["samples"] == .number(4) && reported["id"] == .string("l"))
            socket.send(#"{"op":"report","id":"x","samples_ms":{"teleport":[1]}}"#)
            let unknown = try await socket.next(op: "error")
            #expect(unknown["code"] == .string("invalid_message") && unknown["message"]?.stringValue?.contains("unknown category 'teleport'") == true)
            socket.send(#"{"op":"report","samples_ms":{"alerts":[-1]}}"#)
            #expect(try await socket.next(op: "error")["code"] == .string("invalid_message"))

            let slo = try await HTTP.get(port: hub.port, "/v1/slo").json
            #expect(slo["window_seconds"] == .number(600))
            let status = try #require(slo["categories"]?.arrayValue?.first { $0["category"] == .string("resource-status") })
            #expect(status["budget_ms"] == .number(500))
            #expect(status["hub"]?["count"] == .number(2))
            #expect(status["clients"]?["count"] == .number(3) && status["clients"]?["within_budget"] == .number(2))
            #expect(status["clients"]?["over_budget"] == .number(1))

            let metrics = String(decoding: try await HTTP.get(port: hub.port, "/metrics").body, as: UTF8.self)
            #expect(metrics.contains(#"statushub_client_over_budget_total{category="resource-status"} 1"#))
            #expect(metrics.contains(#"statushub_client_latency_seconds_count{category="resource-status"} 3"#))
            #expect(metrics.contains(#"statushub_delivery_latency_seconds_count{category="resource-status"} 2"#))
            _ = await socket.close()
        }
    }

    @Test func sloAndTheDashboardFollowTheReadRules() async throws {
        try await withHub(engine: .memory, configure: {
            $0.auth.required = true
            $0.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            #expect(try await HTTP.get(port: hub.port, "/v1/slo").status == 401)
            let token = try await TokenIssuer().hs256(patterns: ["line:Line-2:*"])
            #expect(try await HTTP.get(port: hub.port, "/v1/slo?token=\(token)").status == 200)
            // The page itself holds no plant data: it loads without a token and asks for one.
            let page = try await HTTP.get(port: hub.port, "/")
            #expect(page.status == 200)
            #expect(String(decoding: page.body, as: UTF8.self).contains("<script src=\"/dashboard.js\"></script>"))
            #expect(page.headers["content-security-policy"]?.contains("default-src 'self'") == true)
            #expect(try await HTTP.get(port: hub.port, "/dashboard.js").status == 200)
            #expect(try await HTTP.get(port: hub.port, "/dashboard.css").status == 200)
        }
    }
}
