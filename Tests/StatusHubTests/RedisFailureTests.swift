import Foundation
import StatusHubCore
import StatusHubRedis
import Testing

/// Redis faults done for real, seen from the hub's users: an MES posting over HTTP and a dashboard on a WebSocket.
@Suite("Redis failures, end to end")
struct RedisFailureTests {
    /// redis-server (AOF, fsync always) is killed with SIGKILL while events stream in, and restarted. Whatever
    /// ingest acknowledged must reach the dashboard — live, by the node's catch-up, or by resuming with `since`.
    @Test func redisKilledMidStreamLosesNothingAcknowledged() async throws {
        try await withRedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"]) { redis in
            try await withHub(redisURL: redis.url) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["resource-status"])
                let collector = Task { () -> [String] in
                    var received: [String] = []
                    while let event = try? await socket.nextEvent(timeout: .seconds(8)) {
                        if let id = event["event_id"]?.stringValue { received.append(id) }
                    }
                    return received
                }
                var acknowledged: [String] = []
                var refused = 0
                var sawNotReady = false
                // Down from batch 20 to 35; then on until 20 batches were acknowledged after the restart (how soon
                // the hub reconnects varies with the machine's load), within a bound.
                var batch = 0
                var acknowledgedAfterRestart = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while batch < 60 || (acknowledgedAfterRestart < 20 && ContinuousClock.now < deadline) {
                    defer { batch += 1 }
                    if batch == 20 { await redis.kill9() }
                    if batch == 20 { sawNotReady = (try? await HTTP.get(port: hub.port, "/ready"))?.status == 503 }
                    if batch == 35 { try await redis.restart() }
                    let reply = try await HTTP.post(port: hub.port, events: (0..<5).map { SampleEvents.machineStatus("M-\(batch)-\($0)") })
                    switch reply.status {
                    case 202:
                        acknowledged += (reply.json["accepted"]?.arrayValue ?? []).compactMap { $0["event_id"]?.stringValue }
                        if batch >= 35 { acknowledgedAfterRestart += 1 }
                    case 503:
                        refused += 1
                        #expect(reply.headers["retry-after"] != nil)
                    default: Issue.record(Comment(rawValue: "unexpected \(reply.status): \(reply.text)"))
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                var received = await collector.value
                // Anything the live connection did not get, a resume from its last event must.
                if let last = received.last, !Set(acknowledged).isSubset(of: received) {
                    let again = try await TestSocket(port: hub.port)
                    again.send(#"{"op":"subscribe","channels":["resource-status"],"since":"\#(last)"}"#)
                    _ = try await again.next()
                    while let event = try? await again.nextEvent(timeout: .seconds(3)) {
                        if let id = event["event_id"]?.stringValue { received.append(id) }
                    }
                    _ = await again.close()
                }
                let lost = Set(acknowledged).subtracting(received)
                let duplicates = received.count - Set(received).count
                print("redis killed (AOF): acknowledged \(acknowledged.count), refused requests \(refused), received \(Set(received).count), lost \(lost.count), duplicates \(duplicates)")
                #expect(sawNotReady)
                #expect(refused > 0)
                #expect(acknowledged.count >= 200)
                #expect(lost.isEmpty)
                #expect(duplicates == 0)
            }
        }
    }

    /// A Redis at `maxmemory` with `noeviction` is connected and refuses every write: `/ready` says so (503 naming
    /// `engine`) while ingest is 503, and is 200 again once there is room.
    @Test func readyIs503WhileAFullRedisRefusesWrites() async throws {
        try await withRedisServer(extraArguments: ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]) { redis in
            try await withHub(redisURL: redis.url) { hub in
                #expect(try await HTTP.get(port: hub.port, "/ready").status == 200)
                // Fill it from the side, the way other tenants of a shared Redis would.
                let filler = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                // Big values first, then small ones: a refused command's own bytes leave room behind them.
                var stored = 0
                for size in [100_000, 100] {
                    let value = String(repeating: "x", count: size)
                    while stored < 100_000, try await filler.send(["SET", "filler:\(stored)", value]).errorMessage == nil { stored += 1 }
                }
                #expect(stored < 100_000, "4 MB of maxmemory never filled")

                let refused = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-FULL"))
                #expect(refused.status == 503, "\(refused.text)")
                let ready = try await HTTP.get(port: hub.port, "/ready")
                #expect(ready.status == 503)
                #expect(ready.json["error"]?["field"]?.stringValue == "engine")
                #expect(ready.json["error"]?["reason"]?.stringValue?.contains("OOM") == true, "\(ready.text)")

                _ = try await filler.send(["FLUSHDB"])
                #expect(try await HTTP.get(port: hub.port, "/ready").status == 200)
                #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-FULL")).status == 202)
                await filler.close()
            }
        }
    }
}
