import Foundation
import StatusHubCore
import Testing

@Suite("Several hub nodes on one Redis")
struct TwoNodeTests {
    @Test func eventIngestedAtOneNodeReachesSubscribersOfAnother() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url) { nodeA in
                try await withHub(redisURL: redis.url) { nodeB in
                    let atB = try await TestSocket(port: nodeB.port)
                    let atA = try await TestSocket(port: nodeA.port)
                    try await atB.subscribe(["line:Line-2:*"])
                    try await atA.subscribe(["line:Line-2:*"])
                    let reply = try await HTTP.post(port: nodeA.port, event: SampleEvents.machineStatus("M-203", "breakdown"))
                    #expect(reply.status == 202)
                    let id = reply.json["accepted"]?.arrayFirst?["event_id"]?.stringValue
                    #expect(try await atB.nextEvent()["event_id"]?.stringValue == id)
                    #expect(try await atA.nextEvent()["event_id"]?.stringValue == id)
                    // The write-through cache is shared too.
                    let state = try await HTTP.get(port: nodeB.port, "/v1/state/machine/M-203")
                    #expect(state.json["event_id"]?.stringValue == id)
                    // Exactly once per node, even with two nodes subscribed.
                    #expect(await atB.drain(for: .milliseconds(200)).isEmpty)
                    _ = await atA.close()
                    _ = await atB.close()
                }
            }
        }
    }
}
