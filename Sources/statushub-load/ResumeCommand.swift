import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import NIOWebSocket
import StatusHubCore
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `statushub-load resume`: many idle subscribers on one node, one event that must reach all of them, then the
/// node restarted under them and every subscriber resuming with `since` at once (the storm a plant sees after a
/// deploy), with a check that nothing published meanwhile was lost or delivered twice.
struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Idle subscribers: connect time, RSS per connection, one event to all; then a node restart and all resuming with since.",
        discussion: """
            Opens --subscribers WebSocket connections to --url's /v1/ws, --connect-concurrency at a time (bound \
            to --source-addresses round-robin), each subscribing to line:<--line>:*. Reports the time until all \
            are subscribed and the hub's RSS growth per connection (--hub-pid, after --settle seconds). Then \
            POSTs one event on that line and reports how long until every subscriber had it.

            With --restart it then sends SIGTERM to the hub (--hub-pid / --hub-pid-file) and expects whoever \
            runs it to start the node again on the same port (loadtest/hundred-thousand.sh does). While the \
            subscribers are away it publishes an event every --publish-every seconds through --publish-url \
            (another node on the same Redis). Every connection waits for the hub's 1001 close; once GET /ready \
            answers 200 all of them reconnect at once, each subscribing with since = the last event_id it got \
            (a failed attempt is retried after 100–300 ms). Reported: time until every one is subscribed \
            again and until every one has every event published meanwhile; then one more event through --url, \
            and per subscriber every event 1…N must have arrived once, each machine's in order.

            Exit status: 0 when every subscriber connected, resumed and got every event exactly once; 1 otherwise.

            Example:
              statushub-load resume --url http://127.0.0.1:8080 --subscribers 100000 \\
                --source-addresses 127.0.0.2-127.0.0.11 --hub-pid-file hub.pid --restart \\
                --publish-url http://127.0.0.1:8081
            """
    )

    @Option(help: "The node the subscribers connect to (HTTP base URL).")
    var url = "http://127.0.0.1:8080"

    @Option(help: "A node on the same Redis that takes the events published while --url restarts (default: none are published then).")
    var publishURL: String?

    @Option(help: "Idle subscribers.")
    var subscribers = 10_000

    @Option(help: "The line every subscriber listens to (line:<line>:*) and every event is published on.")
    var line = "Line-0"

    @Option(help: "Subscribers connecting at the same time in the first phase (the reconnect after the restart is all at once).")
    var connectConcurrency = 1000

    @Option(help: ArgumentHelp(SourceAddresses.help))
    var sourceAddresses: SourceAddresses?

    @Option(name: .customLong("hub-pid"), help: "The hub process (RSS; SIGTERM with --restart).")
    var hubPID: Int32?

    @Option(name: .customLong("hub-pid-file"), help: "A file holding the hub's PID, read again after the restart (overrides --hub-pid).")
    var hubPIDFile: String?

    @Flag(help: "Restart the node under the subscribers (SIGTERM; someone else starts it again) and measure the resume.")
    var restart = false

    @Option(help: "Seconds between events published through --publish-url while the subscribers are away.")
    var publishEvery: Double = 0.1

    @Option(help: "Seconds to let the hub settle before each RSS reading.")
    var settle: Double = 5

    @Option(help: "Seconds each phase may take (connecting, a delivery, the restart and resume).")
    var phaseTimeout: Double = 300

    @Option(help: "Event-loop threads (default: the CPUs this process may use, taskset included).")
    var threads: Int?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    func validate() throws {
        guard subscribers >= 1, connectConcurrency >= 1 else { throw ValidationError("--subscribers and --connect-concurrency must be >= 1") }
        guard publishEvery > 0, settle >= 0, phaseTimeout > 0 else {
            throw ValidationError("--publish-every and --phase-timeout must be > 0, --settle >= 0")
        }
        for candidate in [url] + (publishURL.map { [$0] } ?? []) {
            guard let parsed = URL(string: candidate), parsed.scheme == "http", parsed.host != nil else {
                throw ValidationError("--url and --publish-url must be http://host[:port]")
            }
        }
        if restart && hubPID == nil && hubPIDFile == nil { throw ValidationError("--restart needs --hub-pid or --hub-pid-file") }
    }

    struct Result: Codable {
        var subscribers: Int
        var connected: Int
        var connect_seconds: Double
        var hub_rss_mib_before: Double
        var hub_rss_mib_connected: Double
        var hub_rss_kib_per_connection: Double
        /// CPU time while everyone connected, the hub's (its process) and this harness's own, so a connect phase the
        /// client decided is told from one the hub did.
        var hub_cpu_seconds_connecting: Double
        var client_cpu_seconds_connecting: Double
        var first_event_all_seconds: Double?
        var first_event_received: Int
        var restart: Restart?
        var failures: Int
        var first_failure: String?
    }

    struct Restart: Codable {
        /// SIGTERM until the last connection saw its close.
        var all_closed_seconds: Double
        var closed: Int
        /// SIGTERM until GET /ready answered 200.
        var ready_after_term_seconds: Double
        /// From /ready to every subscriber's `subscribed` answer to its `since` subscribe.
        var all_resubscribed_seconds: Double
        var resubscribed: Int
        /// Reconnect attempts that failed and were retried.
        var retried_attempts: Int
        /// Events published (through --publish-url) while the subscribers were away, and from /ready until every
        /// subscriber had the last of them.
        var published_meanwhile: Int
        /// Publishes through the other node that failed and were sent again (same idempotency key).
        var publish_failures: Int
        var first_publish_failure: String?
        var all_caught_up_seconds: Double?
        var events_total: Int
        var subscribers_complete: Int
        var missing: Int
        /// The restarted node's `statushub_conflated_total`: queued state events a slow reader's outbox replaced by
        /// a newer one of the same machine (past `websocket.conflate_above`), which the ledger counts as missing.
        var conflated_by_hub: Int?
        var duplicates: Int
        /// Events some subscriber got twice, with how many subscribers got each twice (the first 64 per subscriber,
        /// the 10 most common shown).
        var duplicated_events: [String: Int]
        var out_of_order: Int
        var resyncs: Int
        /// The distinct `resync` and `error` messages the hub sent, with how many subscribers got each first.
        var notices: [String: Int]
        /// Subscribers whose resumed connection the hub closed before the run ended, by close code and reason (a
        /// reader too far behind is closed — 4001 for a full outbox, 1001 `ping timeout` for a pong more than a ping
        /// interval late — and would reconnect with `since`; this harness does not).
        var closed_after_resume: [String: Int]
        var hub_rss_mib_after_resume: Double
        /// CPU time from /ready until every subscriber had the events published meanwhile (or, when that did not
        /// happen, until the harness stopped waiting for it): the restarted hub's and this harness's.
        var hub_cpu_seconds_resuming: Double
        var client_cpu_seconds_resuming: Double
    }

    /// `statushub_conflated_total` from the node's `/metrics`, nil if it cannot be read.
    static func conflatedCount(_ base: URL) async -> Int? {
        guard let (data, _) = try? await URLSession.shared.data(from: base.appendingPathComponent("metrics")) else { return nil }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("statushub_conflated_total ") }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }.map { Int($0) }
    }

    func run() async throws {
        let base = URL(string: url)!
        let wsURL = "ws://\(base.host!):\(base.port ?? 80)/v1/ws"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads ?? CPUAffinity.allowedCPUs()))
        defer { group.shutdownGracefully { _ in } }
        let tally = DeliveryTally()
        let failures = FailureLog()
        let fleet = (0..<subscribers).map { ResumeSubscriber(index: $0, source: sourceAddresses?.address(for: $0), tally: tally) }
        let pattern = "line:\(line):*"
        let publisher = EventPoster(line: line)

        func rssMiB() -> Double {
            guard let pid = currentHubPID() else { return 0 }
            return (Double(HubProbe(pids: [pid]).read().rssBytes) / 1_048_576 * 10).rounded() / 10
        }
        let rssBefore = rssMiB()
        // CPU seconds of the hub (as the pid file names it now) and of this process.
        func cpu() -> (hub: Double, client: Double) {
            let hub = currentHubPID().map { HubProbe(pids: [$0]).read().cpuSeconds } ?? 0
            return (hub, HubProbe(pids: [getpid()]).read().cpuSeconds)
        }
        let cpuBeforeConnecting = cpu()

        // Phase 1: connect everyone, --connect-concurrency at a time.
        say("connecting \(subscribers) subscribers to \(wsURL) (\(connectConcurrency) at a time)")
        let connectStart = monotonicNanos()
        let gate = AsyncSemaphore(permits: connectConcurrency)
        let connectedCount = Box(0)
        let connectTimeout = phaseTimeout
        await withTaskGroup(of: Void.self) { tasks in
            for subscriber in fleet {
                await gate.acquire()
                tasks.addTask {
                    defer { gate.release() }
                    do {
                        try await subscriber.connect(
                            url: wsURL, pattern: pattern, since: nil, loop: group.next(), attempts: 3, deadline: connectStart + nanos(connectTimeout))
                        let done = connectedCount.add(1)
                        if done % 10_000 == 0 { say("\(done) subscribed") }
                    } catch {
                        failures.record("subscriber \(subscriber.index): \(error)")
                    }
                }
            }
        }
        let connectSeconds = seconds(since: connectStart)
        let cpuConnected = cpu()
        let connected = connectedCount.value
        say(String(format: "%d of %d subscribed in %.2f s", connected, subscribers, connectSeconds))
        try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
        let rssConnected = rssMiB()

        // One event to everybody.
        var seq = 1
        let firstStart = monotonicNanos()
        try await publisher.post(base, seq: seq)
        let firstAll = await tally.wait(seq: seq, count: connected, timeout: phaseTimeout)
        let firstSeconds = firstAll ? seconds(since: firstStart) : nil
        say("event 1 reached \(tally.count(seq: seq)) of \(connected)" + (firstSeconds.map { String(format: " in %.3f s", $0) } ?? ""))

        var restartResult: Restart?
        if restart, let pid = currentHubPID() {
            // Events through the other node while the subscribers are away.
            let stopPublishing = StopFlag()
            let publishFailures = FailureLog()
            let published = Box(seq)
            let meanwhile: Task<Void, Never>? = publishURL.map { other in
                let otherBase = URL(string: other)!
                return Task { [publishEvery] in
                    while !stopPublishing.isSet {
                        let next = published.value + 1
                        do {
                            try await publisher.post(otherBase, seq: next)
                            published.update { $0 = next }
                        } catch {
                            // Posted again, with the same idempotency key, at the next turn.
                            publishFailures.record("event \(next): \(error)")
                        }
                        try? await Task.sleep(for: .milliseconds(Int64(publishEvery * 1000)))
                    }
                }
            }
            let present = fleet.filter(\.isConnected)
            let termAt = monotonicNanos()
            say("SIGTERM to the hub (\(pid)), \(present.count) connections open")
            kill(pid, SIGTERM)
            var closed = 0
            for subscriber in present {
                if await subscriber.waitClosed(timeout: phaseTimeout - seconds(since: termAt)) { closed += 1 }
            }
            let allClosed = seconds(since: termAt)
            say(String(format: "%d connections closed %.2f s after SIGTERM; waiting for /ready", closed, allClosed))
            guard await Self.waitReady(base, timeout: phaseTimeout) else {
                stopPublishing.set()
                await meanwhile?.value
                throw ValidationError("the hub did not answer /ready within \(phaseTimeout) s of the SIGTERM")
            }
            let readyAt = monotonicNanos()
            let cpuAtReady = cpu()
            let readyAfterTerm = seconds(since: termAt)
            say(String(format: "/ready %.2f s after SIGTERM; %d subscribers reconnect at once with since", readyAfterTerm, closed))

            let resubscribed = Box(0)
            let retried = Box(0)
            let deadline = readyAt + nanos(phaseTimeout)
            await withTaskGroup(of: Void.self) { tasks in
                for subscriber in fleet where subscriber.lastEventID != nil {
                    tasks.addTask {
                        do {
                            let retries = try await subscriber.connect(
                                url: wsURL, pattern: pattern, since: subscriber.lastEventID, loop: group.next(), attempts: .max, deadline: deadline)
                            retried.add(retries)
                            let done = resubscribed.add(1)
                            if done % 10_000 == 0 { say("\(done) resubscribed") }
                        } catch {
                            failures.record("subscriber \(subscriber.index) resuming: \(error)")
                        }
                    }
                }
            }
            let allResubscribed = seconds(since: readyAt)
            say(String(format: "%d resubscribed %.2f s after /ready", resubscribed.value, allResubscribed))
            stopPublishing.set()
            await meanwhile?.value
            let lastMeanwhile = published.value
            var caughtUp: Double?
            if lastMeanwhile > seq, await tally.wait(seq: lastMeanwhile, count: connected, timeout: phaseTimeout) {
                caughtUp = seconds(since: readyAt)
            }
            let cpuResumed = cpu()
            // One more event through the restarted node: every subscriber must end with all of 1…seq.
            seq = lastMeanwhile + 1
            try await publisher.post(base, seq: seq)
            _ = await tally.wait(seq: seq, count: connected, timeout: phaseTimeout)
            try await Task.sleep(for: .seconds(1))
            let ledgers = fleet.map(\.ledger)
            let complete = ledgers.filter { $0.missing(of: seq) == 0 && $0.duplicates == 0 && $0.outOfOrder == 0 }.count
            let closedAfterResume = ledgers.reduce(into: [String: Int]()) { counts, ledger in
                if let closed = ledger.closedBy { counts[closed, default: 0] += 1 }
            }
            let missing = ledgers.reduce(0) { $0 + $1.missing(of: seq) }
            let duplicates = ledgers.reduce(0) { $0 + $1.duplicates }
            let outOfOrder = ledgers.reduce(0) { $0 + $1.outOfOrder }
            let resyncs = ledgers.reduce(0) { $0 + $1.resyncs }
            let conflated = await Self.conflatedCount(base)
            let notices = ledgers.reduce(into: [String: Int]()) { counts, ledger in
                if let notice = ledger.notice { counts[Self.withoutID(notice), default: 0] += 1 }
            }
            restartResult = Restart(
                all_closed_seconds: round3(allClosed), closed: closed, ready_after_term_seconds: round3(readyAfterTerm),
                all_resubscribed_seconds: round3(allResubscribed), resubscribed: resubscribed.value,
                retried_attempts: retried.value, published_meanwhile: lastMeanwhile - 1,
                publish_failures: publishFailures.count, first_publish_failure: publishFailures.first,
                all_caught_up_seconds: caughtUp.map(round3), events_total: seq, subscribers_complete: complete,
                missing: missing,
                conflated_by_hub: conflated,
                duplicates: duplicates,
                duplicated_events: Self.mostCommon(ledgers.flatMap(\.duplicatedSeqs), top: 10),
                out_of_order: outOfOrder,
                resyncs: resyncs,
                notices: notices,
                closed_after_resume: closedAfterResume,
                hub_rss_mib_after_resume: rssMiB(),
                hub_cpu_seconds_resuming: round3(cpuResumed.hub - cpuAtReady.hub),
                client_cpu_seconds_resuming: round3(cpuResumed.client - cpuAtReady.client))
        }

        let result = Result(
            subscribers: subscribers, connected: connected, connect_seconds: round3(connectSeconds),
            hub_rss_mib_before: rssBefore, hub_rss_mib_connected: rssConnected,
            hub_rss_kib_per_connection: connected > 0 ? ((rssConnected - rssBefore) * 1024 / Double(connected) * 10).rounded() / 10 : 0,
            hub_cpu_seconds_connecting: round3(cpuConnected.hub - cpuBeforeConnecting.hub),
            client_cpu_seconds_connecting: round3(cpuConnected.client - cpuBeforeConnecting.client),
            first_event_all_seconds: firstSeconds.map(round3), first_event_received: tally.count(seq: 1), restart: restartResult,
            failures: failures.count, first_failure: failures.first)
        print(Self.table(result))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        for subscriber in fleet { subscriber.close() }
        try await Task.sleep(for: .milliseconds(500))
        let whole = result.connected == subscribers && result.first_event_all_seconds != nil
            && (result.restart.map { $0.subscribers_complete == subscribers } ?? true)
        if !whole { throw ExitCode(1) }
    }

    /// The `top` most frequent of `seqs`, as "seq" → how often.
    static func mostCommon(_ seqs: [Int], top: Int) -> [String: Int] {
        let counts = seqs.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        return Dictionary(uniqueKeysWithValues: counts.sorted { $0.value > $1.value }.prefix(top).map { (String($0.key), $0.value) })
    }

    /// A hub message without its `"id":"s123",` (each subscriber's own), so that equal messages count together.
    static func withoutID(_ message: String) -> String {
        guard let start = message.range(of: #""id":""#),
              let end = message.range(of: #"","#, range: start.upperBound..<message.endIndex)
        else { return String(message.prefix(300)) }
        return String((message[..<start.lowerBound] + message[end.upperBound...]).prefix(300))
    }

    private func currentHubPID() -> Int32? {
        if let hubPIDFile, let text = try? String(contentsOfFile: hubPIDFile, encoding: .utf8),
           let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return pid }
        return hubPID
    }

    private static func waitReady(_ base: URL, timeout: Double) async -> Bool {
        let until = monotonicNanos() + nanos(timeout)
        var request = URLRequest(url: base.appendingPathComponent("ready"))
        request.timeoutInterval = 2
        while monotonicNanos() < until {
            if let (_, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                return true
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// "  CPU connecting     hub 2.31 s (231 µs a subscriber), harness 2.90 s (290 µs)".
    static func cpuLine(_ phase: String, hub: Double, client: Double, per count: Int) -> String {
        let each = { (seconds: Double) in count > 0 ? String(format: " (%.0f µs a subscriber)", seconds / Double(count) * 1e6) : "" }
        return "  CPU " + phase.padding(toLength: 15, withPad: " ", startingAt: 0)
            + String(format: "hub %.2f s", hub) + each(hub) + String(format: ", harness %.2f s", client) + each(client)
    }

    static func table(_ result: Result) -> String {
        var lines = [
            String(format: "idle subscribers: %d of %d subscribed in %.2f s", result.connected, result.subscribers, result.connect_seconds),
            String(format: "  hub RSS            %.1f MiB before, %.1f MiB with them: %.1f KiB per connection",
                   result.hub_rss_mib_before, result.hub_rss_mib_connected, result.hub_rss_kib_per_connection),
            Self.cpuLine("connecting", hub: result.hub_cpu_seconds_connecting, client: result.client_cpu_seconds_connecting, per: result.connected),
            result.first_event_all_seconds.map { String(format: "  one event          reached all %d in %.3f s", result.first_event_received, $0) }
                ?? "  one event          reached only \(result.first_event_received)",
        ]
        if let restart = result.restart {
            lines += [
                String(format: "  restart            %d connections closed %.2f s after SIGTERM; /ready %.2f s after SIGTERM",
                       restart.closed, restart.all_closed_seconds, restart.ready_after_term_seconds),
                String(format: "  resume             %d subscribed again with since %.2f s after /ready (%d attempts retried)",
                       restart.resubscribed, restart.all_resubscribed_seconds, restart.retried_attempts),
                "  published meanwhile \(restart.published_meanwhile) events; all had them "
                    + (restart.all_caught_up_seconds.map { String(format: "%.2f s after /ready", $0) } ?? "—"),
                "  delivery check     \(restart.subscribers_complete) of \(result.subscribers) got all \(restart.events_total) events once, each machine's in order; "
                    + "missing \(restart.missing)"
                    + (restart.conflated_by_hub.map { " (conflated by the hub for slow readers: \($0))" } ?? "")
                    + ", duplicates \(restart.duplicates), out of order \(restart.out_of_order), resync \(restart.resyncs)",
                Self.cpuLine("resuming", hub: restart.hub_cpu_seconds_resuming, client: restart.client_cpu_seconds_resuming, per: restart.resubscribed),
                String(format: "  hub RSS after the resume %.1f MiB", restart.hub_rss_mib_after_resume),
            ]
            if let failure = restart.first_publish_failure {
                lines.append("  publish failures   \(restart.publish_failures), each sent again; first: \(failure.prefix(200))")
            }
            if !restart.duplicated_events.isEmpty {
                let listed = restart.duplicated_events.sorted { $0.value > $1.value }.map { "\($0.key) (\($0.value)×)" }
                lines.append("  events got twice   " + listed.joined(separator: ", "))
            }
            for (reason, count) in restart.closed_after_resume.sorted(by: { $0.value > $1.value }) {
                lines.append("  closed by the hub after resuming (\(count)×): \(reason)")
            }
            for (notice, count) in restart.notices.sorted(by: { $0.value > $1.value }) { lines.append("  hub said (\(count)×): \(notice)") }
        }
        if let failure = result.first_failure { lines.append("  failures \(result.failures); first: \(failure)") }
        return lines.joined(separator: "\n")
    }
}

private func say(_ text: String) { FileHandle.standardError.write(Data("resume: \(text)\n".utf8)) }
private func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }
private func seconds(since start: UInt64) -> Double { Double(monotonicNanos() - start) / 1e9 }
private func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

extension Box where Value == Int {
    /// Adds `amount`; returns the new value.
    @discardableResult
    func add(_ amount: Int) -> Int {
        var result = 0
        update { $0 += amount; result = $0 }
        return result
    }
}

/// Deliveries per event sequence number, summed over subscribers.
final class DeliveryTally: Sendable {
    private let counts = Mutex<[Int: Int]>([:])

    func record(seq: Int) { counts.withLock { $0[seq, default: 0] += 1 } }
    func count(seq: Int) -> Int { counts.withLock { $0[seq] ?? 0 } }

    /// Polls every millisecond until `count` subscribers have event `seq`.
    func wait(seq: Int, count: Int, timeout: Double) async -> Bool {
        let until = monotonicNanos() + nanos(timeout)
        while self.count(seq: seq) < count {
            guard monotonicNanos() < until else { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}

/// POSTs the numbered events every subscriber must receive (data.resume_seq), one at a time, as a careful MES
/// would: each event carries its own `idempotency_key`, and a 503 is followed by resending after `Retry-After`
/// (a storm on one node may starve the box enough for the other node's Redis command to time out), so an event
/// is acknowledged once however many tries it takes.
struct EventPoster: Sendable {
    var line: String
    /// Tries per event, 503s included, before the run fails.
    var attempts = 10

    struct Refused: Error, CustomStringConvertible {
        var status: Int
        var description: String { "POST /v1/events answered \(status)" }
    }

    /// The machine event `seq` is about: a hundred, in turn, so the events spread over every partition.
    static func machine(ofSeq seq: Int) -> Int { seq % 100 }

    func post(_ base: URL, seq: Int) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let timestamp = formatter.string(from: Date())
        let body = #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-\#(Self.machine(ofSeq: seq))","line":"\#(line)","timestamp":"\#(timestamp)","idempotency_key":"resume-\#(seq)","data":{"current_status":"running","resume_seq":\#(seq)},"metadata":{"source":"resume","triggered_by":"system"}}"#
        var request = URLRequest(url: base.appendingPathComponent("v1/events"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        request.timeoutInterval = 10
        for attempt in 1...attempts {
            let (_, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            let status = http?.statusCode ?? 0
            if status == 202 { return }
            guard status == 503, attempt < attempts else { throw Refused(status: status) }
            let retryAfter = http?.value(forHTTPHeaderField: "Retry-After").flatMap(Double.init) ?? 1
            try await Task.sleep(for: .seconds(min(max(retryAfter, 0.1), 5)))
        }
    }
}

/// What one subscriber received over all its connections: events are numbered 1, 2, … in publish order, one
/// pattern sees them all, and each must come once. The hub keeps order per entity (per partition: with several
/// partitions a resume replays them one after another), so order is checked per machine (`EventPoster.machine`).
struct ResumeLedger: Sendable {
    /// Bit `seq` set: event `seq` arrived.
    private var received: [UInt64] = []
    /// Machine → the highest seq of its events that arrived.
    private var lastSeqOfMachine: [Int: Int] = [:]
    var lastEventID: String?
    var duplicates = 0
    /// The first few events that arrived twice: the same ones at every subscriber mean an event stored twice (a
    /// publisher's retry), scattered ones a delivery twice.
    var duplicatedSeqs: [Int] = []
    var outOfOrder = 0
    var resyncs = 0
    /// The hub's first `resync` or `error` message on this subscriber's resume, as sent.
    var notice: String?
    /// The hub's close frame (code and reason) on the subscriber's latest connection, if it closed one.
    var closedBy: String?

    mutating func record(seq: Int) {
        let (word, bit) = (seq / 64, UInt64(1) << UInt64(seq % 64))
        if word >= received.count { received.append(contentsOf: repeatElement(0, count: word + 1 - received.count)) }
        guard received[word] & bit == 0 else {
            if duplicatedSeqs.count < 64 { duplicatedSeqs.append(seq) }
            return duplicates += 1
        }
        received[word] |= bit
        let machine = EventPoster.machine(ofSeq: seq)
        if let last = lastSeqOfMachine[machine], last > seq { outOfOrder += 1 }
        lastSeqOfMachine[machine] = max(seq, lastSeqOfMachine[machine] ?? 0)
    }

    /// Events of 1…`total` that never arrived.
    func missing(of total: Int) -> Int {
        (1...max(1, total)).count { seq in
            let word = seq / 64
            return word >= received.count || received[word] & (UInt64(1) << UInt64(seq % 64)) == 0
        }
    }
}

/// One idle subscriber that survives its node's restart by resubscribing with `since`.
final class ResumeSubscriber: Sendable {
    let index: Int
    let source: SocketAddress?
    let tally: DeliveryTally
    private let state = Mutex<(ledger: ResumeLedger, channel: (any Channel)?, closed: EventLoopFuture<Void>?)>((ResumeLedger(), nil, nil))

    init(index: Int, source: SocketAddress?, tally: DeliveryTally) {
        self.index = index
        self.source = source
        self.tally = tally
    }

    var ledger: ResumeLedger { state.withLock { $0.ledger } }
    var lastEventID: String? { state.withLock { $0.ledger.lastEventID } }
    var isConnected: Bool { state.withLock { $0.channel != nil } }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Connects and subscribes (with `since`, when given) until the hub confirms; retries a failed attempt after
    /// 100–300 ms up to `attempts` times or until `deadline`. Returns the number of failed attempts.
    @discardableResult
    func connect(url: String, pattern: String, since: String?, loop: any EventLoop, attempts: Int, deadline: UInt64) async throws -> Int {
        let sinceField = since.map { #","since":"\#($0)""# } ?? ""
        let message = #"{"op":"subscribe","id":"s\#(index)","channels":["\#(pattern)"]\#(sinceField)}"#
        var failed = 0
        while true {
            do {
                try await attempt(url: url, message: message, loop: loop, deadline: deadline)
                return failed
            } catch {
                failed += 1
                guard failed < attempts, monotonicNanos() < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(Int64.random(in: 100...300)))
            }
        }
    }

    private func attempt(url: String, message: String, loop: any EventLoop, deadline: UInt64) async throws {
        let subscribed = loop.makePromise(of: Void.self)
        let closed = loop.makePromise(of: Void.self)
        let remaining = TimeAmount.nanoseconds(Int64(max(1_000_000, Int64(deadline) - Int64(monotonicNanos()))))
        let channel: any Channel
        do {
            channel = try await SubscriberConnection.upgrade(url: url, source: source, loop: loop, connectTimeout: min(remaining, .seconds(60))) { channel in
                try channel.pipeline.syncOperations.addHandler(Handler(subscriber: self, subscribed: subscribed, closed: closed))
            }
        } catch {
            subscribed.fail(error)
            closed.succeed(())
            throw error
        }
        let watchdog = loop.scheduleTask(in: min(remaining, .seconds(120))) {
            subscribed.fail(Failed(description: "no answer to subscribe"))
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: channel.allocator.buffer(string: message)))
        try await subscribed.futureResult.get()
        state.withLock {
            $0.channel = channel
            $0.closed = closed.futureResult
            // A close seen on an earlier connection (the node's shutdown, 1001) is over.
            $0.ledger.closedBy = nil
        }
    }

    /// Waits until the current connection has closed (the hub's 1001 on shutdown).
    func waitClosed(timeout: Double) async -> Bool {
        guard let closed = state.withLock({ $0.closed }) else { return true }
        let timer = closed.eventLoop.scheduleTask(in: .nanoseconds(Int64(nanos(max(0.001, timeout))))) {}
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let once = OnceFlag()
            closed.whenComplete { _ in if once.claim() { continuation.resume(returning: true) } }
            timer.futureResult.whenSuccess { if once.claim() { continuation.resume(returning: false) } }
        }
    }

    func close() {
        if let channel = state.withLock({ $0.channel }) { SubscriberConnection.close(channel) }
    }

    fileprivate func received(seq: Int, eventID: String?) {
        state.withLock { state in
            state.ledger.record(seq: seq)
            if let eventID { state.ledger.lastEventID = eventID }
        }
        tally.record(seq: seq)
    }

    fileprivate func connectionClosed() {
        state.withLock { $0.channel = nil }
    }

    fileprivate func closedByHub(_ text: String) { state.withLock { $0.ledger.closedBy = text } }

    fileprivate func resynced(_ text: String) { state.withLock { $0.ledger.resyncs += 1; $0.ledger.notice = $0.ledger.notice ?? text } }

    fileprivate func answered(_ text: String) { state.withLock { $0.ledger.notice = $0.ledger.notice ?? text } }

    /// Reads the hub's frames on the event loop: `subscribed`, events (by byte search, not parsed), pings, close.
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        static let seqKey = Array(#""resume_seq":"#.utf8)
        static let idKey = Array(#""event_id":""#.utf8)
        /// On a hub with several partitions an event frame ends with the resume token after it, which is where to
        /// resume from (ids do not order across partitions).
        static let positionKey = Array(#","position":""#.utf8)
        static let eventOp = Array(#""op":"event""#.utf8)
        /// A machine left without news for its TTL (a run that waits minutes for a slow catch-up) is announced stale,
        /// with its last state — `resume_seq` included — inside: not one of the numbered events.
        static let staleType = Array(#""event_type":"status_stale""#.utf8)
        static let subscribedOp = Array(#""op":"subscribed""#.utf8)
        static let resyncOp = Array(#""op":"resync""#.utf8)
        static let errorOp = Array(#""op":"error""#.utf8)

        private let subscriber: ResumeSubscriber
        private let subscribed: EventLoopPromise<Void>
        private let closed: EventLoopPromise<Void>

        init(subscriber: ResumeSubscriber, subscribed: EventLoopPromise<Void>, closed: EventLoopPromise<Void>) {
            self.subscriber = subscriber
            self.subscribed = subscribed
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text:
                let parsed = frame.unmaskedData.withUnsafeReadableBytes { bytes -> (seq: Int?, id: String?, kind: Int) in
                    if FrameTracker.find(Self.eventOp, in: bytes, from: 0) != nil {
                        if FrameTracker.find(Self.staleType, in: bytes, from: 0) != nil { return (nil, nil, 4) }
                        guard var at = FrameTracker.find(Self.seqKey, in: bytes, from: 0), let seq = FrameTracker.integer(bytes, &at) else {
                            return (nil, nil, 0)
                        }
                        var id: String?
                        if let start = FrameTracker.find(Self.idKey, in: bytes, from: 0),
                           let end = bytes[start...].firstIndex(of: UInt8(ascii: "\""))
                        {
                            id = String(decoding: bytes[start..<end], as: UTF8.self)
                        }
                        // The frame's last `,"position":"`: the event's own JSON comes before it.
                        var tokenStart: Int?
                        var from = 0
                        while let found = FrameTracker.find(Self.positionKey, in: bytes, from: from) {
                            tokenStart = found
                            from = found
                        }
                        if let start = tokenStart, let end = bytes[start...].firstIndex(of: UInt8(ascii: "\"")) {
                            let token = String(decoding: bytes[start..<end], as: UTF8.self)
                            if token.hasPrefix("r1.") { id = token }
                        }
                        return (seq, id, 0)
                    }
                    if FrameTracker.find(Self.subscribedOp, in: bytes, from: 0) != nil { return (nil, nil, 1) }
                    if FrameTracker.find(Self.resyncOp, in: bytes, from: 0) != nil { return (nil, nil, 2) }
                    if FrameTracker.find(Self.errorOp, in: bytes, from: 0) != nil { return (nil, nil, 3) }
                    return (nil, nil, 4)
                }
                switch parsed.kind {
                case 0: if let seq = parsed.seq { subscriber.received(seq: seq, eventID: parsed.id) }
                case 1: subscribed.succeed(())
                case 2: subscriber.resynced(String(buffer: frame.unmaskedData))
                case 3:
                    subscriber.answered(String(buffer: frame.unmaskedData))
                    subscribed.fail(Failed(description: "hub answered: \(String(buffer: frame.unmaskedData).prefix(300))"))
                default: break
                }
            case .ping:
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
            case .connectionClose:
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode().map { "\(UInt16(webSocketErrorCode: $0))" } ?? "no code"
                subscriber.closedByHub("\(code) \(String(buffer: data))")
                // Answer the close (RFC 6455 §5.5.1) and let the hub close the socket, so that the hub, not this
                // source port, holds the TIME_WAIT (the reconnect needs the ports); close it ourselves 2 s later.
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
                let channel = context.channel
                context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            subscriber.connectionClosed()
            subscribed.fail(Failed(description: "closed before subscribed"))
            closed.succeed(())
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
