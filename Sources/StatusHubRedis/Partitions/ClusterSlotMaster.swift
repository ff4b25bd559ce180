import Synchronization

/// Where a partition lives on a Redis Cluster (`redis.cluster`): the master serving the slot of the partition's
/// hash tag (`{p3}`), as the shared slot map of a `ClusterClient` names it.
///
/// Every connection of the partition (commands, reads, subscriber) asks it on each (re)connect. A slot that moves is
/// noticed by each connection on its own, as soon as it touches the slot: a command answered `MOVED` (the connection
/// tells `slotMoved`, which corrects the map at once and re-reads it, then reconnects to the new owner), or the
/// subscriber's sharded subscription ended by the node (`sunsubscribe`). A connection that fails (a master gone)
/// calls `masterFailed`, and the next `master()` reads the map again first — so a failover promoted by the cluster
/// is found too. No connection is closed from here: those on a node that lost the slot get `MOVED` for their next
/// command, which ran nowhere, rather than having commands in flight cut off.
public final class ClusterSlotMaster: MasterLocator {
    public let client: ClusterClient
    /// The hash tag whose slot this is (`{p3}`).
    public let tag: String
    public let slot: Int
    /// Set when a connection failed: the map may be stale, and is read again before the next answer.
    private let stale = Atomic(false)

    public init(client: ClusterClient, tag: String) {
        self.client = client
        self.tag = tag
        self.slot = ClusterSlot.of(key: tag)
    }

    public func master() async throws -> RedisURL {
        if stale.exchange(false, ordering: .acquiringAndReleasing) {
            do {
                try await client.refresh()
            } catch {
                // No node answers: the next connection failure asks again; meanwhile the map's answer stands.
                stale.store(true, ordering: .releasing)
            }
        }
        return try await client.master(forSlot: slot)
    }

    public func masterFailed(_ url: RedisURL) { stale.store(true, ordering: .releasing) }

    public func slotMoved(_ redirect: ClusterRedirect) {
        guard case .moved(let slot, let host, let port) = redirect else { return }
        client.noteMoved(slot: slot, to: client.node(host: host, port: port))
    }

    /// A cluster master answers `ROLE` as one; a demoted one answers `MOVED` instead of taking writes.
    public var checksRole: Bool { false }

    public var isCluster: Bool { true }

    public func onMasterChange(_ moved: @escaping @Sendable (RedisURL) -> Void) {}

    public func watch() async {}

    public var description: String {
        "cluster slot \(slot) of \(tag)\(client.knownMaster(forSlot: slot).map { " on \($0)" } ?? "")"
    }
}
