import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import StatusHubServer

/// When a loop's batch of flush passes runs: the adaptive default (no delay) and the delay floor. The delivery
/// side of the same promise (nothing lost or reordered) is `WebSocketTests.batchedWritesLoseAndReorderNothing`.
@Suite("Loop flusher: adaptive write coalescing")
struct LoopFlusherTests {
    final class Record: Sendable {
        let passes = Mutex<[Int]>([])
        func add(_ pass: Int) { passes.withLock { $0.append(pass) } }
        var all: [Int] { passes.withLock { $0 } }

        func waitFor(count: Int, within limit: Duration = .seconds(10)) async throws {
            let deadline = ContinuousClock.now + limit
            while all.count < count {
                guard ContinuousClock.now < deadline else { throw TestTimeout(count: count, ran: all.count) }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    struct TestTimeout: Error { var count: Int; var ran: Int }

    /// A fan-out running on one loop makes another loop's connections ready: their passes wait until the fan-out
    /// has offered the event to everyone — a wake-up per frame let the other loop take them one by one meanwhile —
    /// and then run together, in order, without waiting for the rest of the pushing loop's job.
    @Test func passesPushedByAFanOutWaitForItsEndOnly() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let pushing = group.next(), flushed = group.next()
        #expect(pushing !== flushed)
        let flusher = LoopFlushers(delay: .zero).flusher(for: flushed)
        let record = Record()
        let (ranDuringFanOut, ranAfterIt) = try await pushing.submit {
            let hold = LoopFlusher.holdWakeUps()
            for pass in 0..<100 { flusher.schedule { record.add(pass) } }
            // Still fanning out: the flushed loop is idle, yet nothing may be written yet.
            Thread.sleep(forTimeInterval: 0.05)
            let during = record.all.count
            hold.release()
            // The fan-out is over; the pushing loop's job is not, and need not be.
            let deadline = Date().addingTimeInterval(5)
            while record.all.count < 100, Date() < deadline { Thread.sleep(forTimeInterval: 0.001) }
            return (during, record.all.count)
        }.get()
        #expect(ranDuringFanOut == 0)
        #expect(ranAfterIt == 100)
        #expect(record.all == Array(0..<100))
        try await group.shutdownGracefully()
    }

    /// The loop's own work: passes run after it, on the loop.
    @Test func passesPushedFromTheLoopsOwnWorkRunAfterIt() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let flusher = LoopFlushers(delay: .zero).flusher(for: loop)
        let record = Record()
        let ranDuring = try await loop.submit {
            for pass in 0..<10 { flusher.schedule { loop.preconditionInEventLoop(); record.add(pass) } }
            return record.all.count
        }.get()
        #expect(ranDuring == 0)
        try await record.waitFor(count: 10)
        #expect(record.all == Array(0..<10))
        try await group.shutdownGracefully()
    }

    /// Nothing in progress anywhere (a push from outside any loop): written at once, not after a timer.
    @Test func anIdleLoopWritesAtOnce() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let flusher = LoopFlushers(delay: .zero).flusher(for: group.next())
        let record = Record()
        flusher.schedule { record.add(1) }
        try await record.waitFor(count: 1, within: .seconds(5))
        try await group.shutdownGracefully()
    }

    /// Under load frames are held: a batch that took 30 ms of the ~31 ms since the one before it makes the next
    /// one wait `maxHold` (20 ms) after it ended, however idle the loop is meanwhile; its passes still run together
    /// and in order. Each pass schedules the next on the loop, so no batch waits for this test's task.
    ///
    /// The rule reads wall time, so the case holds only if the 30 ms batch started right after the first ended: in a
    /// starved run of the whole suite it once started late, which is a loop with time to spare (no hold), and the
    /// test failed for the machine, not the rule. A run where it came late is tried again (at most five).
    @Test func aBatchThatFilledTheLoopHoldsTheNextOne() async throws {
        let run = try await Self.firstPunctual { try await holdAfterALongBatch() }
        #expect(run.punctual, "five runs on a starved machine: no run where the loop's thread came when called")
        #expect(run.heldAfterLong >= .milliseconds(20))
        #expect(run.order == [0, 1, 2, 3])
        #expect(LoopFlusher.maxHold == .milliseconds(20))
    }

    /// A run of a timing case whose premise (the loop's thread ran when called) either held or did not.
    private protocol TimedRun: Sendable {
        var punctual: Bool { get }
    }

    /// The first of at most five runs whose premise held, or the fifth: the rules read wall time, and a starved run
    /// of the whole suite can hold the loop's thread off past what a case measures.
    private static func firstPunctual<Run: TimedRun>(_ attempt: () async throws -> Run) async throws -> Run {
        var run = try await attempt()
        for _ in 1..<5 where !run.punctual { run = try await attempt() }
        return run
    }

    private struct LongBatchRun: TimedRun {
        var order: [Int]
        /// From the long batch's end to the held batch's start.
        var heldAfterLong: Duration
        /// The long batch started within 3 ms of the first's end.
        var punctual: Bool
    }

    private func holdAfterALongBatch() async throws -> LongBatchRun {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let flusher = LoopFlushers(delay: .zero).flusher(for: group.next())
        let record = Record()
        let firstEnded = Mutex<ContinuousClock.Instant?>(nil), longStarted = Mutex<ContinuousClock.Instant?>(nil)
        let longEnded = Mutex<ContinuousClock.Instant?>(nil), heldRan = Mutex<ContinuousClock.Instant?>(nil)
        flusher.schedule {
            record.add(0)
            flusher.schedule {
                longStarted.withLock { $0 = .now }
                Thread.sleep(forTimeInterval: 0.03)
                record.add(1)
                flusher.schedule {
                    heldRan.withLock { $0 = .now }
                    record.add(2)
                }
                flusher.schedule { record.add(3) }
                longEnded.withLock { $0 = .now }
            }
            firstEnded.withLock { $0 = .now }
        }
        try await record.waitFor(count: 4)
        try await group.shutdownGracefully()
        let end0 = try #require(firstEnded.withLock { $0 }), start1 = try #require(longStarted.withLock { $0 })
        let end1 = try #require(longEnded.withLock { $0 }), ran = try #require(heldRan.withLock { $0 })
        return LongBatchRun(order: record.all, heldAfterLong: ran - end1, punctual: start1 - end0 < .milliseconds(3))
    }

    /// A hold lasts while it pays. A held batch starts when its hold ends, so it always seems to have filled the
    /// loop: one that wrote one frame a `write` (the hold halved nothing) lets the next batch run at once; one that
    /// wrote two frames a `write` holds the next as the first hold did. Each case: a 30 ms batch sets a hold, the held
    /// batch takes 18 ms after writing its outbox. Every pass schedules the next at its end, on the loop, so no
    /// batch waits for this test's task (on a busy machine that gap alone made a loop look idle).
    ///
    /// The rule reads wall time, so the case holds only if the loop's thread ran when the loop wanted it: the 30 ms
    /// batch right after the first, the held batch right as its hold ended. In a starved run of the whole suite the
    /// held batch once started over 6 ms late, which made it look like a loop with time to spare (no hold), and the
    /// test failed for the machine, not the rule. A run where either start came late is tried again (at most five).
    @Test(arguments: [1, 2])
    func aHoldLastsWhileItPays(framesPerWrite: Int) async throws {
        let run = try await Self.firstPunctual { try await holdAfterAHeldBatch(framesPerWrite: framesPerWrite) }
        #expect(run.punctual, "five runs on a starved machine: no run where the loop's thread came when called")
        #expect(run.order == [0, 1, 10 + framesPerWrite, 3])
        if framesPerWrite == 1 {
            #expect(run.nextAfterHeld < .milliseconds(15), "a hold that gathered nothing went on")
        } else {
            #expect(run.nextAfterHeld >= .milliseconds(15), "a hold that gathered two frames a write ended")
        }
        #expect(LoopFlusher.framesWorthHolding == 2)
    }

    private struct HeldBatchRun: TimedRun {
        var order: [Int]
        /// From the held batch's end to the next batch's start.
        var nextAfterHeld: Duration
        /// The 30 ms batch started within 3 ms of the first's end, and the held batch within 3 ms of its hold's end.
        var punctual: Bool
    }

    private func holdAfterAHeldBatch(framesPerWrite: Int) async throws -> HeldBatchRun {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let flusher = LoopFlushers(delay: .zero).flusher(for: group.next())
        let record = Record()
        let outbox = Outbox(capacity: 10)
        for _ in 0..<framesPerWrite { _ = outbox.push(.text(Array(#"{"op":"event"}"#.utf8))) }
        // Each pass's start and end: 0 the first batch, 1 the 30 ms one, 2 the held one, 3 the next.
        let starts = Mutex<[Int: ContinuousClock.Instant]>([:]), ends = Mutex<[Int: ContinuousClock.Instant]>([:])
        flusher.schedule {
            record.add(0)
            flusher.schedule {
                starts.withLock { $0[1] = .now }
                Thread.sleep(forTimeInterval: 0.03)
                record.add(1)
                flusher.schedule {
                    starts.withLock { $0[2] = .now }
                    let frames = flusher.takeForWriting(outbox)
                    Thread.sleep(forTimeInterval: 0.018)
                    record.add(10 + (frames?.count ?? 0))
                    flusher.schedule {
                        starts.withLock { $0[3] = .now }
                        record.add(3)
                    }
                    ends.withLock { $0[2] = .now }
                }
                ends.withLock { $0[1] = .now }
            }
            ends.withLock { $0[0] = .now }
        }
        try await record.waitFor(count: 4)
        try await group.shutdownGracefully()
        let started = starts.withLock { $0 }, ended = ends.withLock { $0 }
        let (start1, start2, start3) = (try #require(started[1]), try #require(started[2]), try #require(started[3]))
        let (end0, end1, end2) = (try #require(ended[0]), try #require(ended[1]), try #require(ended[2]))
        let punctual = start1 - end0 < .milliseconds(3) && start2 - (end1 + .nanoseconds(LoopFlusher.maxHold.nanoseconds)) < .milliseconds(3)
        return HeldBatchRun(order: record.all, nextAfterHeld: start3 - end2, punctual: punctual)
    }

    /// A long batch lets the loop serve its other work between slices (the next event's request, its script's reply,
    /// its pub/sub message), and passes scheduled meanwhile run after the batch, in order.
    @Test func aLongBatchLetsTheLoopServeItsSocketsBetweenSlices() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let flusher = LoopFlushers(delay: .zero).flusher(for: loop)
        let record = Record()
        // Scheduled from the loop, so all ten are in the batch before it starts.
        loop.execute {
            for pass in 1...10 {
                flusher.schedule {
                    if pass == 1 {
                        // Other work for the loop, queued while the batch runs, and a pass for the next batch.
                        loop.execute { record.add(100) }
                        flusher.schedule { record.add(11) }
                    }
                    Thread.sleep(forTimeInterval: 0.001)
                    record.add(pass)
                }
            }
        }
        try await record.waitFor(count: 12)
        let order = record.all
        #expect(order.filter { $0 != 100 } == Array(1...11))
        let other = try #require(order.firstIndex(of: 100))
        #expect(other < order.firstIndex(of: 10)!, "the loop's other work waited for the whole batch: \(order)")
        #expect(LoopFlusher.slice == .milliseconds(2))
        try await group.shutdownGracefully()
    }

    /// `websocket.write_delay_ms` is a floor: a batch runs that long after its first pass at the earliest.
    @Test func aWriteDelayIsAFloor() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let flusher = LoopFlushers(delay: .milliseconds(100)).flusher(for: group.next())
        let record = Record()
        let start = ContinuousClock.now
        flusher.schedule { record.add(1) }
        flusher.schedule { record.add(2) }
        try await record.waitFor(count: 2)
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(record.all == [1, 2])
        try await group.shutdownGracefully()
    }
}
