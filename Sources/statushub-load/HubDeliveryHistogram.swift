import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The hub's own delivery histogram, `statushub_delivery_latency_seconds` on its `/metrics` (from the event's
/// ingest to the `write` of its frame, summed over the catalog's categories). Read before the first publish and
/// after the drain, the difference is this run's deliveries as the hub timed them: the latency without the client's
/// share (its publish request, and its reading of every socket on the cores it has), which the publish-to-receipt
/// figures cannot separate. The text is read here by hand: swift-prometheus writes the format but does not parse it.
struct HubDeliveryHistogram: Sendable {
    static let metric = "statushub_delivery_latency_seconds"

    /// Cumulative counts by upper bound in seconds (`le`), ascending; the last bound is +Inf.
    var buckets: [(upperBound: Double, count: Int)]
    var sumSeconds: Double
    var count: Int

    /// The histogram in Prometheus text, every category's series added together; nil if the text has none.
    static func parse(_ text: String) -> HubDeliveryHistogram? {
        var byBound: [Double: Int] = [:]
        var sum = 0.0
        var count = 0
        var found = false
        for line in text.split(separator: "\n") where line.hasPrefix(metric) {
            let rest = line.dropFirst(metric.count)
            guard let space = rest.lastIndex(of: " "), let value = Double(rest[rest.index(after: space)...]) else { continue }
            if rest.hasPrefix("_bucket{") {
                guard let le = rest.range(of: #"le=""#), let close = rest[le.upperBound...].firstIndex(of: "\"") else { continue }
                let bound = rest[le.upperBound..<close] == "+Inf" ? Double.infinity : Double(rest[le.upperBound..<close])
                guard let bound else { continue }
                byBound[bound, default: 0] += Int(value)
                found = true
            } else if rest.hasPrefix("_sum") {
                sum += value
            } else if rest.hasPrefix("_count") {
                count += Int(value)
            }
        }
        guard found else { return nil }
        return HubDeliveryHistogram(buckets: byBound.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, sumSeconds: sum, count: count)
    }

    /// The hub's histogram now, from `base`'s `/metrics`; nil if it cannot be read (another server, or metrics off).
    static func read(from base: URL) async -> HubDeliveryHistogram? {
        guard let (data, response) = try? await URLSession.shared.data(from: base.appendingPathComponent("metrics")),
              (response as? HTTPURLResponse)?.statusCode == 200
        else { return nil }
        return parse(String(decoding: data, as: UTF8.self))
    }

    /// What was recorded since `earlier` (the same hub, read before).
    func since(_ earlier: HubDeliveryHistogram) -> HubDeliveryHistogram {
        let before = Dictionary(earlier.buckets.map { ($0.upperBound, $0.count) }, uniquingKeysWith: +)
        return HubDeliveryHistogram(
            buckets: buckets.map { ($0.upperBound, $0.count - (before[$0.upperBound] ?? 0)) },
            sumSeconds: sumSeconds - earlier.sumSeconds, count: count - earlier.count)
    }

    /// The `percentile` (0–100) in seconds, interpolated linearly inside its bucket as Prometheus's
    /// `histogram_quantile` does, so it is an estimate at the buckets' resolution; nil without deliveries. In the
    /// last finite bucket's range or beyond it, that bucket's bound.
    func estimate(percentile: Double) -> Double? {
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = percentile / 100 * Double(total)
        var lowerBound = 0.0
        var below = 0
        for (upperBound, count) in buckets {
            if Double(count) >= rank {
                guard upperBound.isFinite else { return lowerBound }
                let inBucket = count - below
                return inBucket == 0 ? upperBound : lowerBound + (upperBound - lowerBound) * (rank - Double(below)) / Double(inBucket)
            }
            lowerBound = upperBound
            below = count
        }
        return lowerBound
    }

    /// The share of deliveries written within `seconds`, when that is one of the buckets' bounds.
    func share(within seconds: Double) -> Double? {
        guard let total = buckets.last?.count, total > 0,
              let bucket = buckets.first(where: { abs($0.upperBound - seconds) < 1e-9 })
        else { return nil }
        return Double(bucket.count) / Double(total)
    }
}

/// The run's deliveries as the hub timed them (`HubDeliveryHistogram`), in the report.
struct HubLatency: Codable {
    var deliveries: Int
    var mean_ms: Double
    /// Estimated inside the hub's buckets (`LatencyTelemetry.buckets`: 1, 2.5, 5, 10, 15 … 50, 75, 100 ms, …) as
    /// Prometheus does.
    var p50_ms_estimate: Double
    var p99_ms_estimate: Double
    var share_within_50_ms: Double

    init?(_ histogram: HubDeliveryHistogram) {
        guard histogram.count > 0, let p50 = histogram.estimate(percentile: 50), let p99 = histogram.estimate(percentile: 99)
        else { return nil }
        deliveries = histogram.count
        mean_ms = histogram.sumSeconds / Double(histogram.count) * 1000
        p50_ms_estimate = p50 * 1000
        p99_ms_estimate = p99 * 1000
        share_within_50_ms = histogram.share(within: 0.05) ?? 0
    }
}
