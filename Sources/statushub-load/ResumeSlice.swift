import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A share of `statushub-load resume`'s subscribers, driven through the run's phases by the command. One process
/// holds one descriptor per subscriber and may hold no more than `ulimit -n` (20,000 on a machine without
/// `CAP_SYS_RESOURCE`), so 100,000 subscribers take several slices, each in its own process
/// (`ResumeSliceProcess`); a run that fits holds its one slice in the command's own process (`LocalResumeSlice`).
protocol ResumeSlice: Sendable {
    /// Processes whose CPU time is the harness's besides the command's own.
    var processIDs: [Int32] { get }
    /// Connects every subscriber of the slice to `url`'s `/v1/ws`, `concurrency` at a time, each subscribing to
    /// the run's pattern.
    func connect(url: String, concurrency: Int, timeout: Double) async throws -> ResumeSliceReply.Connected
    /// Waits until every subscriber that connected has event `seq`.
    func wait(seq: Int, timeout: Double) async throws -> ResumeSliceReply.Arrived
    /// Waits until the connection of every subscriber that connected has closed (the node's shutdown).
    func waitClosed(timeout: Double) async throws -> ResumeSliceReply.Closed
    /// Every subscriber that had an event reconnects to `url` at once, subscribing with `since`.
    func resume(url: String, timeout: Double) async throws -> ResumeSliceReply.Resumed
    /// What the subscribers received of events 1…`total`.
    func report(total: Int) async throws -> ResumeSliceReply.Report
    func close() async
}

/// A command to a slice process, one JSON line on its standard input.
struct ResumeSliceRequest: Codable {
    enum Operation: String, Codable { case connect, wait, waitClosed, resume, report, close }
    var op: Operation
    var url: String?
    var concurrency: Int?
    var timeout: Double?
    var seq: Int?
}

/// A slice's answers, one JSON line on a slice process's standard output each.
enum ResumeSliceReply {
    struct Connected: Codable {
        var connected: Int
        var failures: Int
        var first_failure: String?
    }

    struct Arrived: Codable {
        var all: Bool
        var count: Int
    }

    struct Closed: Codable {
        /// Subscribers that had a connection.
        var present: Int
        var closed: Int
    }

    struct Resumed: Codable {
        var resubscribed: Int
        var retried: Int
        var failures: Int
        var first_failure: String?
    }

    struct Report: Codable {
        var complete: Int
        var missing: Int
        var duplicates: Int
        /// Event seq → how many subscribers got it twice (the first 64 per subscriber).
        var duplicated_events: [String: Int]
        var out_of_order: Int
        var resyncs: Int
        /// The distinct `resync` and `error` messages (without each subscriber's id) → how many subscribers got it first.
        var notices: [String: Int]
        /// Close code and reason → subscribers whose resumed connection the hub closed.
        var closed_after_resume: [String: Int]
    }

    struct Done: Codable {}
}

/// Subscribers `first ..< first + count` of the run, in this process.
final class LocalResumeSlice: ResumeSlice {
    private let fleet: [ResumeSubscriber]
    private let tally: DeliveryTally
    private let group: MultiThreadedEventLoopGroup
    private let pattern: String
    /// "slice 2: " in a slice process, so that the progress lines of several tell apart.
    private let label: String
    private let connectedCount = Box(0)

    init(first: Int, count: Int, sources: SourceAddresses?, line: String, threads: Int, label: String) {
        let tally = DeliveryTally()
        self.tally = tally
        fleet = (first..<(first + count)).map { ResumeSubscriber(index: $0, source: sources?.address(for: $0), tally: tally) }
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        pattern = "line:\(line):*"
        self.label = label
    }

    var processIDs: [Int32] { [] }

    func connect(url: String, concurrency: Int, timeout: Double) async -> ResumeSliceReply.Connected {
        let start = monotonicNanos()
        let gate = AsyncSemaphore(permits: max(1, concurrency))
        let failures = FailureLog()
        let (connectedCount, group, pattern, label) = (connectedCount, group, pattern, label)
        await withTaskGroup(of: Void.self) { tasks in
            for subscriber in fleet {
                await gate.acquire()
                tasks.addTask {
                    defer { gate.release() }
                    do {
                        try await subscriber.connect(
                            url: url, pattern: pattern, since: nil, loop: group.next(), attempts: 3, deadline: start + nanos(timeout))
                        let done = connectedCount.add(1)
                        if done % 10_000 == 0 { say("\(label)\(done) subscribed") }
                    } catch {
                        failures.record("subscriber \(subscriber.index): \(error)")
                    }
                }
            }
        }
        return .init(connected: connectedCount.value, failures: failures.count, first_failure: failures.first)
    }

    func wait(seq: Int, timeout: Double) async -> ResumeSliceReply.Arrived {
        let all = await tally.wait(seq: seq, count: connectedCount.value, timeout: timeout)
        return .init(all: all, count: tally.count(seq: seq))
    }

    func waitClosed(timeout: Double) async -> ResumeSliceReply.Closed {
        let start = monotonicNanos()
        let present = fleet.filter(\.hasConnected)
        var closed = 0
        for subscriber in present where await subscriber.waitClosed(timeout: timeout - seconds(since: start)) { closed += 1 }
        return .init(present: present.count, closed: closed)
    }

    func resume(url: String, timeout: Double) async -> ResumeSliceReply.Resumed {
        let deadline = monotonicNanos() + nanos(timeout)
        let resubscribed = Box(0), retried = Box(0)
        let failures = FailureLog()
        let (group, pattern, label) = (group, pattern, label)
        await withTaskGroup(of: Void.self) { tasks in
            for subscriber in fleet where subscriber.lastEventID != nil {
                tasks.addTask {
                    do {
                        let retries = try await subscriber.connect(
                            url: url, pattern: pattern, since: subscriber.lastEventID, loop: group.next(), attempts: .max, deadline: deadline)
                        retried.add(retries)
                        let done = resubscribed.add(1)
                        if done % 10_000 == 0 { say("\(label)\(done) resubscribed") }
                    } catch {
                        failures.record("subscriber \(subscriber.index) resuming: \(error)")
                    }
                }
            }
        }
        return .init(resubscribed: resubscribed.value, retried: retried.value, failures: failures.count, first_failure: failures.first)
    }

    func report(total: Int) async -> ResumeSliceReply.Report {
        let ledgers = fleet.map(\.ledger)
        var report = ResumeSliceReply.Report(
            complete: 0, missing: 0, duplicates: 0, duplicated_events: [:], out_of_order: 0, resyncs: 0, notices: [:], closed_after_resume: [:])
        for ledger in ledgers {
            let missing = ledger.missing(of: total)
            if missing == 0 && ledger.duplicates == 0 && ledger.outOfOrder == 0 { report.complete += 1 }
            report.missing += missing
            report.duplicates += ledger.duplicates
            report.out_of_order += ledger.outOfOrder
            report.resyncs += ledger.resyncs
            for seq in ledger.duplicatedSeqs { report.duplicated_events[String(seq), default: 0] += 1 }
            if let notice = ledger.notice { report.notices[ResumeCommand.withoutID(notice), default: 0] += 1 }
            if let closed = ledger.closedBy { report.closed_after_resume[closed, default: 0] += 1 }
        }
        return report
    }

    func close() async {
        for subscriber in fleet { subscriber.close() }
        try? await Task.sleep(for: .milliseconds(500))
        try? await group.shutdownGracefully()
    }
}
