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

    /// A machine's state expired while its line's snapshot was read: the snapshot holds its `status_stale` notice (kept in
    /// the state's place) and the same notice then arrives live — a copy. An alert about the machine is news whatever
    /// its id; a state older than the notice is old news, one newer passes.
    @Test func aStaleNoticeTheSnapshotHeldIsNotDeliveredAgain() throws {
        let connection = Connection(id: 1, outboxCapacity: 100, conflateAbove: 50, claims: nil)
        let machines = [try ChannelPattern(parsing: "machine:*")]
        connection.record(added: machines)
        connection.beginSeam()
        var answered = SeamFilter(patterns: machines)
        answered.snapshot(at: EventID(milliseconds: 10, sequence: 0))
        answered.sent([Self.event(12, Self.machine1, key: "resource:machine:M-1", state: false).event])
        connection.endSeam(answered)

        let alert = Self.event(11, ["alerts", "machine:M-1"], key: "resource:machine:M-1", state: false).event
        connection.offer(Connection.Held(event: alert, frame: WireFrame(framed: ByteBuffer(string: "alert")), conflationKey: nil))
        connection.offer(Self.event(11, Self.machine1, key: "resource:machine:M-1"))  // the state that expired: held
        connection.offer(Self.event(12, Self.machine1, key: "resource:machine:M-1", state: false))  // the notice: held
        connection.offer(Self.event(13, Self.machine1, key: "resource:machine:M-1"))  // the machine is back
        let frames = (connection.outbox.take() ?? []).map { String(buffer: $0.framed) }
        #expect(frames == ["alert", "13 resource:machine:M-1"])
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

    /// A replay from a resume token (several partitions): the live stream passes it partition by partition. A
    /// partition ahead does not end the filter while another's late copies may still come; ids compare only within
    /// a partition.
    @Test func aTokenReplayIsPassedPartitionByPartition() throws {
        func held(_ id: UInt64, partition: Int, _ machine: String) -> Connection.Held {
            var held = Self.event(id, ["resource-status", "machine:\(machine)"], key: "resource:machine:\(machine)")
            held.event.partition = partition
            held.frame = WireFrame(framed: ByteBuffer(string: "\(partition):\(id) \(machine)"))
            return held
        }
        let connection = Connection(id: 1, outboxCapacity: 100, conflateAbove: 50, claims: nil)
        connection.beginSeam()
        // The replay sent partition 0 up to 50 and partition 1 up to 8 (partition 1's clock is behind).
        connection.endSeam(SeamFilter(
            patterns: [try ChannelPattern(parsing: "machine:*")],
            replayedThroughPartitions: [0: EventID(milliseconds: 50, sequence: 0), 1: EventID(milliseconds: 8, sequence: 0)]))
        connection.offer(held(60, partition: 0, "M-1"))  // partition 0 passed; partition 1 still pending
        connection.offer(held(8, partition: 1, "M-2"))  // partition 1's late copy of a replayed event: dropped
        connection.offer(held(9, partition: 1, "M-2"))  // past partition 1 too: the filter ends
        connection.offer(held(8, partition: 1, "M-2"))  // (cannot happen; shows it ended)
        let frames = (connection.outbox.take() ?? []).map { String(buffer: $0.framed) }
        #expect(frames == ["0:60 M-1", "1:9 M-2", "1:8 M-2"])
    }

    /// The shutdown watermark compares ids within a partition only: partition 0 delivered far ahead does not make up
    /// for partition 1's acknowledged event not yet delivered.
    @Test func theWatermarkIsCaughtUpPartitionByPartition() {
        let watermark = DeliveryWatermark()
        #expect(watermark.caughtUp)
        #expect(watermark.beginAppend())
        watermark.endAppend(acknowledging: [(partition: 1, id: EventID(milliseconds: 8, sequence: 0))])
        var ahead = Self.event(60, Self.machine1, key: "resource:machine:M-1").event
        ahead.partition = 0
        watermark.delivered(ahead)
        #expect(!watermark.caughtUp)
        var caught = Self.event(8, Self.machine1, key: "resource:machine:M-2").event
        caught.partition = 1
        watermark.delivered(caught)
        #expect(watermark.caughtUp)
    }

    /// The shutdown closes the node to appends only once none is in flight and the fan-out has caught up; an append
    /// that comes after is refused; the grace's end closes it regardless.
    @Test func theShutdownWaitsForAppendsInFlight() {
        let watermark = DeliveryWatermark()
        #expect(watermark.beginAppend())
        #expect(!watermark.closeIfCaughtUp())
        watermark.endAppend(acknowledging: [(partition: 0, id: EventID(milliseconds: 9, sequence: 0))])
        #expect(!watermark.closeIfCaughtUp())
        watermark.delivered(Self.event(9, Self.machine1, key: "resource:machine:M-1").event)
        #expect(watermark.closeIfCaughtUp())
        #expect(!watermark.beginAppend())

        let stuck = DeliveryWatermark()
        #expect(stuck.beginAppend())
        #expect(stuck.closeIfCaughtUp(force: true))
        #expect(!stuck.beginAppend())
    }
}
