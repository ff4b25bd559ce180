import Foundation
import StatusHubCore
import Testing

/// Faults done for real: a hub process killed with SIGKILL, a hub process stopped with SIGTERM.
@Suite("Node failures")
struct NodeFailureTests {
    @Test func clientsOfAKilledNodeResumeOnAnotherAndLoseNothing() async throws {
        try await withRedisServer { redis in
            let nodeA = try await HubProcess.start(redisURL: redis.url)
            defer { nodeA.kill9() }
            try await withHub(redisURL: redis.url) { nodeB in
                let socket = try await TestSocket(port: nodeA.port)
                try await socket.subscribe(["resource-status"])

                // A publisher on node B keeps going while node A dies under its subscriber.
                let publisher = Task { () -> [String] in
                    var acknowledged: [String] = []
                    for batch in 0..<30 {
                        let reply = try await HTTP.post(port: nodeB.port, events: (0..<10).map { SampleEvents.machineStatus("M-\(batch)-\($0)") })
                        acknowledged += (reply.json["accepted"]?.arrayValue ?? []).compactMap { $0["event_id"]?.stringValue }
                        if batch == 10 { nodeA.kill9() }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    return acknowledged
                }
                var received: [String] = []
                // Five silent seconds mean node A is gone; the first event may take longer on a starved machine.
                var silence: Duration = .seconds(30)
                while let event = try? await socket.nextEvent(timeout: silence) {
                    if let id = event["event_id"]?.stringValue {
                        received.append(id)
                        silence = .seconds(5)
                    }
                }
                let acknowledged = try await publisher.value
                let resumeFrom = try #require(received.last, "the subscriber saw nothing before node A died")

                // Reconnect to node B and resume where node A left off.
                let again = try await TestSocket(port: nodeB.port)
                again.send(#"{"op":"subscribe","channels":["resource-status"],"since":"\#(resumeFrom)"}"#)
                #expect(try await again.next()["op"] == .string("subscribed"))
                while Set(received).count < Set(acknowledged).count, let event = try? await again.nextEvent(timeout: .seconds(5)) {
                    if let id = event["event_id"]?.stringValue { received.append(id) }
                }
                let lost = Set(acknowledged).subtracting(received)
                let duplicates = received.count - Set(received).count
                print("node killed: acknowledged \(acknowledged.count), received \(received.count), lost \(lost.count), duplicates \(duplicates)")
                #expect(acknowledged.count == 300)
                #expect(lost.isEmpty)
                #expect(duplicates == 0)
                #expect(received.map { EventID($0)! } == received.map { EventID($0)! }.sorted())
                _ = await again.close()
            }
        }
    }

    @Test func sigtermClosesSocketsWith1001AfterDelivering() async throws {
        try await withRedisServer { redis in
            let node = try await HubProcess.start(redisURL: redis.url)
            defer { node.kill9() }
            let socket = try await TestSocket(port: node.port)
            try await socket.subscribe(["resource-status"])
            let reply = try await HTTP.post(port: node.port, events: (0..<100).map { SampleEvents.machineStatus("M-\($0)") })
            #expect(reply.status == 202)
            async let status = node.terminate()
            var received = 0
            while received < 100, (try? await socket.nextEvent(timeout: .seconds(5))) != nil { received += 1 }
            let close = try await socket.closedByHub()
            #expect(received == 100)
            #expect(close?.closeCode == .goingAway)
            #expect(await status == 0)
        }
    }
}
