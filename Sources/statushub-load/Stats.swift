import Foundation
import Histogram
import NIOCore
import Synchronization

/// CLOCK_MONOTONIC nanoseconds (NIODeadline reads `clock_gettime(CLOCK_MONOTONIC)` on Linux, the same clock as
/// `DispatchTime.now().uptimeNanoseconds`), so a stamp taken in one process is comparable in another on the
/// same machine.
@inline(__always)
func monotonicNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// Latencies are recorded in microseconds, 1 µs … 60 s, three significant digits.
typealias LatencyHistogram = Histogram<UInt64>

let histogramMaxMicros: UInt64 = 60_000_000

func makeHistogram() -> LatencyHistogram {
    Histogram(lowestDiscernibleValue: 1, highestTrackableValue: histogramMaxMicros, numberOfSignificantValueDigits: .three)
}

extension LatencyHistogram {
    @inline(__always)
    mutating func recordMicros(nanos: UInt64) {
        record(Swift.min(Swift.max(nanos / 1000, 1), histogramMaxMicros))
    }

    func millis(_ percentile: Double) -> Double {
        totalCount == 0 ? 0 : Double(valueAtPercentile(percentile)) / 1000
    }

    var maxMillis: Double { totalCount == 0 ? 0 : Double(max) / 1000 }
}

/// Delivery latencies, sharded so subscribers on different threads rarely meet on a lock. Subscribers record
/// into the current interval; the reporter moves each interval into the run total once a second.
final class DeliveryStats: Sendable {
    struct ShardState {
        var interval = makeHistogram()
        /// Unique (non-duplicate) deliveries of this run's events.
        var delivered = 0
        var duplicates = 0
        /// Unique deliveries per publisher and sequence number, so loss is counted per event at the end.
        var perSeq: [[UInt32]]
        /// Deliveries whose sequence number is past the publisher's plan (cannot happen; counted to be sure).
        var offPlan = 0

        @inline(__always)
        mutating func count(publisher: Int, seq: Int) {
            if seq < perSeq[publisher].count { perSeq[publisher][seq] &+= 1 } else { offPlan += 1 }
        }
    }

    final class Shard: Sendable {
        let state: Mutex<ShardState>
        init(publishers: Int, eventsPerPublisher: Int) {
            state = Mutex(ShardState(perSeq: Array(repeating: Array(repeating: 0, count: eventsPerPublisher), count: publishers)))
        }
    }

    let shards: [Shard]

    init(shardCount: Int, publishers: Int, eventsPerPublisher: Int) {
        shards = (0..<Swift.max(shardCount, 1)).map { _ in
            Shard(publishers: publishers, eventsPerPublisher: eventsPerPublisher)
        }
    }

    /// Unique deliveries per publisher and sequence number, summed over the shards.
    func deliveriesPerSeq() -> (perSeq: [[UInt32]], offPlan: Int) {
        var total: [[UInt32]]? = nil
        var offPlan = 0
        for shard in shards {
            shard.state.withLock { state in
                offPlan += state.offPlan
                guard var sum = total else { total = state.perSeq; return }
                for p in sum.indices { for s in sum[p].indices { sum[p][s] &+= state.perSeq[p][s] } }
                total = sum
            }
        }
        return (total ?? [], offPlan)
    }

    func shard(for subscriber: Int) -> Shard { shards[subscriber % shards.count] }

    /// Takes every shard's interval histogram (leaving empty ones) and the delivery counters.
    func takeInterval() -> (histogram: LatencyHistogram, delivered: Int, duplicates: Int) {
        var merged = makeHistogram()
        var delivered = 0
        var duplicates = 0
        for shard in shards {
            var taken = makeHistogram()
            shard.state.withLock { state in
                swap(&taken, &state.interval)
                delivered += state.delivered
                duplicates += state.duplicates
            }
            merged.add(taken)
        }
        return (merged, delivered, duplicates)
    }

    var delivered: Int { shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.delivered } } }
}

/// Counters the progress line reads while publishers run.
final class PublishCounters: Sendable {
    let sent = Atomic<Int>(0)
    let accepted = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
}

/// Duplicate and order detection for one publisher's sequence as seen by one subscriber: a bitmap of the last
/// `window` sequence numbers below the highest one seen.
struct SeqTracker {
    static let window = 16384
    enum Observation { case inOrder, outOfOrder, duplicate }

    private var maxSeq = -1
    private var bits = [UInt64](repeating: 0, count: SeqTracker.window / 64)

    private func test(_ seq: Int) -> Bool {
        let slot = seq % Self.window
        return bits[slot >> 6] & (1 << UInt64(slot & 63)) != 0
    }

    private mutating func set(_ seq: Int) {
        let slot = seq % Self.window
        bits[slot >> 6] |= 1 << UInt64(slot & 63)
    }

    private mutating func clear(_ seq: Int) {
        let slot = seq % Self.window
        bits[slot >> 6] &= ~(1 << UInt64(slot & 63))
    }

    mutating func observe(_ seq: Int) -> Observation {
        if seq > maxSeq {
            if maxSeq < 0 || seq - maxSeq >= Self.window {
                for i in bits.indices { bits[i] = 0 }
            } else {
                for s in (maxSeq + 1)...seq { clear(s) }
            }
            set(seq)
            maxSeq = seq
            return .inOrder
        }
        if seq <= maxSeq - Self.window { return .outOfOrder }  // too old to tell a duplicate; count it as late
        if test(seq) { return .duplicate }
        set(seq)
        return .outOfOrder
    }
}

// MARK: - Results

struct Percentiles: Codable {
    var count: UInt64
    var p50_ms: Double
    var p90_ms: Double
    var p99_ms: Double
    var p99_9_ms: Double
    var max_ms: Double
    var mean_ms: Double

    init(_ h: LatencyHistogram) {
        count = h.totalCount
        p50_ms = h.millis(50)
        p90_ms = h.millis(90)
        p99_ms = h.millis(99)
        p99_9_ms = h.millis(99.9)
        max_ms = h.maxMillis
        mean_ms = h.totalCount == 0 ? 0 : h.mean / 1000
    }
}

struct ProgressSample: Codable {
    var t_s: Double
    var sent: Int
    var accepted: Int
    var delivered: Int
    var deliveries_per_s: Double
    var p50_ms: Double
    var p99_ms: Double
    var max_ms: Double
    /// Of the watched server processes (--hub-pid) over this second; absent when none is watched.
    var hub_cpu_percent: Double?
    var hub_rss_mib: Double?
}

struct Report: Codable {
    struct Config: Codable {
        var url: String
        var ws_url: String
        var subscribers: Int
        var publishers: Int
        var rate: Double
        var duration_s: Double
        var batch: Int
        var mapping: String
        var mix: String
        var lines: Int
        var machines: Int
        var payload_bytes: Int
        var drain_s: Double
    }

    var config: Config
    var run_id: String
    var publish_window_s: Double
    var events_sent: Int
    var mean_event_bytes: Int
    var events_accepted: Int
    var events_rejected: Int
    /// Events in requests that failed (transport error, non-2xx other than 207/400, no answer) or were skipped.
    var events_failed: Int
    var events_skipped_in_flight_cap: Int
    var http_status_counts: [String: Int]
    var accepted_per_s: Double
    var expected_deliveries: Int
    var deliveries: Int
    var deliveries_per_s: Double
    /// Σ over accepted events of (subscribers that should have received it − those that did), never negative.
    var lost: Int
    /// Deliveries of events that were not confirmed accepted (rejected, failed, unanswered), or surplus ones.
    var unexpected_deliveries: Int
    var duplicated: Int
    var out_of_order: Int
    var foreign_frames: Int
    var latency: Percentiles
    var publish_rtt: Percentiles
    var max_schedule_lag_ms: Double
    var connect_ms: Percentiles
    var subscribe_ack_ms: Percentiles
    var subscribers_connected: Int
    var subscriber_connect_failures: Int
    var subscriber_disconnects: Int
    /// From the first connect attempt until every subscriber had subscribed (or failed).
    var connect_phase_ms: Double
    /// The watched server processes (--hub-pid), if any.
    var hub: HubUsage?
    /// This run's deliveries as the hub itself timed them (ingest to write), when the server is StatusHub.
    var hub_latency: HubLatency?
    /// Distinct publisher and subscriber errors (first 20).
    var errors: [String]
    var client_cpu_percent_of_one_core: Double
    /// The harness's CPU time from the first connect until every subscriber had subscribed ÷ subscribers, µs.
    var client_cpu_us_per_subscriber_connecting: Double
    var timeline: [ProgressSample]

    func table() -> String {
        func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
        let c = config
        var rows: [(String, String)] = [
            ("run", "\(run_id): \(c.subscribers) subscribers (\(c.mapping)), \(c.publishers) publisher(s), \(f(c.rate, 0)) \(c.mix) events/s for \(f(c.duration_s, 0)) s, batch \(c.batch), \(c.payload_bytes) B data / \(mean_event_bytes) B event"),
            ("events sent", "\(events_sent)"),
            ("accepted (202)", "\(events_accepted)"),
            ("rejected", "\(events_rejected)"),
            ("failed / skipped", "\(events_failed) / \(events_skipped_in_flight_cap)"),
            ("http statuses", http_status_counts.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")),
            ("accepted publishes/s", f(accepted_per_s, 1)),
            ("publish rtt p50/p99/max", "\(f(publish_rtt.p50_ms, 3)) / \(f(publish_rtt.p99_ms, 3)) / \(f(publish_rtt.max_ms, 3)) ms"),
            ("max schedule lag", "\(f(max_schedule_lag_ms, 3)) ms"),
            ("deliveries", "\(deliveries) (expected \(expected_deliveries))"),
            ("deliveries/s", f(deliveries_per_s, 1)),
            ("latency p50", "\(f(latency.p50_ms, 3)) ms"),
            ("latency p90", "\(f(latency.p90_ms, 3)) ms"),
            ("latency p99", "\(f(latency.p99_ms, 3)) ms"),
            ("latency p99.9", "\(f(latency.p99_9_ms, 3)) ms"),
            ("latency max", "\(f(latency.max_ms, 3)) ms"),
            ("lost", "\(lost)"),
            ("duplicated", "\(duplicated)"),
            ("out of order", "\(out_of_order)"),
            ("connect p50 / max", "\(f(connect_ms.p50_ms, 3)) / \(f(connect_ms.max_ms, 3)) ms"),
            ("subscribed p50 / max", "\(f(subscribe_ack_ms.p50_ms, 3)) / \(f(subscribe_ack_ms.max_ms, 3)) ms"),
            ("subscribers", "\(subscribers_connected) connected, \(subscriber_connect_failures) failed, \(subscriber_disconnects) dropped early"),
            ("all subscribed after", "\(f(connect_phase_ms, 1)) ms"),
            ("client cpu", "\(f(client_cpu_percent_of_one_core, 1)) % of one core"),
        ]
        if subscribers_connected > 0 {
            rows.append(("client cpu connecting", "\(f(client_cpu_us_per_subscriber_connecting, 1)) µs a subscriber"))
        }
        if let hub {
            rows.append(("server pids", hub.pids.map(String.init).joined(separator: " ")))
            rows.append(("server rss before / after subscribers / end", "\(f(hub.rss_before_subscribers_mib, 1)) / \(f(hub.rss_after_subscribers_mib, 1)) / \(f(hub.rss_end_mib, 1)) MiB"))
            rows.append(("server rss per subscriber", "\(f(hub.rss_per_subscriber_kib, 2)) KiB"))
            rows.append(("server cpu", "\(f(hub.cpu_percent_of_one_core, 1)) % of one core, \(f(hub.cpu_us_per_delivery, 3)) µs per delivery"))
            if subscribers_connected > 0 {
                rows.append(("server cpu connecting", "\(f(hub.cpu_us_per_subscriber_connecting, 1)) µs a subscriber"))
            }
        }
        if let own = hub_latency {
            rows.append((
                "hub's own latency (ingest → write)",
                "mean \(f(own.mean_ms, 3)) ms, p50 ~\(f(own.p50_ms_estimate, 1)) ms, p99 ~\(f(own.p99_ms_estimate, 1)) ms (its buckets), \(f(own.share_within_50_ms * 100, 1)) % within 50 ms, \(own.deliveries) deliveries"
            ))
        }
        if unexpected_deliveries > 0 { rows.append(("unexpected deliveries", "\(unexpected_deliveries)")) }
        if foreign_frames > 0 { rows.append(("foreign frames", "\(foreign_frames)")) }
        for error in errors.prefix(5) { rows.append(("error", error)) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}

/// User + system CPU time of this process, seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
