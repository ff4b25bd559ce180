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

@Suite("Ordering across publishers and nodes")
struct OrderingTests {
    /// Four publishers, two per node, write the same entities concurrently; subscribers on both nodes must see
    /// every entity's events in one order — the order the engine accepted them — and each publisher's own
    /// events for an entity in the order it sent them.
    @Test func perEntityOrderHoldsAcrossPublishersAndNodes() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url) { nodeA in
                try await withHub(redisURL: redis.url) { nodeB in
                    let atA = try await TestSocket(port: nodeA.port)
                    let atB = try await TestSocket(port: nodeB.port)
                    try await atA.subscribe(["machine:*"])
                    try await atB.subscribe(["machine:*"])
                    let perPublisher = 40
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for publisher in 0..<4 {
                            let port = publisher % 2 == 0 ? nodeA.port : nodeB.port
                            group.addTask {
                                for sequence in 0..<perPublisher {
                                    let event = SampleEvents.machineStatus("M-\(sequence % 3)", extra: #","publisher":\#(publisher),"sequence":\#(sequence)"#)
                                    let status = try await HTTP.post(port: port, event: event).status
                                    #expect(status == 202)
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    var orders: [[String]] = []
                    for socket in [atA, atB] {
                        var seen: [(entity: String, id: EventID, publisher: Int, sequence: Int)] = []
                        for count in 0..<(4 * perPublisher) {
                            guard let event = try? await socket.nextEvent() else {
                                Issue.record(Comment(rawValue: "only \(count) of \(4 * perPublisher) events arrived"))
                                break
                            }
                            seen.append((
                                event["entity_id"]?.stringValue ?? "", EventID(event["event_id"]?.stringValue ?? "")!,
                                Int(event["data"]?["publisher"]?.numberValue ?? -1), Int(event["data"]?["sequence"]?.numberValue ?? -1)))
                        }
                        #expect(seen.map(\.id) == seen.map(\.id).sorted())
                        for entity in ["M-0", "M-1", "M-2"] {
                            for publisher in 0..<4 {
                                let sequences = seen.filter { $0.entity == entity && $0.publisher == publisher }.map(\.sequence)
                                #expect(sequences == sequences.sorted())
                            }
                        }
                        orders.append(seen.map(\.id.description))
                    }
                    // Both nodes delivered the same events in the same order.
                    #expect(orders[0] == orders[1])
                    _ = await atA.close()
                    _ = await atB.close()
                }
            }
        }
    }
}
