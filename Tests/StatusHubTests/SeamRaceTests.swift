import Foundation
import StatusHubCore
import Testing

/// Subscribers that ask for a snapshot while publishers keep writing: what the snapshot holds must never be
/// delivered again live (a duplicate), nor be followed by an older state of the same entity (a regression), and
/// nothing after it may be missing. On Redis, pub/sub lags behind the snapshot's reads, so events the snapshot
/// already reflects reach the node after the subscribe was answered: the race this suite provokes.
@Suite("Snapshot seam under concurrent publishing")
struct SeamRaceTests {
    static let entities = 300
    static let publishers = 4
    static let roundsPerPublisher = 60
    static let subscribers = 10

    @Test(arguments: EngineKind.allCases)
    func snapshotSubscribersGetNoDuplicateNoRegressionNoGap(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let port = hub.port
            // Publisher p owns the entities p, p + 4, …; each round sends one event per owned entity with the
            // next version, so per entity the versions rise with the event ids.
            let publishing = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for publisher in 0..<Self.publishers {
                        group.addTask {
                            let owned = Array(stride(from: publisher, to: Self.entities, by: Self.publishers))
                            for round in 1...Self.roundsPerPublisher {
                                let events = owned.map { SampleEvents.machineStatus("E-\($0)", extra: #","version":\#(round)"#) }
                                let reply = try await HTTP.post(port: port, events: events)
                                #expect(reply.status == 202)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            // Subscribers join at staggered times while the publishers run.
            var sockets: [TestSocket] = []
            var snapshots: [[String: Int]] = []
            // Half subscribe to everything, half to a few exact entity addresses: those snapshots are one direct read,
            // so they finish while a burst of the same entities' events is still on its way through pub/sub.
            var watched: [Set<String>] = []
            for subscriber in 0..<Self.subscribers {
                try await Task.sleep(for: .milliseconds(40))
                let socket = try await TestSocket(port: port)
                let entities = subscriber.isMultiple(of: 2)
                    ? Set((0..<Self.entities).map { "E-\($0)" })
                    : Set((0..<Self.entities).filter { $0 % Self.subscribers == subscriber }.map { "E-\($0)" })
                let patterns = entities.count == Self.entities ? ["machine:*"] : entities.sorted().map { "machine:\($0)" }
                let snapshot = try await socket.subscribe(patterns, snapshot: true)
                watched.append(entities)
                var versions: [String: Int] = [:]
                for event in snapshot { versions[try Self.entity(event)] = try Self.version(event) }
                snapshots.append(versions)
                sockets.append(socket)
            }
            try await publishing.value

            var duplicates = 0
            var regressions = 0
            for ((socket, snapshot), entities) in zip(zip(sockets, snapshots), watched) {
                var seen = snapshot
                // Read until every entity is at its last version, failing on a quiet spell (a gap).
                while seen.count < entities.count || seen.values.contains(where: { $0 < Self.roundsPerPublisher }) {
                    let event = try await socket.nextEvent(timeout: .seconds(15))
                    let entity = try Self.entity(event)
                    let version = try Self.version(event)
                    if let previous = seen[entity] {
                        if version == previous { duplicates += 1 }
                        if version < previous { regressions += 1 }
                    }
                    seen[entity] = max(seen[entity] ?? 0, version)
                }
                #expect(await socket.drain(for: .milliseconds(300)).isEmpty)
                _ = await socket.close()
            }
            #expect(duplicates == 0, "events the snapshot already held were delivered again")
            #expect(regressions == 0, "older states arrived after newer ones")
        }
    }

    private static func entity(_ event: StoredEventJSON) throws -> String {
        try #require(event["entity_id"]?.stringValue)
    }

    private static func version(_ event: StoredEventJSON) throws -> Int {
        let data = try #require(event["data"]?.objectValue)
        return try #require(data["version"]?.numberValue.map { Int($0) })
    }
}
