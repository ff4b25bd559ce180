import Foundation
import StatusHubCore
import StatusHubServer
import Testing

@Suite("Slow consumers")
struct SlowConsumerTests {
    @Test(arguments: EngineKind.allCases)
    func aClientThatStopsReadingIsClosedAndNobodyElseWaits(_ kind: EngineKind) async throws {
        // Heartbeats off the table (one ping in 10 minutes): in a CI run that starved this test to 87 s, the healthy
        // subscriber's connection ended early, and a late pong is the one way this test can end it besides overflow.
        try await withHub(engine: kind, configure: {
            $0.websocket.outboxCapacity = 1024
            $0.websocket.compression = false
            $0.websocket.pingIntervalSeconds = 600
        }) { hub in
            let healthy = try await TestSocket(port: hub.port)
            try await healthy.subscribe(["resource-status"])
            let stalled = try await StalledClient.connect(port: hub.port, subscribe: ["resource-status"])
            try await Task.sleep(for: .milliseconds(100))  // let the stalled subscribe land

            // Enough events (~8 MB of frames) to fill every socket buffer between the hub and the stalled client.
            let padding = String(repeating: "p", count: 700)
            let batches = 20
            let perBatch = 500
            var received = 0
            for batch in 0..<batches {
                let events = (0..<perBatch).map { SampleEvents.machineStatus("M-\(batch)-\($0)", extra: #","pad":"\#(padding)""#) }
                #expect(try await HTTP.post(port: hub.port, events: events).status == 202)
                // The healthy subscriber keeps up while the stalled one backs up.
                for _ in 0..<perBatch { _ = try await healthy.nextEvent() }
                received += perBatch
            }
            #expect(received == batches * perBatch)

            let outcome = try await RawSocket.offPool { stalled.readUntilClosed(timeout: 15) }
            #expect(outcome.closedByHub)
            // The 4001 close frame reaches it only if there was room in the socket; a client that never reads may
            // find the TCP connection simply closed.
            if let code = outcome.closeCode { #expect(code == CloseCode.slowConsumer.rawValue) }
            #expect(outcome.eventFrames < batches * perBatch)
            let metrics = try await HTTP.get(port: hub.port, "/metrics")
            #expect(metrics.text.contains("statushub_slow_consumer_closes_total 1"))
            _ = await healthy.close()
        }
    }

    /// A tenant's dashboard that falls behind gets its machines' latest states, as the default tenant's does: the
    /// conflation key was read from the category channel as written, and a tenant's (`@acme:resource-status`) never
    /// matched, so its reader was closed with 4001 where another was conflated.
    @Test func aTenantsSlowReaderIsConflatedNotClosed() async throws {
        let issuer = TokenIssuer()
        let secured = try AccessControlTests.secured(issuer)
        try await withHub(engine: .memory, configure: {
            secured(&$0)
            $0.websocket.outboxCapacity = 64
            $0.websocket.conflateAbove = 8
            $0.websocket.compression = false
            $0.websocket.pingIntervalSeconds = 600
        }) { hub in
            let token = try await issuer.hs256(tenant: "acme", patterns: ["machine:*"])
            let stalled = try await StalledClient.connect(port: hub.port, path: "/v1/ws?token=\(token)", subscribe: ["machine:*"])
            try await Task.sleep(for: .milliseconds(100))  // let the stalled subscribe land
            // ~7 MB of states of ten machines: far past the socket buffers, never past ten queued states.
            let padding = String(repeating: "p", count: 700)
            for batch in 0..<20 {
                let events = (0..<500).map { SampleEvents.machineStatus("M-\($0 % 10)", $0 % 2 == 0 ? "idle" : "running", extra: #","pad":"\#(padding)-\#(batch)""#) }
                #expect(try await AccessControlTests.post(hub.port, key: AccessControlTests.acmeKey, events).status == 202)
            }
            let outcome = try await RawSocket.offPool { stalled.readUntilClosed(timeout: 3) }
            #expect(!outcome.closedByHub, "closed with \(String(describing: outcome.closeCode))")
            let metrics = try await HTTP.get(port: hub.port, "/metrics")
            #expect(!metrics.text.contains("statushub_slow_consumer_closes_total 1"))
        }
    }

    /// A line's screen that falls behind gets the line's latest counts, as it gets its machines' latest states: every
    /// status change moves a counter, and the counter's news (not conflated before) alone overflowed a stalled
    /// reader's outbox, which was closed with 4001 though its machines' states had collapsed to ten.
    @Test(arguments: EngineKind.allCases)
    func aSlowLineScreensCountsAreConflatedNotClosed(_ kind: EngineKind) async throws {
        try await withHub(engine: kind, configure: {
            $0.websocket.outboxCapacity = 64
            $0.websocket.conflateAbove = 8
            $0.websocket.compression = false
            $0.websocket.pingIntervalSeconds = 600
        }) { hub in
            let stalled = try await StalledClient.connect(port: hub.port, subscribe: ["line:Line-2:*"])
            try await Task.sleep(for: .milliseconds(100))  // let the stalled subscribe land
            // Ten machines turning between idle and running, each change a machines_running change: ~7 MB of states
            // and thousands of counts, far past the socket buffers.
            let padding = String(repeating: "p", count: 700)
            for batch in 0..<20 {
                let events = (0..<500).map {
                    SampleEvents.machineStatus("M-\($0 % 10)", ($0 / 10 + batch) % 2 == 0 ? "idle" : "running", extra: #","pad":"\#(padding)""#)
                }
                #expect(try await HTTP.post(port: hub.port, events: events).status == 202)
            }
            let metrics = try await HTTP.get(port: hub.port, "/metrics")
            let counters = try await HTTP.get(port: hub.port, "/v1/counters?line=Line-2")
            let outcome = try await RawSocket.offPool { stalled.readUntilClosed(timeout: 3) }
            #expect(!outcome.closedByHub, "closed with \(String(describing: outcome.closeCode))")
            #expect(!metrics.text.contains("statushub_slow_consumer_closes_total 1"))
            #expect(counters.text.contains("machines_running"), "\(counters.text)")
        }
    }
}
