import ArgumentParser
import Foundation
import HummingbirdWSClient
import Logging
import StatusHubCore
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `statushub-load storm`: the reconnect storm of a plant with many cached entities. Fills the cache with
/// `--entities` machines over `--lines` lines, then connects `--dashboards` line dashboards at once, each asking for
/// its line's snapshot, while a bystander pings and a publisher keeps posting. Reports how long each snapshot took,
/// what the bystander and the publisher saw meanwhile, and the hub's memory before, at its peak and after.
struct StormCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "Many line dashboards reconnecting at once, each with a snapshot, over a large cache.",
        discussion: """
            Example (50,000 machines on 10 lines, 10 dashboards, one per line):
              statushub-load storm --url http://127.0.0.1:8080 --entities 50000 --lines 10 --dashboards 10 \\
                --hub-pid $(pgrep -f 'statushub serve') --redis-pid $(pgrep redis-server)

            Exit status: 0 when every dashboard got its whole snapshot and no probe was refused; 1 otherwise.
            """
    )

    @Option(help: "Hub base URL (HTTP).")
    var url = "http://127.0.0.1:8080"

    @Option(help: "Machines cached before the storm (0: use what is cached).")
    var entities = 50_000

    @Option(help: "Lines the machines are spread over (Line-0 …).")
    var lines = 10

    @Option(help: "Dashboards connecting at once; dashboard i subscribes to line:Line-(i % lines):* with a snapshot.")
    var dashboards = 10

    @Option(help: "Single-event POSTs per second during the storm (the ingest probe).")
    var probeRate = 20

    @Option(name: .customLong("hub-pid"), help: "The hub process (RSS).")
    var hubPID: Int32?

    @Option(name: .customLong("redis-pid"), help: "The redis-server process (RSS), if any.")
    var redisPID: Int32?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    struct Result: Codable {
        var entities: Int
        var lines: Int
        var dashboards: Int
        var snapshot_seconds: [Double]
        var snapshot_events: [Int]
        var dashboard_errors: [String]
        var bystander_ping_ms: Percentiles
        var ingest_ms: Percentiles
        var ingest_refused: Int
        var hub_rss_mib: Memory
        var redis_rss_mib: Memory?
    }

    struct Percentiles: Codable {
        var count: Int
        var p50: Double
        var p99: Double
        var max: Double

        init(_ samples: [Double]) {
            let sorted = samples.sorted()
            func at(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
            count = sorted.count
            p50 = (at(0.5) * 10).rounded() / 10
            p99 = (at(0.99) * 10).rounded() / 10
            max = ((sorted.last ?? 0) * 10).rounded() / 10
        }
    }

    struct Memory: Codable {
        var before: Double
        var peak: Double
        var after_10s: Double
    }

    func validate() throws {
        guard entities >= 0, lines >= 1, dashboards >= 1, probeRate >= 1 else {
            throw ValidationError("--entities must be >= 0; --lines, --dashboards and --probe-rate >= 1")
        }
        guard let parsed = URL(string: url), parsed.scheme == "http" else { throw ValidationError("--url must be http://host[:port]") }
    }

    func run() async throws {
        let base = URL(string: url)!
        let wsURL = "ws://\(base.host!):\(base.port ?? 80)/v1/ws"
        if entities > 0 { try await seed(base) }
        let hubProbe = hubPID.map { HubProbe(pids: [$0]) }
        let redisProbe = redisPID.map { HubProbe(pids: [$0]) }
        func mib(_ probe: HubProbe?) -> Double { probe.map { (Double($0.read().rssBytes) / 1_048_576 * 10).rounded() / 10 } ?? 0 }
        let before = (mib(hubProbe), mib(redisProbe))
        let peaks = Box((before.0, before.1))
        let stop = StopFlag()

        // Memory sampler, bystander pinger and ingest probe run until the dashboards are done.
        async let sampled: Void = {
            while !stop.isSet {
                let now = (mib(hubProbe), mib(redisProbe))
                peaks.update { $0 = (max($0.0, now.0), max($0.1, now.1)) }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }()
        async let pings: [Double] = Self.bystander(wsURL, until: stop)
        async let ingest: (latencies: [Double], refused: Int) = Self.ingestProbe(base, rate: probeRate, until: stop)

        let outcomes = await withTaskGroup(of: (Int, Double, Int, String?).self) { group in
            for index in 0..<dashboards {
                group.addTask { await Self.dashboard(wsURL, line: "Line-\(index % lines)", index: index) }
            }
            var outcomes: [(Int, Double, Int, String?)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }
        }
        stop.set()
        _ = await sampled
        let (pingSamples, ingestResult) = await (pings, ingest)
        try await Task.sleep(for: .seconds(10))
        let peak = peaks.value
        let result = Result(
            entities: entities, lines: lines, dashboards: dashboards,
            snapshot_seconds: outcomes.map { ($0.1 * 1000).rounded() / 1000 }, snapshot_events: outcomes.map(\.2),
            dashboard_errors: outcomes.compactMap(\.3), bystander_ping_ms: Percentiles(pingSamples),
            ingest_ms: Percentiles(ingestResult.latencies), ingest_refused: ingestResult.refused,
            hub_rss_mib: Memory(before: before.0, peak: peak.0, after_10s: mib(hubProbe)),
            redis_rss_mib: redisProbe.map { _ in Memory(before: before.1, peak: peak.1, after_10s: mib(redisProbe)) })
        print(Self.table(result))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if !result.dashboard_errors.isEmpty || result.ingest_refused > 0 { throw ExitCode(1) }
    }

    /// Machines M-0 … on Line-(i % lines), 1,000 per POST.
    private func seed(_ base: URL) async throws {
        let started = ContinuousClock.now
        for start in stride(from: 0, to: entities, by: 1000) {
            let events = (start..<min(entities, start + 1000)).map { index in
                #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-\#(index)","line":"Line-\#(index % lines)","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"running","oee_percentage":87.5},"metadata":{"source":"mes","triggered_by":"system"}}"#
            }
            let status = try await Self.post(base, body: "[" + events.joined(separator: ",") + "]").status
            guard status == 202 else { throw ValidationError("seeding: POST answered \(status)") }
        }
        print("seeded \(entities) machines on \(lines) lines in \(ContinuousClock.now - started)")
    }

    private static func post(_ base: URL, body: String) async throws -> (status: Int, seconds: Double) {
        var request = URLRequest(url: base.appendingPathComponent("v1/events"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        request.timeoutInterval = 30
        let started = ContinuousClock.now
        let (_, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, (ContinuousClock.now - started).seconds)
    }

    /// One line dashboard: subscribe with a snapshot, read every part. Returns (index, seconds to the last part,
    /// events, error).
    private static func dashboard(_ url: String, line: String, index: Int) async -> (Int, Double, Int, String?) {
        let started = ContinuousClock.now
        let outcome = Box<(Double, Int, String?)>((0, 0, "dashboard \(index): no snapshot"))
        do {
            _ = try await WebSocketClient.connect(
                url: url, configuration: .init(maxFrameSize: 1 << 26), logger: Logger(label: "storm")
            ) { inbound, outbound, _ in
                try await outbound.write(.text(#"{"op":"subscribe","id":"d","channels":["line:\#(line):*"],"snapshot":true}"#))
                var events = 0
                for try await message in inbound.messages(maxSize: 1 << 26) {
                    // Snapshot parts are read by their shape, not parsed: the client must not be what the storm
                    // measures (a part is a few hundred KB of events).
                    guard case .text(let text) = message else { continue }
                    if text.hasPrefix(#"{"op":"snapshot""#) {
                        events += text.components(separatedBy: #"{"event_id":""#).count - 1
                        if !text.prefix(200).contains(#""more":true"#) {
                            outcome.update { $0 = ((ContinuousClock.now - started).seconds, events, nil) }
                            try await outbound.close(.normalClosure, reason: nil)
                            return
                        }
                    } else if text.hasPrefix(#"{"op":"error""#) {
                        outcome.update { $0 = ((ContinuousClock.now - started).seconds, events, "dashboard \(index): \(text)") }
                        try await outbound.close(.normalClosure, reason: nil)
                        return
                    }
                }
            }
        } catch {
            outcome.update { $0.2 = "dashboard \(index): \(error)" }
        }
        let (seconds, events, error) = outcome.value
        return (index, seconds, events, error)
    }

    /// A bystander on the same node: a ping every 20 ms, round trips in milliseconds.
    private static func bystander(_ url: String, until stopFlag: StopFlag) async -> [Double] {
        let samples = Box<[Double]>([])
        _ = try? await WebSocketClient.connect(url: url, configuration: .init(), logger: Logger(label: "storm")) { inbound, outbound, _ in
            var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
            while !stopFlag.isSet {
                let sent = ContinuousClock.now
                try await outbound.write(.text(#"{"op":"ping","id":"p"}"#))
                while let message = try await iterator.next() {
                    if case .text(let text) = message, text.contains(#""pong""#) { break }
                }
                samples.update { $0.append((ContinuousClock.now - sent).seconds * 1000) }
                try await Task.sleep(for: .milliseconds(20))
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        return samples.value
    }

    /// Single-event POSTs at `rate` per second; latencies in milliseconds, and how many were not 202.
    private static func ingestProbe(_ base: URL, rate: Int, until stopFlag: StopFlag) async -> (latencies: [Double], refused: Int) {
        var latencies: [Double] = []
        var refused = 0
        var sequence = 0
        while !stopFlag.isSet {
            sequence += 1
            let body = #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"PROBE-\#(sequence % 50)","line":"Probe","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"idle"},"metadata":{"source":"storm","triggered_by":"system"}}"#
            if let (status, seconds) = try? await post(base, body: body) {
                latencies.append(seconds * 1000)
                if status != 202 { refused += 1 }
            } else {
                refused += 1
            }
            try? await Task.sleep(for: .milliseconds(Int64(1000 / rate)))
        }
        return (latencies, refused)
    }

    static func table(_ result: Result) -> String {
        let seconds = result.snapshot_seconds.sorted()
        var lines = [
            "reconnect storm: \(result.dashboards) line dashboards at once, \(result.entities) machines on \(result.lines) lines",
            String(format: "  snapshot time      min %.2f s  median %.2f s  max %.2f s  (events per dashboard: %@)",
                   seconds.first ?? 0, seconds.isEmpty ? 0 : seconds[seconds.count / 2], seconds.last ?? 0,
                   Set(result.snapshot_events).sorted().map(String.init).joined(separator: ", ")),
            String(format: "  bystander ping     p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d pings)",
                   result.bystander_ping_ms.p50, result.bystander_ping_ms.p99, result.bystander_ping_ms.max, result.bystander_ping_ms.count),
            String(format: "  ingest POST        p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d posts, %d refused)",
                   result.ingest_ms.p50, result.ingest_ms.p99, result.ingest_ms.max, result.ingest_ms.count, result.ingest_refused),
            String(format: "  hub RSS            before %.1f MiB  peak %.1f MiB  10 s after %.1f MiB",
                   result.hub_rss_mib.before, result.hub_rss_mib.peak, result.hub_rss_mib.after_10s),
        ]
        if let redis = result.redis_rss_mib {
            lines.append(String(format: "  redis-server RSS   before %.1f MiB  peak %.1f MiB  10 s after %.1f MiB", redis.before, redis.peak, redis.after_10s))
        }
        for error in result.dashboard_errors { lines.append("  error: \(error)") }
        return lines.joined(separator: "\n")
    }

}

/// Set once, read by the probes that run until the dashboards are done.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// A value shared by the storm's tasks.
final class Box<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ value: Value) { state = Mutex(value) }
    var value: Value { state.withLock { $0 } }
    func update(_ change: (inout Value) -> Void) { state.withLock { change(&$0) } }
}
