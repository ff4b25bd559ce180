import Foundation

/// The CPUs this process may run on, `taskset` and cpusets included.
///
/// NIO sizes its event-loop group by the machine's cores and cgroup quotas only, and Foundation's
/// `activeProcessorCount` does not read the affinity mask either; a node confined to one CPU would then run two
/// event loops on it, switching between them for every hand-off. Read from /proc/self/status (`Cpus_allowed`, a
/// hex mask, comma-separated in 32-bit words) because Glibc's `cpu_set_t` macros (`CPU_COUNT`) are not visible to Swift.
public enum CPUAffinity {
    public static func allowedCPUs() -> Int {
        #if os(Linux)
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        {
            let count = line.dropFirst("Cpus_allowed:".count).reduce(0) { sum, character in
                sum + (character.hexDigitValue?.nonzeroBitCount ?? 0)
            }
            if count > 0 { return count }
        }
        #endif
        return ProcessInfo.processInfo.activeProcessorCount
    }
}
