import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ports for the servers a test starts (redis-server, mosquitto, a hub process).
///
/// Chosen below the kernel's ephemeral range, not by binding port 0: a port from inside the range can be taken by
/// any outgoing connection on the machine between this check and the server's own bind (a CI run lost its smoke
/// test to exactly that), while a port below it is only ever taken by a bind that names it. No port is handed out
/// twice in one test run, so tests running side by side never race each other for one.
enum LoopbackPort {
    struct Exhausted: Error, CustomStringConvertible {
        var description: String
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// A loopback port nothing is bound to now (not even in TIME_WAIT) and no earlier call returned, below the
    /// ephemeral range and below `limit` (a Redis Cluster node also binds its port + 10,000).
    static func unused(below limit: Int = .max) throws -> Int {
        let lowest = 10_000
        let highest = min(ephemeralRangeStart(), limit)
        guard highest > lowest + 1_000 else {
            throw Exhausted(description: "ports below \(highest) (the ephemeral range's start or the caller's limit): no room")
        }
        for _ in 0..<200 {
            let port = Int.random(in: lowest..<highest)
            let claimed = handedOut.withLock { $0.insert(port).inserted }
            if claimed, bindsNow(port) { return port }
        }
        throw Exhausted(description: "no free loopback port between \(lowest) and \(highest) in 200 tries")
    }

    static func ephemeralRangeStart() -> Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return range.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32_768
    }

    /// Whether 127.0.0.1:`port` can be bound at this moment, without SO_REUSEADDR (so a TIME_WAIT socket counts).
    private static func bindsNow(_ port: Int) -> Bool {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0
    }
}
