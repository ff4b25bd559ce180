import Foundation

/// Watches server processes (the hub and its redis-server, or nginx's workers) through /proc: resident memory and
/// CPU time, summed over the processes. Linux only; elsewhere every reading is zero.
struct HubProbe: Sendable {
    struct Reading: Sendable {
        /// Monotonic time of the reading.
        var atNanos: UInt64
        /// User + system CPU time, seconds, summed.
        var cpuSeconds: Double
        /// Resident set, bytes, summed.
        var rssBytes: Int
    }

    let pids: [Int32]
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    init(pids: [Int32]) { self.pids = pids }

    var isEnabled: Bool { !pids.isEmpty }

    func read() -> Reading {
        var cpu = 0.0
        var rss = 0
        for pid in pids {
            // /proc/PID/stat: "pid (comm) state …"; utime and stime are fields 14 and 15, counted after the ")".
            if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
               let close = stat.lastIndex(of: ")")
            {
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                // fields[0] is the state (field 3), so field n is fields[n - 3].
                if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                    cpu += (user + system) / ticksPerSecond
                }
            }
            if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
               let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
               let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
            {
                rss += kib * 1024
            }
        }
        return Reading(atNanos: monotonicNanos(), cpuSeconds: cpu, rssBytes: rss)
    }
}

/// What the watched server processes did during a run.
struct HubUsage: Codable {
    var pids: [Int32]
    var rss_before_subscribers_mib: Double
    var rss_after_subscribers_mib: Double
    var rss_end_mib: Double
    /// (RSS once every subscriber is connected − RSS before the first connected) ÷ subscribers.
    var rss_per_subscriber_kib: Double
    /// CPU time while publishing and draining ÷ wall time, percent of one core.
    var cpu_percent_of_one_core: Double
    /// CPU time while publishing and draining ÷ deliveries, microseconds.
    var cpu_us_per_delivery: Double
    /// CPU time from the first subscriber's connect until every one had subscribed ÷ subscribers, microseconds.
    var cpu_us_per_subscriber_connecting: Double
}
