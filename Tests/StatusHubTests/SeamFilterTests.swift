import NIOCore
import StatusHubCore
@testable import StatusHubServer
import Testing

/// The seam after a subscribe was answered, event by event: what the answer held is dropped when it arrives late,
/// everything else passes, and the filter ends once the live stream is past the answer.
@Suite("Seam filter")
struct SeamFilterTests {
    static func event(_ id: UInt64, _ channels: [String], key: String, state: Bool = true) -> Connection.Held {
        let stored = StoredEvent(
            id: EventID(milliseconds: id, sequence: 0), entityKey: key, channels: channels,
            json: Array(#"{"event_id":"\#(id)-0"}"#.utf8), carriesState: state)
        return Connection.Held(event: stored, frame: WireFrame(framed: ByteBuffer(string: "\(id) \(key)")), conflationKey: nil)
    }

    static let machine1 = ["resource-status", "machine:M-1"]
    static let operator1 = ["resource-status", "operator:O-1"]

    @Test func lateEventsTheSnapshotHeldAreDroppedOthersPass() throws {
        let connection = Connection(id: 1, outboxCapacity: 100, conflateAbove: 50, claims: nil)
        let machines = [try ChannelPattern(parsing: "machine:*")]
        connection.record(added: machines + [try ChannelPattern(parsing: "operator:*")])
        connection.beginSeam()
        var answered = SeamFilter(patterns: machines)
        answered.snapshot(at: EventID(milliseconds: 10, sequence: 0))
        answered.sent([Self.event(12, Self.machine1, key: "resource:machine:M-1").event])
        connection.endSeam(answered)

        connection.offer(Self.event(9, Self.machine1, key: "resource:machine:M-1"))  // before the position: held
        connection.offer(Self.event(9, Self.operator1, key: "resource:operator:O-1"))  // another pattern's: passes
        connection.offer(Self.event(9, ["alerts", "machine:M-1"], key: "resource:machine:M-1", state: false))  // news
        connection.offer(Self.event(11, Self.machine1, key: "resource:machine:M-1"))  // older than the snapshot's M-1
        connection.offer(Self.event(11, ["resource-status", "machine:M-2"], key: "resource:machine:M-2"))  // new
        connection.offer(Self.event(13, Self.machine1, key: "resource:machine:M-1"))  // past the answer: filter ends
        connection.offer(Self.event(9, Self.machine1, key: "resource:machine:M-1"))  // (cannot happen; shows it ended)
        let frames = (connection.outbox.take() ?? []).map { String(buffer: $0.framed) }
        #expect(frames == [
            "9 resource:operator:O-1", "9 resource:machine:M-1", "11 resource:machine:M-2", "13 resource:machine:M-1",
            "9 resource:machine:M-1",
        ])
    }

    @Test func aReplayHoldsOnlyItsOwnPatterns() throws {
        let connection = Connection(id: 1, outboxCapacity: 100, conflateAbove: 50, claims: nil)
        connection.beginSeam()
        connection.offer(Self.event(4, Self.machine1, key: "resource:machine:M-1"))  // held in the seam, replayed
        connection.endSeam(SeamFilter(patterns: [try ChannelPattern(parsing: "machine:*")], replayedThrough: EventID(milliseconds: 5, sequence: 0)))
        connection.offer(Self.event(5, Self.machine1, key: "resource:machine:M-1"))  // replayed
        connection.offer(Self.event(5, Self.operator1, key: "resource:operator:O-1"))  // not the replay's pattern
        connection.offer(Self.event(6, Self.machine1, key: "resource:machine:M-1"))
        let frames = (connection.outbox.take() ?? []).map { String(buffer: $0.framed) }
        #expect(frames == ["5 resource:operator:O-1", "6 resource:machine:M-1"])
    }
}
