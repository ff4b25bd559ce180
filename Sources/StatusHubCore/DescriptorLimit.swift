#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open descriptors (`RLIMIT_NOFILE`, `ulimit -n`), which every WebSocket, SSE stream, HTTP
/// connection, Redis connection and MQTT session of a node holds one of.
///
/// systemd starts a service with a soft limit of 1,024 under a hard one of 524,288, and most login shells keep
/// 1,024: a program that needs more is expected to raise its own soft limit to the hard one, which any process
/// may do (Go's runtime does it at start since 1.19). A node that did not ran out of descriptors at ~1,000
/// dashboards, ten times below its `server.max_connections`: past that, accepts failed (swift-nio backs off and
/// retries), so dashboards waited without an answer and publishers' new connections — and a reconnecting Redis
/// connection — were not taken either.
public struct DescriptorLimit: Sendable, Equatable, CustomStringConvertible {
    public var soft: Int
    public var hard: Int

    public init(soft: Int, hard: Int) {
        self.soft = soft
        self.hard = hard
    }

    public static func current() -> DescriptorLimit {
        var limit = rlimit()
        guard getrlimit(resourceNumber, &limit) == 0 else { return DescriptorLimit(soft: 1_024, hard: 1_024) }
        return DescriptorLimit(soft: clamped(limit.rlim_cur), hard: clamped(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one, once at start-up: the limit before and after (the same when it was
    /// already there, or the kernel refused).
    @discardableResult
    public static func raiseToHard() -> (before: DescriptorLimit, after: DescriptorLimit) {
        let before = current()
        guard before.soft < before.hard else { return (before, before) }
        var raised = rlimit(rlim_cur: rlim_t(before.hard), rlim_max: rlim_t(before.hard))
        // A hard limit reported as unlimited (RLIM_INFINITY, macOS) cannot be a soft one: the clamp above made it
        // `Int32.max`, which such kernels refuse, leaving the soft limit as it was.
        _ = setrlimit(resourceNumber, &raised)
        return (before, current())
    }

    /// Descriptors a node keeps for everything but its subscribers — publishers' HTTP connections, Redis and MQTT
    /// connections, connections accepted but not yet upgraded, its own files and event loops: an eighth of the
    /// limit, at least 64.
    public var keptForOthers: Int { max(64, soft / 8) }

    /// How many WebSocket connections and SSE streams fit beside what `keptForOthers` keeps.
    public var subscriberRoom: Int { max(0, soft - keptForOthers) }

    /// How many connections of any kind the node accepts at once: all but a sixteenth of the limit (at least 32),
    /// which stays with the process itself — Redis and MQTT connections and their reconnections, its event loops,
    /// the files a SIGHUP reads — however many clients connect.
    public var acceptRoom: Int { max(0, soft - max(32, soft / 16)) }

    public var description: String { soft == hard ? "\(soft)" : "\(soft) (hard limit \(hard))" }

    private static func clamped(_ value: rlim_t) -> Int { value >= rlim_t(Int32.max) ? Int(Int32.max) : Int(value) }

    #if canImport(Glibc)
    private static let resourceNumber = Int32(RLIMIT_NOFILE.rawValue)
    #else
    private static let resourceNumber = RLIMIT_NOFILE
    #endif
}
