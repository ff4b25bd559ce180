import NIOCore
import Synchronization
import Testing

@testable import StatusHubServer

@Suite("Outbox conflation and overflow")
struct OutboxTests {
    func frame(_ text: String) -> WireFrame { WireFrame(framed: ByteBuffer(string: text)) }

    func drain(_ outbox: Outbox) async -> [String] {
        guard case .frames(let frames) = await outbox.next() else { return [] }
        return frames.map { String(buffer: $0.framed) }
    }

    /// A reader's ready signal usually holds the outbox (and the channel): an ended outbox must let it go, or the
    /// two keep each other alive after the connection closed (the churn leak, loadtest/RESULTS.md).
    @Test func anEndedOutboxLetsGoOfItsReadySignal() {
        final class Reader: Sendable {}
        for ending in [Outbox.Ending.closed, .goingAway, .overflowed] {
            let outbox = Outbox(capacity: 4)
            weak var weakReader: Reader?
            do {
                let reader = Reader()
                weakReader = reader
                outbox.setOnReady { [outbox] in _ = (reader, outbox) }
            }
            #expect(weakReader != nil)
            if ending == .overflowed { outbox.overflow() } else { outbox.close(ending) }
            #expect(weakReader == nil, "the ready signal outlived the outbox's end (\(ending))")
            // Nor is one kept when set after the end.
            do {
                let late = Reader()
                weakReader = late
                outbox.setOnReady { _ = late }
            }
            #expect(weakReader == nil)
        }
    }

    /// A replay or a snapshot waits for room in the outbox without polling: the writer taking the frames, the
    /// outbox's end or the waiter's cancellation wakes it, and it does not return while the frames are still queued.
    @Test func aProducerWaitsForRoomUntilTheWriterTakesTheFrames() async throws {
        let outbox = Outbox(capacity: 100)
        outbox.setOnReady {}
        for index in 0..<10 { outbox.push(frame("f\(index)")) }
        await outbox.untilCount(atMost: 10)  // room already: at once
        let returned = Atomic<Bool>(false)
        let waiter = Task {
            await outbox.untilCount(atMost: 2)
            returned.store(true, ordering: .relaxed)
        }
        try await Task.sleep(for: .milliseconds(200))
        outbox.push(frame("f10"))  // a push is no reason to wake it
        try await Task.sleep(for: .milliseconds(100))
        let returnedEarly = returned.load(ordering: .relaxed)
        #expect(!returnedEarly, "returned while 11 frames were queued")
        #expect(outbox.count == 11)
        #expect(outbox.take()?.count == 11)
        await waiter.value
        #expect(outbox.count == 0)

        for index in 0..<5 { outbox.push(frame("g\(index)")) }
        let ending = Task { await outbox.untilCount(atMost: 0) }
        try await Task.sleep(for: .milliseconds(100))
        outbox.close()
        await ending.value

        let cancelled = Outbox(capacity: 100)
        cancelled.setOnReady {}
        for index in 0..<5 { cancelled.push(frame("h\(index)")) }
        let gaveUp = Task { await cancelled.untilCount(atMost: 0) }
        try await Task.sleep(for: .milliseconds(100))
        gaveUp.cancel()
        await gaveUp.value
        #expect(cancelled.count == 5)
    }

    @Test func queuedStateCollapsesToTheLatestAndKeepsIDOrder() async {
        let outbox = Outbox(capacity: 10)
        #expect(outbox.push(frame("m1-a"), conflationKey: "m1") == .queued)
        #expect(outbox.push(frame("alert-1")) == .queued)
        #expect(outbox.push(frame("m2-a"), conflationKey: "m2") == .queued)
        #expect(outbox.push(frame("m1-b"), conflationKey: "m1") == .conflated)
        #expect(outbox.push(frame("m1-c"), conflationKey: "m1") == .conflated)
        #expect(await drain(outbox) == ["alert-1", "m2-a", "m1-c"])
        // Once written, a frame is no longer conflated against.
        #expect(outbox.push(frame("m1-d"), conflationKey: "m1") == .queued)
        #expect(await drain(outbox) == ["m1-d"])
    }

    @Test func aReaderThatKeepsUpGetsEveryEvent() async {
        let outbox = Outbox(capacity: 10, conflateAbove: 3)
        #expect(outbox.push(frame("m1-a"), conflationKey: "m1") == .queued)
        #expect(outbox.push(frame("m1-b"), conflationKey: "m1") == .queued)
        #expect(outbox.push(frame("m1-c"), conflationKey: "m1") == .queued)
        // Now three are queued: the reader is behind, and the backlog collapses.
        #expect(outbox.push(frame("m1-d"), conflationKey: "m1") == .conflated)
        #expect(await drain(outbox) == ["m1-a", "m1-b", "m1-d"])
    }

    /// A burst (a replay, a backlog) lets its queue's storage and conflation index go once taken (an idle dashboard
    /// would otherwise keep both for its life); batches of every size around the kept limit, and a reader that falls
    /// behind again, still get every frame once, in order, with the backlog conflated as before.
    @Test func burstsOfEverySizeKeepOrderAndConflationAfterTheirStorageGoes() {
        let outbox = Outbox(capacity: 1_000, conflateAbove: 4)
        outbox.setOnReady {}
        var next = 0
        for size in [1, 2, Outbox.keptSlots, Outbox.keptSlots + 1, 64, 3, 1, 200, 2] {
            let sent = (next..<(next + size)).map { "alert-\($0)" }
            next += size
            for text in sent { outbox.push(frame(text)) }
            #expect(outbox.take()?.map { String(buffer: $0.framed) } == sent, "a batch of \(size)")
        }
        for round in 0..<3 {
            // Behind: past conflate_above the queue is indexed and a machine's newer state replaces its queued one.
            for machine in 0..<6 { outbox.push(frame("m\(machine)-\(round)-a"), conflationKey: "m\(machine)") }
            #expect(outbox.push(frame("m0-\(round)-b"), conflationKey: "m0") == .conflated)
            #expect(outbox.push(frame("m5-\(round)-b"), conflationKey: "m5") == .conflated)
            let taken = outbox.take()?.map { String(buffer: $0.framed) }
            #expect(taken == ["m1-\(round)-a", "m2-\(round)-a", "m3-\(round)-a", "m4-\(round)-a", "m0-\(round)-b", "m5-\(round)-b"])
            // Caught up: a lone state after the take is not conflated against what was written.
            #expect(outbox.push(frame("m0-\(round)-c"), conflationKey: "m0") == .queued)
            #expect(outbox.take()?.map { String(buffer: $0.framed) } == ["m0-\(round)-c"])
        }
    }

    @Test func alertsAreNeverDroppedSoTheyCanOverflow() async {
        let outbox = Outbox(capacity: 3)
        for n in 0..<3 { #expect(outbox.push(frame("alert-\(n)")) == .queued) }
        #expect(outbox.push(frame("alert-3")) == .overflowed)
        guard case .ended(.overflowed) = await outbox.next() else {
            Issue.record("expected overflow")
            return
        }
    }

    @Test func conflationKeepsAHotEntityFromOverflowing() async {
        let outbox = Outbox(capacity: 4)
        for n in 0..<10_000 { #expect(outbox.push(frame("m1-\(n)"), conflationKey: "m1") != .overflowed) }
        #expect(outbox.count == 1)
        #expect(await drain(outbox) == ["m1-9999"])
    }

    @Test func goingAwaySendsWhatIsQueuedFirst() async {
        let outbox = Outbox(capacity: 4)
        outbox.push(frame("a"))
        outbox.close(.goingAway)
        #expect(outbox.push(frame("late")) == .ended)
        #expect(await drain(outbox) == ["a"])
        guard case .ended(.goingAway) = await outbox.next() else {
            Issue.record("expected goingAway")
            return
        }
    }
}
