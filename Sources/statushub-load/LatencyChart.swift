import Foundation

/// Latency over time as a self-contained SVG: p50, p99 and max of each second's deliveries on a logarithmic
/// millisecond axis, deliveries/s underneath. Hand-written SVG text, so any browser opens it.
struct LatencyChart {
    let report: Report

    private let width = 900.0
    private let height = 520.0
    private let left = 70.0
    private let right = 20.0
    private let top = 50.0
    private let latencyHeight = 300.0
    private let gap = 40.0
    private let rateHeight = 90.0

    func svg() -> String {
        let samples = report.timeline
        let maxT = max(samples.map(\.t_s).max() ?? 1, 1)
        let plotWidth = width - left - right
        func x(_ t: Double) -> Double { left + t / maxT * plotWidth }
        // Latency axis: log10 from the decade below the smallest p50 to the decade above the largest max.
        let values = samples.flatMap { [$0.p50_ms, $0.p99_ms, $0.max_ms] }.filter { $0 > 0 }
        let lowDecade = floor(log10(values.min() ?? 0.1))
        let highDecade = max(ceil(log10(values.max() ?? 10)), lowDecade + 1)
        func y(_ ms: Double) -> Double {
            let v = log10(max(ms, pow(10, lowDecade)))
            return top + latencyHeight - (v - lowDecade) / (highDecade - lowDecade) * latencyHeight
        }
        let rateTop = top + latencyHeight + gap
        let maxRate = max(samples.map(\.deliveries_per_s).max() ?? 1, 1)
        func yRate(_ r: Double) -> Double { rateTop + rateHeight - r / maxRate * rateHeight }

        var out: [String] = []
        out.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" font-family="sans-serif" font-size="12">"##)
        out.append(##"<rect width="100%" height="100%" fill="white"/>"##)
        let c = report.config
        let title = "\(c.subscribers) subscribers (\(c.mapping)), \(Int(c.rate)) events/s, batch \(c.batch) — \(c.url)"
        out.append(##"<text x="\##(left)" y="20" font-size="14" font-weight="bold">\##(escape(title))</text>"##)
        out.append(##"<text x="\##(left)" y="38">latency per second (ms, log scale): p50, p99, max · lost \##(report.lost) · overall p99 \##(String(format: "%.3f", report.latency.p99_ms)) ms</text>"##)
        // Axes and decade grid lines.
        out.append(##"<line x1="\##(left)" y1="\##(top)" x2="\##(left)" y2="\##(top + latencyHeight)" stroke="black"/>"##)
        out.append(##"<line x1="\##(left)" y1="\##(top + latencyHeight)" x2="\##(width - right)" y2="\##(top + latencyHeight)" stroke="black"/>"##)
        var decade = lowDecade
        while decade <= highDecade {
            let ms = pow(10, decade)
            let yy = y(ms)
            out.append(##"<line x1="\##(left)" y1="\##(yy)" x2="\##(width - right)" y2="\##(yy)" stroke="#ddd"/>"##)
            out.append(##"<text x="\##(left - 6)" y="\##(yy + 4)" text-anchor="end">\##(format(ms))</text>"##)
            decade += 1
        }
        let step = max(1, (maxT / 10).rounded())
        var t = 0.0
        while t <= maxT {
            out.append(##"<text x="\##(x(t))" y="\##(top + latencyHeight + 15)" text-anchor="middle">\##(Int(t)) s</text>"##)
            t += step
        }
        let series: [(String, String, KeyPath<ProgressSample, Double>)] = [
            ("p50", "#2b8cbe", \.p50_ms), ("p99", "#e34a33", \.p99_ms), ("max", "#999999", \.max_ms),
        ]
        for (index, (name, color, path)) in series.enumerated() {
            let points = samples.filter { $0[keyPath: path] > 0 }.map { "\(fmt(x($0.t_s))),\(fmt(y($0[keyPath: path])))" }
            if !points.isEmpty {
                out.append(##"<polyline fill="none" stroke="\##(color)" stroke-width="2" points="\##(points.joined(separator: " "))"/>"##)
            }
            let lx = width - right - 180 + Double(index) * 60
            out.append(##"<line x1="\##(lx)" y1="\##(top - 8)" x2="\##(lx + 18)" y2="\##(top - 8)" stroke="\##(color)" stroke-width="3"/>"##)
            out.append(##"<text x="\##(lx + 22)" y="\##(top - 4)">\##(name)</text>"##)
        }
        // Deliveries per second.
        out.append(##"<text x="\##(left)" y="\##(rateTop - 8)">deliveries/s (max \##(Int(maxRate)))</text>"##)
        out.append(##"<line x1="\##(left)" y1="\##(rateTop + rateHeight)" x2="\##(width - right)" y2="\##(rateTop + rateHeight)" stroke="black"/>"##)
        out.append(##"<line x1="\##(left)" y1="\##(rateTop)" x2="\##(left)" y2="\##(rateTop + rateHeight)" stroke="black"/>"##)
        let ratePoints = samples.map { "\(fmt(x($0.t_s))),\(fmt(yRate($0.deliveries_per_s)))" }
        if !ratePoints.isEmpty {
            out.append(##"<polyline fill="none" stroke="#31a354" stroke-width="2" points="\##(ratePoints.joined(separator: " "))"/>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    private func format(_ ms: Double) -> String {
        ms >= 1 ? String(format: "%.0f ms", ms) : String(format: "%g ms", ms)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
