import Foundation
import StatusHubCore
@testable import StatusHubServer
import Synchronization
import Testing

/// The memory engine's bounds: history by bytes as well as count, idempotency keys forgotten in window order, and a
/// mass expiry paced so that dashboards reading at full speed keep up.
@Suite("Memory engine bounds")
struct MemoryEngineBoundsTests {
    @Test func historyIsBoundedByBytes() async throws {
        try await withEngine(.memory, configure: { $0.memory.historyMaxBytes = 20_000 }) { engine, _ in
            var ids: [EventID] = []
            for start in stride(from: 0, to: 200, by: 50) {
                ids += try await engine.append((start..<start + 50).map {
                    // Not running, so no live counter adds events of its own to the history.
                    SampleEvents.validated(SampleEvents.machineStatus("M-\($0)", "idle", extra: #","note":"\#(String(repeating: "x", count: 200))""#))
                }).map(\.id)
            }
            #expect(try await engine.history(after: ids[0], limit: 1_000) == nil)
            let retainedFrom = try #require(try await firstPlaceable(ids, engine))
            let retained = try #require(try await engine.history(after: ids[retainedFrom], limit: 1_000))
            #expect(retained.reduce(0) { $0 + $1.json.count } <= 20_000)
            #expect(retained.count == 199 - retainedFrom)
            #expect(retained.count > 10)
        }
    }

    private func firstPlaceable(_ ids: [EventID], _ engine: any Engine) async throws -> Int? {
        for (index, id) in ids.enumerated() where try await engine.history(after: id, limit: 1) != nil { return index }
        return nil
    }

    @Test func idempotencyKeysAreForgottenAfterTheirWindow() async throws {
        try await withEngine(.memory, configure: { $0.server.idempotencyWindowSeconds = 3 }) { engine, _ in
            func keyed(_ key: String) -> ValidatedEvent {
                SampleEvents.validated(#"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-1","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"running"},"metadata":{"source":"mes","triggered_by":"system"},"idempotency_key":"\#(key)"}"#)
            }
            let started = ContinuousClock.now
            let first = try await engine.append((0..<2_000).map { keyed("k-\($0)") })
            let appended = ContinuousClock.now
            let retried = try await engine.append([keyed("k-7")])
            // Within the window (unless a loaded machine took longer than it to get here): the first id again.
            if ContinuousClock.now - started < .seconds(3) { #expect(retried == [Appended(id: first[7].id, duplicate: true)]) }
            // Past the window of the last key stored (a loaded machine may take a while over 2,000 appends), and one
            // expiry pass more.
            try await Task.sleep(until: appended.advanced(by: .milliseconds(3_600)))
            let again = try await engine.append([keyed("k-7"), keyed("k-1999")])
            #expect(again.allSatisfy { !$0.duplicate })
        }
    }

    /// One expiry pass publishes at most `staleEventsPerPass` stale events; the rest follow on the next passes, in
    /// deadline order, none lost and none twice.
    @Test func anExpiryPassIsPaced() async throws {
        let engine = MemoryEngine(config: HubConfig())
        let sink = CollectingSink()
        let runner = Task { try await engine.run(delivering: sink) }
        defer { runner.cancel() }
        while !engine.isReady { try await Task.sleep(for: .milliseconds(5)) }
        _ = try await engine.append((0..<1_200).map { SampleEvents.validated(SampleEvents.machineStatus("M-\($0)")) })
        let later = ContinuousClock.now.advanced(by: .seconds(400))
        let pass = MemoryEngine.staleEventsPerPass
        engine.expire(now: later)
        #expect(sink.received.filter(\.isStale).count == pass)
        engine.expire(now: later)
        #expect(sink.received.filter(\.isStale).count == 2 * pass)
        engine.expire(now: later)
        engine.expire(now: later)
        let stale = sink.received.filter(\.isStale)
        #expect(stale.count == 1_200)
        #expect(Set(stale.map(\.entityKey)).count == 1_200)
        // Each notice took its state's place, once.
        let listed = try await engine.snapshot(matching: [try ChannelPattern(parsing: "machine:*")]).events
        #expect(listed.count == 1_200 && listed.allSatisfy(\.isStale))
    }

    /// 3,000 machines expire together (stored by one request, so at one instant); a dashboard reads every one of their
    /// stale events, none lost, none twice, its connection kept. The pacing itself is `anExpiryPassIsPaced`'s to show:
    /// over loopback the kernel's socket buffers take even an unpaced burst of 3,000 from a reader at full speed (tried:
    /// this test passes with the pacing removed). The outbox holds three passes, so that a test client descheduled for
    /// most of a second in a starved full-suite run is still a healthy dashboard (one such run closed a 600-frame one).
    @Test func aMassExpiryReachesADashboardWhole() async throws {
        try await withHub(engine: .memory, configure: {
            // Long enough for the one big POST and the subscribe to finish first on a loaded machine.
            $0.cacheTTL.machine = 8
            $0.websocket.outboxCapacity = 1_500
            $0.server.maxBatchEvents = 5_000
            $0.server.maxBodyBytes = 8 << 20
        }) { hub in
            let reply = try await HTTP.post(port: hub.port, events: (0..<3_000).map { SampleEvents.machineStatus("M-\($0)") })
            #expect(reply.status == 202)
            let socket = try await TestSocket(port: hub.port)
            try await socket.subscribe(["machine:*"])
            var stale = Set<String>()
            var received = 0
            while stale.count < 3_000 {
                let event: StoredEventJSON
                do {
                    event = try await socket.nextEvent(timeout: .seconds(20))
                } catch {
                    let closeFrame = await socket.close()
                    Issue.record("after \(stale.count) stale events: \(error); the hub's close frame: \(String(describing: closeFrame))")
                    return
                }
                #expect(event["event_type"] == .string("status_stale"))
                stale.insert(event["entity_id"]?.stringValue ?? "")
                received += 1
            }
            #expect(received == 3_000)
            _ = await socket.close()
        }
    }
}
