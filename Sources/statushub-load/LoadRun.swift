import Foundation
import Histogram
import Logging
import NIOCore
import NIOPosix
import Synchronization

struct LoadOutcome {
    var report: Report
    var exitCode: Int32
}

/// One run: subscribers first (all subscribed before the first publish), then the publish schedule, then the
/// drain, then the report.
struct LoadRun {
    let config: LoadConfig

    func run() async throws -> LoadOutcome {
        let runID = String(format: "%08x", UInt32.random(in: .min ... .max))
        let logger = {
            var logger = Logger(label: "statushub-load")
            logger.logLevel = .error
            return logger
        }()
        let stats = DeliveryStats(shardCount: 16, publishers: config.publishers, eventsPerPublisher: config.eventsPerPublisher)
        let stop = StopSignal()
        let readiness = Readiness()
        let gate = AsyncSemaphore(permits: config.connectConcurrency)
        let counters = PublishCounters()
        // One event loop per CPU we may use; subscribers' tasks run on their connection's loop.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        defer { group.shutdownGracefully { _ in } }
        let executors = group.makeIterator().map { EventLoopTaskExecutor($0) }
        let config = self.config
        let probe = HubProbe(pids: config.hubPIDs)
        let beforeSubscribers = probe.read()
        let clientCPUBeforeSubscribers = processCPUSeconds()
        let connectStart = monotonicNanos()

        return try await withThrowingTaskGroup(of: SubscriberResult.self, returning: LoadOutcome.self) { tasks in
            for index in 0..<config.subscribers {
                let executor = executors[index % executors.count]
                tasks.addTask(executorPreference: executor) {
                    await runSubscriber(
                        index: index, runID: runID, config: config, loop: executor.loop, stats: stats, stop: stop,
                        readiness: readiness, gate: gate, logger: logger
                    )
                }
            }
            func collectSubscribers() async throws -> [SubscriberResult] {
                stop.fire()
                var results: [SubscriberResult] = []
                for try await result in tasks { results.append(result) }
                return results.sorted { $0.index < $1.index }
            }

            // 1. Every subscriber connected and subscribed (or failed), within --connect-timeout.
            let connectDeadline = monotonicNanos() + UInt64(config.connectTimeout * 1e9)
            while true {
                let (ready, failed) = readiness.snapshot
                if ready + failed >= config.subscribers || monotonicNanos() > connectDeadline { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let connectPhase = Double(monotonicNanos() - connectStart) / 1e6
            // What connecting cost each side, read before the settle below: the connect time is both processes' work.
            let subscribedReading = probe.read()
            let clientCPUConnecting = processCPUSeconds() - clientCPUBeforeSubscribers
            // Let the hub settle (and the allocator return what connecting used) before reading its memory.
            if probe.isEnabled && config.subscribers > 0 { try await Task.sleep(for: .milliseconds(500)) }
            let afterSubscribers = probe.read()
            let (ready, _) = readiness.snapshot
            if ready < config.subscribers {
                let results = try await collectSubscribers()
                let errors = Array(Set(results.compactMap(\.error))).sorted()
                log("\(config.subscribers - ready) of \(config.subscribers) subscribers did not subscribe: \(errors.first ?? "timed out")")
                var builder = ReportBuilder(config: config, runID: runID)
                builder.subscribers = results
                builder.connectPhaseMillis = connectPhase
                return LoadOutcome(report: builder.build(), exitCode: 2)
            }
            if config.progress { log("\(ready) subscribers subscribed (\(config.mapping)); publishing for \(config.duration) s") }

            // 2. Publishers: connect, then start together.
            var publishers: [(channel: any Channel, result: EventLoopFuture<PublisherResult>)] = []
            for id in 0..<config.publishers {
                publishers.append(try await connectPublisher(id: id, runID: runID, config: config, counters: counters, group: group))
            }
            let finished = FinishedCount()
            for publisher in publishers { publisher.result.whenComplete { _ in finished.increment() } }
            let hubMetrics = config.templates == nil ? URL(string: "http://\(config.host):\(config.port)") : nil
            var hubHistogramAtStart: HubDeliveryHistogram?
            if let hubMetrics { hubHistogramAtStart = await HubDeliveryHistogram.read(from: hubMetrics) }
            let cpuAtStart = processCPUSeconds()
            let hubAtStart = probe.read()
            var hubLast = hubAtStart
            let start = monotonicNanos() + 20_000_000
            for publisher in publishers {
                let channel = publisher.channel
                channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(StartPublishing(startNanos: start)) }
            }

            // 3. Progress each second; abort publishers that outlive their schedule by 10 s; then drain.
            var total = makeHistogram()
            var timeline: [ProgressSample] = []
            var lastDelivered = 0
            var nextReport = start + 1_000_000_000
            let publishDeadline = start + UInt64((config.duration + 10) * 1e9)
            var aborted = false
            var expected: Int?
            var drainDeadline: UInt64 = 0
            var publisherResults: [PublisherResult] = []
            var hubLatency: HubLatency?
            func sample(_ now: UInt64, final: Bool = false) {
                let interval = stats.takeInterval()
                total.add(interval.histogram)
                // The closing sample only merges what the last one missed, unless the drain took a while.
                if final, let last = timeline.last, Double(now - start) / 1e9 - last.t_s < 0.25 { return }
                let seconds = Double(now - start) / 1e9
                let perSecond = Double(interval.delivered - lastDelivered) / max(seconds - (timeline.last?.t_s ?? 0), 0.001)
                lastDelivered = interval.delivered
                var hubCPU: Double?
                var hubRSS: Double?
                if probe.isEnabled {
                    let reading = probe.read()
                    hubCPU = (reading.cpuSeconds - hubLast.cpuSeconds) / max(Double(reading.atNanos - hubLast.atNanos) / 1e9, 0.001) * 100
                    hubRSS = Double(reading.rssBytes) / 1_048_576
                    hubLast = reading
                }
                let point = ProgressSample(
                    t_s: (seconds * 10).rounded() / 10, sent: counters.sent.load(ordering: .relaxed),
                    accepted: counters.accepted.load(ordering: .relaxed), delivered: interval.delivered,
                    deliveries_per_s: perSecond.rounded(), p50_ms: interval.histogram.millis(50),
                    p99_ms: interval.histogram.millis(99), max_ms: interval.histogram.maxMillis,
                    hub_cpu_percent: hubCPU.map { ($0 * 10).rounded() / 10 }, hub_rss_mib: hubRSS.map { ($0 * 10).rounded() / 10 }
                )
                timeline.append(point)
                if config.progress {
                    let server = hubCPU.map { String(format: " | server cpu %.0f %% rss %.1f MiB", $0, hubRSS ?? 0) } ?? ""
                    log(String(
                        format: "[%5.1fs] sent %d accepted %d in-flight %d | delivered %d (%.0f/s) p99 %.3f ms max %.3f ms",
                        point.t_s, point.sent, point.accepted, counters.inFlight.load(ordering: .relaxed), point.delivered,
                        perSecond, point.p99_ms, interval.histogram.maxMillis
                    ) + server)
                }
            }
            while true {
                try await Task.sleep(for: .milliseconds(10))
                let now = monotonicNanos()
                if now >= nextReport {
                    sample(now)
                    nextReport += 1_000_000_000
                }
                if expected == nil {
                    if finished.value == publishers.count {
                        for publisher in publishers { publisherResults.append(try await publisher.result.get()) }
                        expected = Self.expectedDeliveries(publisherResults, config: config)
                        drainDeadline = monotonicNanos() + UInt64(config.drain * 1e9)
                    } else if now > publishDeadline && !aborted {
                        aborted = true
                        for publisher in publishers {
                            let channel = publisher.channel
                            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(AbortPublishing()) }
                        }
                    }
                } else if stats.delivered >= expected! || now >= drainDeadline {
                    break
                }
            }
            let end = monotonicNanos()
            sample(end, final: true)
            let cpu = processCPUSeconds() - cpuAtStart
            let hubAtEnd = probe.read()
            if let hubMetrics, let hubHistogramAtStart, let atEnd = await HubDeliveryHistogram.read(from: hubMetrics) {
                hubLatency = HubLatency(atEnd.since(hubHistogramAtStart))
            }

            // 4. Close everything and report.
            let subscriberResults = try await collectSubscribers()
            total.add(stats.takeInterval().histogram)  // whatever arrived between the last sample and the close
            for publisher in publishers { try? await publisher.channel.close() }
            var builder = ReportBuilder(config: config, runID: runID)
            builder.subscribers = subscriberResults
            builder.publishers = publisherResults
            builder.latency = total
            builder.expected = expected ?? 0
            builder.timeline = timeline
            builder.cpuPercent = cpu / (Double(end - start) / 1e9) * 100
            builder.delivered = stats.delivered
            builder.perSeq = stats.deliveriesPerSeq()
            builder.connectPhaseMillis = connectPhase
            builder.clientCPUConnecting = clientCPUConnecting
            builder.hubLatency = hubLatency
            if probe.isEnabled {
                let hubCPU = hubAtEnd.cpuSeconds - hubAtStart.cpuSeconds
                let mib = { (bytes: Int) in Double(bytes) / 1_048_576 }
                builder.hub = HubUsage(
                    pids: config.hubPIDs,
                    rss_before_subscribers_mib: mib(beforeSubscribers.rssBytes),
                    rss_after_subscribers_mib: mib(afterSubscribers.rssBytes),
                    rss_end_mib: mib(hubAtEnd.rssBytes),
                    rss_per_subscriber_kib: config.subscribers > 0
                        ? Double(afterSubscribers.rssBytes - beforeSubscribers.rssBytes) / 1024 / Double(config.subscribers) : 0,
                    cpu_percent_of_one_core: hubCPU / max(Double(hubAtEnd.atNanos - hubAtStart.atNanos) / 1e9, 0.001) * 100,
                    cpu_us_per_delivery: stats.delivered > 0 ? hubCPU / Double(stats.delivered) * 1e6 : 0,
                    cpu_us_per_subscriber_connecting: config.subscribers > 0
                        ? (subscribedReading.cpuSeconds - beforeSubscribers.cpuSeconds) / Double(config.subscribers) * 1e6 : 0
                )
            }
            let report = builder.build()
            let failedPublishes = report.events_failed + report.events_rejected + report.events_skipped_in_flight_cap
            let exitCode: Int32 = report.lost > 0 || failedPublishes > 0 || report.subscriber_disconnects > 0 ? 1 : 0
            return LoadOutcome(report: report, exitCode: exitCode)
        }
    }

    /// Σ over accepted events of the subscribers whose pattern matches it.
    static func expectedDeliveries(_ results: [PublisherResult], config: LoadConfig) -> Int {
        var expected = 0
        for result in results {
            for (line, accepted) in result.acceptedPerLine.enumerated() { expected += accepted * config.receivers(ofLine: line) }
        }
        return expected
    }
}

final class FinishedCount: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

func log(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

struct ReportBuilder {
    let config: LoadConfig
    let runID: String
    var subscribers: [SubscriberResult] = []
    var publishers: [PublisherResult] = []
    var latency = makeHistogram()
    var expected = 0
    var delivered = 0
    var perSeq: (perSeq: [[UInt32]], offPlan: Int) = ([], 0)
    var timeline: [ProgressSample] = []
    var cpuPercent = 0.0
    var connectPhaseMillis = 0.0
    /// The harness's CPU seconds from the first connect until every subscriber had subscribed.
    var clientCPUConnecting = 0.0
    var hub: HubUsage?
    var hubLatency: HubLatency?

    func build() -> Report {
        var rtt = makeHistogram()
        var statuses: [String: Int] = [:]
        var maxLag: UInt64 = 0
        var firstSend = UInt64.max
        var lastSend: UInt64 = 0
        var errors: [String] = []
        for publisher in publishers {
            rtt.add(publisher.rtt)
            statuses.merge(publisher.statusCounts, uniquingKeysWith: +)
            maxLag = max(maxLag, publisher.maxScheduleLagNanos)
            if publisher.firstSendNanos > 0 { firstSend = min(firstSend, publisher.firstSendNanos) }
            lastSend = max(lastSend, publisher.lastSendNanos)
            errors += publisher.errors.map { "publisher: \($0)" }
        }
        // The window the sends span, plus one interval: N sends at rate R span (N-1)/R seconds.
        let interval = Double(config.batch) / (config.rate / Double(config.publishers))
        let window = lastSend > firstSend ? Double(lastSend - firstSend) / 1e9 + interval : config.duration
        var connect = makeHistogram()
        var subscribe = makeHistogram()
        for subscriber in subscribers {
            if let nanos = subscriber.connectNanos { connect.recordMicros(nanos: nanos) }
            if let nanos = subscriber.subscribeNanos { subscribe.recordMicros(nanos: nanos) }
        }
        let accepted = publishers.reduce(0) { $0 + $1.accepted }
        // Per event: an accepted one should reach every subscriber whose pattern matches its line.
        var lost = 0
        var unexpected = perSeq.offPlan
        for (id, publisher) in publishers.enumerated() where id < perSeq.perSeq.count {
            for (seq, count) in perSeq.perSeq[id].enumerated() {
                let should = seq < publisher.acceptedSeqs.count && publisher.acceptedSeqs[seq]
                    ? config.receivers(ofLine: config.lineIndex(publisher: id, seq: seq)) : 0
                if Int(count) < should { lost += should - Int(count) } else { unexpected += Int(count) - should }
            }
        }
        let subscriberErrors = Array(Set(subscribers.compactMap(\.error))).sorted()
        return Report(
            config: .init(
                url: "http://\(config.host):\(config.port)", ws_url: config.wsURL, subscribers: config.subscribers,
                publishers: config.publishers, rate: config.rate, duration_s: config.duration, batch: config.batch,
                mapping: config.mapping.description, mix: config.mix.rawValue, lines: config.lineCount, machines: config.machines,
                payload_bytes: config.payloadBytes, drain_s: config.drain
            ),
            run_id: runID,
            publish_window_s: window,
            events_sent: publishers.reduce(0) { $0 + $1.sent },
            mean_event_bytes: publishers.reduce(0) { $0 + $1.eventBytes } / max(1, publishers.reduce(0) { $0 + $1.sent }),
            events_accepted: accepted,
            events_rejected: publishers.reduce(0) { $0 + $1.rejected },
            events_failed: publishers.reduce(0) { $0 + $1.failed },
            events_skipped_in_flight_cap: publishers.reduce(0) { $0 + $1.skipped },
            http_status_counts: statuses,
            accepted_per_s: Double(accepted) / window,
            expected_deliveries: expected,
            deliveries: delivered,
            deliveries_per_s: Double(delivered) / window,
            lost: lost,
            unexpected_deliveries: unexpected,
            duplicated: subscribers.reduce(0) { $0 + $1.duplicates },
            out_of_order: subscribers.reduce(0) { $0 + $1.outOfOrder },
            foreign_frames: subscribers.reduce(0) { $0 + $1.foreign },
            latency: Percentiles(latency),
            publish_rtt: Percentiles(rtt),
            max_schedule_lag_ms: Double(maxLag) / 1e6,
            connect_ms: Percentiles(connect),
            subscribe_ack_ms: Percentiles(subscribe),
            subscribers_connected: subscribers.filter(\.subscribed).count,
            subscriber_connect_failures: subscribers.filter { !$0.subscribed }.count,
            subscriber_disconnects: subscribers.filter(\.droppedEarly).count,
            connect_phase_ms: connectPhaseMillis,
            hub: hub,
            hub_latency: hubLatency,
            errors: Array((errors + subscriberErrors).prefix(20)),
            client_cpu_percent_of_one_core: cpuPercent,
            client_cpu_us_per_subscriber_connecting: config.subscribers > 0 ? clientCPUConnecting / Double(config.subscribers) * 1e6 : 0,
            timeline: timeline
        )
    }
}
