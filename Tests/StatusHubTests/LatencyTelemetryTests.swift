import Foundation
import Prometheus
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

    /// A dashboard reads the share within a category's budget off the histogram's bucket at the budget, so every
    /// budget of the shipped catalog (and the default) must be a bound; under 100 ms the bounds are close enough
    /// that a delivery at 35 ms and one at 45 ms land in different buckets, both under 50 ms.
    @Test func bucketsHoldEveryBudgetAndResolveTheTensOfMilliseconds() throws {
        let catalog = try CatalogLoader.load(directory: "config/catalog")
        let telemetry = LatencyTelemetry(catalog: catalog, registry: PrometheusCollectorRegistry())
        #expect(LatencyTelemetry.buckets == LatencyTelemetry.buckets.sorted())
        for (category, milliseconds) in telemetry.budgets {
            #expect(LatencyTelemetry.buckets.contains(Double(milliseconds) / 1000), "\(category): \(milliseconds) ms is not a bound")
        }

        let category = try #require(telemetry.budgets.firstIndex { $0.category == "resource-status" })
        var tally = DeliveryTally(for: telemetry)
        let now = Date().timeIntervalSince1970
        tally.beginWrite()
        for age in [0.035, 0.045, 0.045] { tally.add(DeliveryStamp(ingest: now - age, category: UInt16(category))) }
        tally.commit()
        var text: [UInt8] = []
        telemetry.writeDeliveryHistogram(into: &text)
        let metrics = String(decoding: text, as: UTF8.self)
        // Cumulative: none by 30 ms, one by 40 ms, all three by 50 ms (the clock moved a little since `now`, not 5 ms).
        for (bound, count) in [("0.03", 0), ("0.04", 1), ("0.05", 3)] {
            #expect(metrics.contains(#"statushub_delivery_latency_seconds_bucket{category="resource-status",le="\#(bound)"} \#(count)"#))
        }
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
            #expect(status["hub"]?["count"] == .number(2))  // one subscriber, two events
            #expect(status["clients"]?["count"] == .number(3) && status["clients"]?["within_budget"] == .number(2))
            #expect(status["clients"]?["over_budget"] == .number(1))

            let metrics = try await Self.metrics(port: hub.port, once: #"statushub_delivery_latency_seconds_count{category="resource-status"} 2"#)
            #expect(metrics.contains(#"statushub_client_over_budget_total{category="resource-status"} 1"#))
            #expect(metrics.contains(#"statushub_client_latency_seconds_count{category="resource-status"} 3"#))
            _ = await socket.close()
        }
    }

    /// The hub times a delivery when its frame is handed to the socket, not when fan-out queues it: with
    /// `websocket.write_delay_ms` holding frames 600 ms before the write, no delivery is under the 500 ms status
    /// budget (measured at the queue, every one was); and each subscriber's delivery counts, not each event.
    @Test(arguments: EngineKind.allCases)
    func deliveriesAreTimedAtTheSocketWriteOncePerReceiver(_ kind: EngineKind) async throws {
        try await withHub(engine: kind, configure: { $0.websocket.writeDelayMs = 600 }) { hub in
            let first = try await TestSocket(port: hub.port)
            let second = try await TestSocket(port: hub.port)
            try await first.subscribe(["resource-status"])
            try await second.subscribe(["resource-status"])
            _ = try await HTTP.post(port: hub.port, events: [SampleEvents.machineStatus("M-1"), SampleEvents.machineStatus("M-2")])
            for socket in [first, second] {
                _ = try await socket.nextEvent()
                _ = try await socket.nextEvent()
            }
            let metrics = try await Self.metrics(port: hub.port, once: #"statushub_delivery_latency_seconds_count{category="resource-status"} 4"#)
            #expect(metrics.contains(#"statushub_delivery_latency_seconds_bucket{category="resource-status",le="0.5"} 0"#))
            #expect(metrics.contains(#"statushub_delivery_latency_seconds_bucket{category="resource-status",le="+Inf"} 4"#))
            #expect(metrics.contains(#"statushub_deliveries_over_budget_total{category="resource-status"} 4"#))
            let slo = try await HTTP.get(port: hub.port, "/v1/slo").json
            let status = try #require(slo["categories"]?.arrayValue?.first { $0["category"] == .string("resource-status") })
            #expect(status["hub"]?["count"] == .number(4) && status["hub"]?["over_budget"] == .number(4))
            _ = await first.close()
            _ = await second.close()
        }
    }

    /// Only frames that reach the socket are timed, by every writer: of three updates of one machine queued while
    /// the plain socket's frames wait for the write delay, two are conflated away and not counted; the compressed
    /// socket's and the SSE stream's writer tasks count what they write.
    @Test func onlyWrittenFramesAreTimedByEveryWriter() async throws {
        try await withHub(engine: .memory, configure: {
            $0.websocket.writeDelayMs = 300
            $0.websocket.conflateAbove = 0
        }) { hub in
            let plain = try await TestSocket(port: hub.port)
            try await plain.subscribe(["resource-status"])
            let compressed = try await TestSocket(port: hub.port, compression: true)
            try await compressed.subscribe(["resource-status"])
            let stream = try await SSEClient(port: hub.port, path: "/v1/sse?channels=resource-status")
            _ = try await stream.next(op: "subscribed")
            _ = try await HTTP.post(port: hub.port, events: ["running", "idle", "breakdown"].map { SampleEvents.machineStatus("M-1", $0) })

            let written = try await plain.nextEvent()
            #expect(written["data"]?["current_status"] == .string("breakdown"))
            let plainEvents = 1 + (await plain.drain(for: .milliseconds(500))).count { $0.contains(#""op":"event""#) }
            #expect(plainEvents == 1)
            let compressedEvents = (await compressed.drain(for: .milliseconds(100))).count { $0.contains(#""op":"event""#) }
            let streamEvents = (await stream.drain(for: 0.1)).count { $0.data.contains(#""op":"event""#) }
            #expect(compressedEvents >= 1 && streamEvents >= 1)
            let total = plainEvents + compressedEvents + streamEvents
            let metrics = try await Self.metrics(port: hub.port, once: #"statushub_delivery_latency_seconds_count{category="resource-status"} \#(total)"#)
            #expect(metrics.contains("statushub_conflated_total \(3 * 3 - total)"))
            stream.close()
            _ = await plain.close()
            _ = await compressed.close()
        }
    }

    /// `/metrics` once it contains `line`: a batch hands its deliveries over just after writing them.
    static func metrics(port: Int, once line: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            let text = String(decoding: try await HTTP.get(port: port, "/metrics").body, as: UTF8.self)
            if text.contains(line) || ContinuousClock.now > deadline {
                #expect(text.contains(line), "\(text.split(separator: "\n").filter { $0.contains("delivery_latency_seconds_count") })")
                return text
            }
            try await Task.sleep(for: .milliseconds(20))
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

            // What clients report counts for their own tenant only: another tenant's screens cannot skew it.
            let acme = try await TokenIssuer().hs256(tenant: "acme", patterns: ["*"])
            let acmeScreen = try await TestSocket(port: hub.port, path: "/v1/ws?token=\(acme)")
            acmeScreen.send(#"{"op":"report","id":"r","samples_ms":{"resource-status":[5000,5000,5000]}}"#)
            #expect(try await acmeScreen.next(op: "reported")["samples"] == .number(3))
            func clients(_ token: String) async throws -> JSONValue? {
                let slo = try await HTTP.get(port: hub.port, "/v1/slo?token=\(token)").json
                return slo["categories"]?.arrayValue?.first { $0["category"] == .string("resource-status") }?["clients"]?["count"]
            }
            #expect(try await clients(acme) == .number(3))
            #expect(try await clients(token) == .number(0))
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
