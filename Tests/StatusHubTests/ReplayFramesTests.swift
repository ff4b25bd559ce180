import NIOCore
import StatusHubCore
@testable import StatusHubServer
import Testing

/// Replays after a restart storm share their frames: one per event, not one per event per subscriber.
@Suite("ReplayFrames")
struct ReplayFramesTests {
    static func stored(_ machine: String, _ sequence: UInt64) -> StoredEvent {
        StoredEvent(id: EventID(milliseconds: 7, sequence: sequence), validated: SampleEvents.validated(SampleEvents.machineStatus(machine)))
    }

    static func storage(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    @Test func subscribersReplayingAnEventShareOneFrame() {
        let frames = ReplayFrames()
        let event = Self.stored("M-1", 0)
        let first = frames.frame(of: event, storedAs: event)
        let second = frames.frame(of: event, storedAs: event)
        #expect(first.framed == WireFrame.text(ServerMessage.event(event)).framed)
        #expect(Self.storage(first.framed) == Self.storage(second.framed))
        #expect(frames.count == 1)
    }

    @Test func aRedactedViewIsFramedForItsReaderAlone() {
        let frames = ReplayFrames()
        let stored = Self.stored("M-1", 0)
        let view = StoredEvent(id: stored.id, entityKey: stored.entityKey, channels: stored.channels, json: Array("{}".utf8))
        #expect(frames.frame(of: view, storedAs: stored).framed == WireFrame.text(ServerMessage.event(view)).framed)
        #expect(frames.count == 0)
        #expect(frames.frame(of: stored, storedAs: stored).framed == WireFrame.text(ServerMessage.event(stored)).framed)
    }

    @Test func aFullCacheStartsAgainInsteadOfGrowing() {
        let frames = ReplayFrames(capacity: 3)
        for sequence in 0..<10 {
            let event = Self.stored("M-\(sequence)", UInt64(sequence))
            #expect(frames.frame(of: event, storedAs: event).framed == WireFrame.text(ServerMessage.event(event)).framed)
        }
        #expect(frames.count <= 3)
    }
}
