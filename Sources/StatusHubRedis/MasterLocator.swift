import Synchronization

/// Where the node's connections find the Redis master: one fixed URL (`redis.url`), or whichever server the
/// sentinels name (`SentinelMaster`).
///
/// Every connection asks anew each time it (re)connects, tells the locator when a master it was given failed or
/// turned out to be a replica, and hears when the master moved, so it can leave the old one at once.
public protocol MasterLocator: Sendable, CustomStringConvertible {
    /// The master to connect to now.
    /// - Throws: `RedisError.connectFailed` when no master is known (every sentinel unreachable, or a failover
    ///   under way).
    func master() async throws -> RedisURL

    /// `url` failed (refused, dropped, timed out) or answered `ROLE` as a replica: the next `master()` asks again.
    func masterFailed(_ url: RedisURL)

    /// Whether a new connection must check `ROLE` before use: with Sentinel, an address that was the master may
    /// now be a replica (demoted while this node still believed in it).
    var checksRole: Bool { get }

    /// Calls `moved` with the new master whenever the master changes, until the task that runs `watch` ends.
    func onMasterChange(_ moved: @escaping @Sendable (RedisURL) -> Void)

    /// A Redis Cluster node answered `MOVED`: the slot a connection works on is served elsewhere now. Only a cluster
    /// locator (`ClusterSlotMaster`) has slots; the others ignore it.
    func slotMoved(_ redirect: ClusterRedirect)

    /// Whether the connections use a Redis Cluster's sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`) and hash-tagged
    /// entity keys.
    var isCluster: Bool { get }

    /// Background work (listening for failovers), until the task is cancelled.
    func watch() async

    /// For logs: the URL, or the sentinels and the master's name.
    var description: String { get }
}

extension MasterLocator {
    public func slotMoved(_ redirect: ClusterRedirect) {}
    public var isCluster: Bool { false }
}

/// The master is always `url`: a single Redis, as configured by `redis.url`.
public struct FixedMaster: MasterLocator {
    public let url: RedisURL

    public init(_ url: RedisURL) { self.url = url }

    public func master() async throws -> RedisURL { url }
    public func masterFailed(_ url: RedisURL) {}
    public var checksRole: Bool { false }
    public func onMasterChange(_ moved: @escaping @Sendable (RedisURL) -> Void) {}
    public func watch() async {}
    public var description: String { url.description }
}

extension RedisConnection {
    /// Whether the server answers `ROLE` as a master: a demoted one refuses writes (`READONLY`) and no longer
    /// publishes what the hub writes.
    func isMaster() async throws -> Bool {
        let reply = try await send(["ROLE"]).orThrow()
        guard case .array(let parts) = reply, let role = parts.first?.text else {
            throw RedisError.unexpectedReply("ROLE answered \(reply)")
        }
        return role == "master"
    }
}
