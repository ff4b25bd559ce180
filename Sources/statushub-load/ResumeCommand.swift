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

            A process holds a descriptor per subscriber and no more than `ulimit -n`: past that the subscribers are \
            held in several processes (--processes, by default as many as the limit needs), each a slice of them, \
            slice i connecting to the i-th --url in turn. Given several --url (nodes on one Redis, each with its \
            --hub-pid-file), RSS and CPU are summed over the nodes, --restart stops them all at once and the \
            subscribers reconnect once every one answers /ready.

            Exit status: 0 when every subscriber connected, resumed and got every event exactly once; 1 otherwise.

            Example:
              statushub-load resume --url http://127.0.0.1:8080 --subscribers 100000 \\
                --source-addresses 127.0.0.2-127.0.0.11 --hub-pid-file hub.pid --restart \\
                --publish-url http://127.0.0.1:8081
            """
    )

    @Option(help: "The node the subscribers connect to (HTTP base URL). Repeated: several nodes, one per slice in turn (--processes).")
    var url: [String] = ["http://127.0.0.1:8080"]

    @Option(help: "A node on the same Redis that takes the events published while --url restarts (default: none are published then).")
    var publishURL: String?

    @Option(help: "Idle subscribers.")
    var subscribers = 10_000

    @Option(help: "The line every subscriber listens to (line:<line>:*) and every event is published on.")
    var line = "Line-0"

    @Option(help: "Subscribers connecting at the same time in the first phase, over all slices (the reconnect after the restart is all at once).")
    var connectConcurrency = 1000

    @Option(help: ArgumentHelp(SourceAddresses.help))
    var sourceAddresses: SourceAddresses?

    @Option(help: """
        Processes holding the subscribers, each a slice of them (default: one per `ulimit -n` − 500 subscribers, and one \
        per --url at least: a process holds a descriptor per subscriber and no more than its limit).
        """)
    var processes: Int?

    @Option(name: .customLong("hub-pid"), help: "A hub process (RSS and CPU summed; SIGTERM with --restart). Repeatable.")
    var hubPID: [Int32] = []

    @Option(name: .customLong("hub-pid-file"), help: "A file holding a hub's PID, read again after the restart (overrides --hub-pid). Repeatable.")
    var hubPIDFile: [String] = []

    @Flag(help: "Restart the node under the subscribers (SIGTERM; someone else starts it again) and measure the resume.")
    var restart = false

    @Option(help: "Seconds between events published through --publish-url while the subscribers are away.")
    var publishEvery: Double = 0.1

    @Option(help: "Seconds to let the hub settle before each RSS reading.")
    var settle: Double = 5

    @Option(help: "Seconds each phase may take (connecting, a delivery, the restart and resume).")
    var phaseTimeout: Double = 300

    @Option(help: "Event-loop threads per process (default: the CPUs this process may use, taskset included).")
    var threads: Int?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Option(help: "Seconds to keep every subscriber connected after the report, for a look inside the nodes (RSS, heap).")
    var hold: Double = 0

    func validate() throws {
        guard subscribers >= 1, connectConcurrency >= 1 else { throw ValidationError("--subscribers and --connect-concurrency must be >= 1") }
        guard publishEvery > 0, settle >= 0, phaseTimeout > 0, hold >= 0 else {
            throw ValidationError("--publish-every and --phase-timeout must be > 0, --settle and --hold >= 0")
        }
        guard !url.isEmpty else { throw ValidationError("--url needs a node") }
        for candidate in url + (publishURL.map { [$0] } ?? []) {
            guard let parsed = URL(string: candidate), parsed.scheme == "http", parsed.host != nil else {
                throw ValidationError("--url and --publish-url must be http://host[:port]")
            }
        }
        if let processes, processes < url.count || processes > subscribers {
            throw ValidationError("--processes must be at least the number of --url nodes (\(url.count)) and at most --subscribers")
        }
        if restart && hubPID.isEmpty && hubPIDFile.isEmpty { throw ValidationError("--restart needs --hub-pid or --hub-pid-file") }
    }

    /// Slices the subscribers need: `--processes`, or one per `ulimit -n` less 500 (the process's own files and
    /// sockets), and at least one per node.
    func sliceCount() -> Int {
        if let processes { return processes }
        let perProcess = max(1_000, DescriptorLimit.current().soft - 500)
        return max(url.count, (subscribers + perProcess - 1) / perProcess)
    }

    struct Result: Codable {
        var subscribers: Int
        /// Harness processes holding them (slices), and the nodes they connected to.
        var processes: Int
        var nodes: Int
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
        /// CPU time from the POST until every subscriber had that one event (or the wait gave up).
        var hub_cpu_seconds_first_event: Double
        var client_cpu_seconds_first_event: Double
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

    /// `statushub_conflated_total` from the nodes' `/metrics`, summed; nil if one cannot be read.
    static func conflatedCount(_ bases: [URL]) async -> Int? {
        var total = 0
        for base in bases {
            guard let (data, _) = try? await URLSession.shared.data(from: base.appendingPathComponent("metrics")) else { return nil }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("statushub_conflated_total ") }
            guard let count = line.flatMap({ $0.split(separator: " ").last }).flatMap({ Double($0) }) else { return nil }
            total += Int(count)
        }
        return total
    }

    func run() async throws {
        let bases = url.map { URL(string: $0)! }
        let wsURLs = bases.map { "ws://\($0.host!):\($0.port ?? 80)/v1/ws" }
        let sliceCount = sliceCount()
        let slices: [any ResumeSlice] = try (0..<sliceCount).map { index in
            let first = subscribers * index / sliceCount, count = subscribers * (index + 1) / sliceCount - first
            if sliceCount == 1 {
                return LocalResumeSlice(
                    first: 0, count: subscribers, sources: sourceAddresses, line: line,
                    threads: threads ?? CPUAffinity.allowedCPUs(), label: "")
            }
            return try ResumeSliceProcess(index: index, first: first, count: count, sources: sourceAddresses?.argument, line: line, threads: threads)
        }
        let harnessPIDs = [getpid()] + slices.flatMap(\.processIDs)
        let publisher = EventPoster(line: line)
        var failures = (count: 0, first: String?.none)
        func record(_ count: Int, _ first: String?) {
            failures.count += count
            if failures.first == nil { failures.first = first }
        }

        func rssMiB() -> Double { (Double(HubProbe(pids: currentHubPIDs()).read().rssBytes) / 1_048_576 * 10).rounded() / 10 }
        let rssBefore = rssMiB()
        // CPU seconds of the hubs (as the pid files name them now) and of this harness, its slices included.
        func cpu() -> (hub: Double, client: Double) {
            (HubProbe(pids: currentHubPIDs()).read().cpuSeconds, HubProbe(pids: harnessPIDs).read().cpuSeconds)
        }
        /// Runs `body` on every slice at once; the replies in slice order.
        func everySlice<Reply: Sendable>(_ body: @escaping @Sendable (Int, any ResumeSlice) async throws -> Reply) async throws -> [Reply] {
            try await withThrowingTaskGroup(of: (Int, Reply).self) { tasks in
                for (index, slice) in slices.enumerated() { tasks.addTask { (index, try await body(index, slice)) } }
                var replies = [(Int, Reply)]()
                for try await reply in tasks { replies.append(reply) }
                return replies.sorted { $0.0 < $1.0 }.map(\.1)
            }
        }
        let cpuBeforeConnecting = cpu()

        // Phase 1: connect everyone, --connect-concurrency at a time over all slices.
        say("connecting \(subscribers) subscribers to \(wsURLs.joined(separator: ", ")) (\(connectConcurrency) at a time, \(sliceCount) process\(sliceCount == 1 ? "" : "es"))")
        let connectStart = monotonicNanos()
        let (perSlice, timeout) = (max(1, connectConcurrency / sliceCount), phaseTimeout)
        let connectReplies = try await everySlice { index, slice in
            try await slice.connect(url: wsURLs[index % wsURLs.count], concurrency: perSlice, timeout: timeout)
        }
        let connectSeconds = seconds(since: connectStart)
        let cpuConnected = cpu()
        let connected = connectReplies.reduce(0) { $0 + $1.connected }
        for reply in connectReplies { record(reply.failures, reply.first_failure) }
        say(String(format: "%d of %d subscribed in %.2f s", connected, subscribers, connectSeconds))
        try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
        let rssConnected = rssMiB()

        /// Waits until every slice's connected subscribers have event `seq`: whether all have, and how many do.
        func arrival(of seq: Int) async throws -> (all: Bool, count: Int) {
            let replies = try await everySlice { _, slice in try await slice.wait(seq: seq, timeout: timeout) }
            return (replies.allSatisfy(\.all), replies.reduce(0) { $0 + $1.count })
        }

        // One event to everybody.
        var seq = 1
        let cpuBeforeFirst = cpu()
        let firstStart = monotonicNanos()
        try await publisher.post(bases[0], seq: seq)
        let first = try await arrival(of: seq)
        let firstSeconds = first.all ? seconds(since: firstStart) : nil
        let cpuFirst = cpu()
        say("event 1 reached \(first.count) of \(connected)" + (firstSeconds.map { String(format: " in %.3f s", $0) } ?? ""))

        var restartResult: Restart?
        let pids = currentHubPIDs()
        if restart, !pids.isEmpty {
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
            let termAt = monotonicNanos()
            say("SIGTERM to the hub\(pids.count == 1 ? "" : "s") (\(pids.map(String.init).joined(separator: ", ")))")
            for pid in pids { kill(pid, SIGTERM) }
            let closedReplies = try await everySlice { _, slice in try await slice.waitClosed(timeout: timeout) }
            let closed = closedReplies.reduce(0) { $0 + $1.closed }
            let allClosed = seconds(since: termAt)
            say(String(format: "%d of %d connections closed %.2f s after SIGTERM; waiting for /ready",
                       closed, closedReplies.reduce(0) { $0 + $1.present }, allClosed))
            var allReady = true
            for base in bases where !(await Self.waitReady(base, timeout: phaseTimeout - seconds(since: termAt))) { allReady = false }
            guard allReady else {
                stopPublishing.set()
                await meanwhile?.value
                throw ValidationError("the hub did not answer /ready within \(phaseTimeout) s of the SIGTERM")
            }
            let readyAt = monotonicNanos()
            let cpuAtReady = cpu()
            let readyAfterTerm = seconds(since: termAt)
            say(String(format: "/ready %.2f s after SIGTERM; %d subscribers reconnect at once with since", readyAfterTerm, closed))

            let resumeReplies = try await everySlice { index, slice in
                try await slice.resume(url: wsURLs[index % wsURLs.count], timeout: timeout)
            }
            let resubscribed = resumeReplies.reduce(0) { $0 + $1.resubscribed }
            for reply in resumeReplies { record(reply.failures, reply.first_failure) }
            let allResubscribed = seconds(since: readyAt)
            say(String(format: "%d resubscribed %.2f s after /ready", resubscribed, allResubscribed))
            stopPublishing.set()
            await meanwhile?.value
            let lastMeanwhile = published.value
            var caughtUp: Double?
            if lastMeanwhile > seq, try await arrival(of: lastMeanwhile).all {
                caughtUp = seconds(since: readyAt)
            }
            let cpuResumed = cpu()
            // One more event through the restarted node: every subscriber must end with all of 1…seq.
            seq = lastMeanwhile + 1
            try await publisher.post(bases[0], seq: seq)
            _ = try await arrival(of: seq)
            try await Task.sleep(for: .seconds(1))
            let total = seq
            let reports = try await everySlice { _, slice in try await slice.report(total: total) }
            func summed(_ field: KeyPath<ResumeSliceReply.Report, Int>) -> Int { reports.reduce(0) { $0 + $1[keyPath: field] } }
            func merged(_ field: KeyPath<ResumeSliceReply.Report, [String: Int]>) -> [String: Int] {
                reports.reduce(into: [:]) { all, report in all.merge(report[keyPath: field], uniquingKeysWith: +) }
            }
            let conflated = await Self.conflatedCount(bases)
            restartResult = Restart(
                all_closed_seconds: round3(allClosed), closed: closed, ready_after_term_seconds: round3(readyAfterTerm),
                all_resubscribed_seconds: round3(allResubscribed), resubscribed: resubscribed,
                retried_attempts: resumeReplies.reduce(0) { $0 + $1.retried }, published_meanwhile: lastMeanwhile - 1,
                publish_failures: publishFailures.count, first_publish_failure: publishFailures.first,
                all_caught_up_seconds: caughtUp.map(round3), events_total: seq, subscribers_complete: summed(\.complete),
                missing: summed(\.missing),
                conflated_by_hub: conflated,
                duplicates: summed(\.duplicates),
                duplicated_events: Self.mostCommon(merged(\.duplicated_events), top: 10),
                out_of_order: summed(\.out_of_order),
                resyncs: summed(\.resyncs),
                notices: merged(\.notices),
                closed_after_resume: merged(\.closed_after_resume),
                hub_rss_mib_after_resume: rssMiB(),
                hub_cpu_seconds_resuming: round3(cpuResumed.hub - cpuAtReady.hub),
                client_cpu_seconds_resuming: round3(cpuResumed.client - cpuAtReady.client))
        }

        let result = Result(
            subscribers: subscribers, processes: sliceCount, nodes: bases.count, connected: connected, connect_seconds: round3(connectSeconds),
            hub_rss_mib_before: rssBefore, hub_rss_mib_connected: rssConnected,
            hub_rss_kib_per_connection: connected > 0 ? ((rssConnected - rssBefore) * 1024 / Double(connected) * 10).rounded() / 10 : 0,
            hub_cpu_seconds_connecting: round3(cpuConnected.hub - cpuBeforeConnecting.hub),
            client_cpu_seconds_connecting: round3(cpuConnected.client - cpuBeforeConnecting.client),
            first_event_all_seconds: firstSeconds.map(round3), first_event_received: first.count,
            hub_cpu_seconds_first_event: round3(cpuFirst.hub - cpuBeforeFirst.hub),
            client_cpu_seconds_first_event: round3(cpuFirst.client - cpuBeforeFirst.client), restart: restartResult,
            failures: failures.count, first_failure: failures.first)
        print(Self.table(result))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if hold > 0 {
            say("holding the subscribers for \(hold) s")
            try await Task.sleep(for: .milliseconds(Int64(hold * 1000)))
        }
        for slice in slices { await slice.close() }
        let whole = result.connected == subscribers && result.first_event_all_seconds != nil
            && (result.restart.map { $0.subscribers_complete == subscribers } ?? true)
        if !whole { throw ExitCode(1) }
    }

    /// The `top` most frequent of `counts` (seq → subscribers that got it twice).
    static func mostCommon(_ counts: [String: Int], top: Int) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: counts.sorted { $0.value > $1.value }.prefix(top).map { ($0.key, $0.value) })
    }

    /// A hub message without its `"id":"s123",` (each subscriber's own), so that equal messages count together.
    static func withoutID(_ message: String) -> String {
        guard let start = message.range(of: #""id":""#),
              let end = message.range(of: #"","#, range: start.upperBound..<message.endIndex)
        else { return String(message.prefix(300)) }
        return String((message[..<start.lowerBound] + message[end.upperBound...]).prefix(300))
    }

    /// The hubs as the pid files name them now (a restarted hub has a new one), else --hub-pid.
    private func currentHubPIDs() -> [Int32] {
        guard !hubPIDFile.isEmpty else { return hubPID }
        return hubPIDFile.compactMap { file in
            (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
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
            String(format: "idle subscribers: %d of %d subscribed in %.2f s", result.connected, result.subscribers, result.connect_seconds)
                + (result.processes > 1 || result.nodes > 1 ? " (\(result.processes) harness processes, \(result.nodes) nodes)" : ""),
            String(format: "  hub RSS            %.1f MiB before, %.1f MiB with them: %.1f KiB per connection",
                   result.hub_rss_mib_before, result.hub_rss_mib_connected, result.hub_rss_kib_per_connection),
            Self.cpuLine("connecting", hub: result.hub_cpu_seconds_connecting, client: result.client_cpu_seconds_connecting, per: result.connected),
            result.first_event_all_seconds.map { String(format: "  one event          reached all %d in %.3f s", result.first_event_received, $0) }
                ?? "  one event          reached only \(result.first_event_received)",
            Self.cpuLine("one event", hub: result.hub_cpu_seconds_first_event, client: result.client_cpu_seconds_first_event,
                         per: result.first_event_received),
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
