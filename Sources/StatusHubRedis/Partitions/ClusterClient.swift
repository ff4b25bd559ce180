import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A Redis Cluster client: the slot map from `CLUSTER SLOTS`, one pipelined connection per master, commands
/// routed by their key's slot, `MOVED` (the map is out of date: note the move, refresh the map, send again) and
/// `ASK` (the slot is migrating: send once to the named node, after `ASKING`) followed, and sharded pub/sub
/// (`SSUBSCRIBE` on the slot's master, so a message is not copied to every node of the cluster).
///
/// A redirected command did not run, so following a redirect is always safe; a command whose connection failed
/// may have run, so that error goes back to the caller (the engine's outcome rules decide what it means).
public final class ClusterClient: Sendable {
    /// Redirects followed for one command before giving up (a cluster being resharded may redirect more than once).
    static let maxRedirects = 5

    private struct State {
        var map: ClusterSlotMap?
        var connections: [RedisURL: RedisConnection] = [:]
        var refreshing: Task<ClusterSlotMap, any Error>?
    }

    /// Nodes to ask for the map first; their user, password and database apply to every node.
    public let seeds: [RedisURL]
    private let commandTimeoutSeconds: Double
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())

    public init(
        seeds: [RedisURL], commandTimeoutSeconds: Double, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        precondition(!seeds.isEmpty, "at least one cluster node")
        self.seeds = seeds
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// The slot map, read once and then kept until a redirect or a failure refreshes it.
    public func slotMap() async throws -> ClusterSlotMap {
        if let map = state.withLock({ $0.map }) { return map }
        return try await refresh()
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers (known masters first, then the seeds); concurrent
    /// callers share one read.
    @discardableResult
    public func refresh() async throws -> ClusterSlotMap {
        let task = state.withLock { state -> Task<ClusterSlotMap, any Error> in
            if let refreshing = state.refreshing { return refreshing }
            let candidates = (state.map?.masters ?? []) + seeds
            let refreshing = Task { try await self.readMap(from: candidates) }
            state.refreshing = refreshing
            return refreshing
        }
        do {
            let map = try await task.value
            state.withLock { state in
                state.map = map
                state.refreshing = nil
            }
            return map
        } catch {
            state.withLock { $0.refreshing = nil }
            throw error
        }
    }

    private func readMap(from candidates: [RedisURL]) async throws -> ClusterSlotMap {
        var problems: [String] = []
        var tried = Set<RedisURL>()
        for node in candidates where tried.insert(node).inserted {
            do {
                let reply = try await connection(to: node).send(["CLUSTER", "SLOTS"])
                let map = try ClusterSlotMap(clusterSlots: reply.orThrow(), askedNode: node)
                if !map.coversEverySlot { logger.warning("the Redis Cluster does not serve every slot", metadata: ["node": "\(node)"]) }
                return map
            } catch {
                problems.append("\(node): \(error)")
                dropConnection(to: node)
            }
        }
        throw RedisError.connectFailed("no cluster node answered CLUSTER SLOTS: \(problems.joined(separator: "; "))")
    }

    /// The open connection to `node`, or a new one.
    func connection(to node: RedisURL) async throws -> RedisConnection {
        if let open = state.withLock({ $0.connections[node] }), open.isActive { return open }
        let opened = try await RedisConnection.connect(to: node, commandTimeoutSeconds: commandTimeoutSeconds, eventLoopGroup: eventLoopGroup)
        let kept = state.withLock { state -> RedisConnection in
            if let other = state.connections[node], other.isActive { return other }
            state.connections[node] = opened
            return opened
        }
        if kept !== opened { await opened.close() }
        return kept
    }

    private func dropConnection(to node: RedisURL) {
        let dropped = state.withLock { $0.connections.removeValue(forKey: node) }
        if let dropped { Task { await dropped.close() } }
    }

    /// The master serving `slot` now, refreshing the map when no node serves it.
    public func master(forSlot slot: Int) async throws -> RedisURL {
        if let master = try await slotMap().master(forSlot: slot) { return master }
        guard let master = try await refresh().master(forSlot: slot) else {
            throw RedisError.notConnected(retryAfterSeconds: 1)
        }
        return master
    }

    /// The master the map names for `slot` now, without asking the cluster (for logs).
    public func knownMaster(forSlot slot: Int) -> RedisURL? { state.withLock { $0.map?.master(forSlot: slot) } }

    /// A node answered `MOVED`: `slot` is served by `master` now. The rest of the map is probably stale too (a
    /// resharding moves many slots), so it is read again soon.
    public func noteMoved(slot: Int, to master: RedisURL) {
        state.withLock { $0.map?.assign(slot: slot, to: master) }
        Task { _ = try? await self.refresh() }
    }

    /// Sends `commands`, whose keys all hash to the slot of `key` (a partition's keys share its hash tag), as one
    /// pipeline to that slot's master, following redirects. Returns the replies in order.
    public func pipeline(_ commands: [[[UInt8]]], key: String) async throws -> [RedisReply] {
        let slot = ClusterSlot.of(key: key)
        var target = try await master(forSlot: slot)
        var asking = false
        for _ in 0...Self.maxRedirects {
            let connection: RedisConnection
            do {
                connection = try await self.connection(to: target)
            } catch {
                // The master is gone (failed over, or removed): the map is stale.
                dropConnection(to: target)
                _ = try? await refresh()
                throw error
            }
            var replies: [RedisReply]
            do {
                replies = try await connection.pipeline(asking ? [[Array("ASKING".utf8)]] + commands : commands)
            } catch {
                dropConnection(to: target)
                throw error
            }
            if asking { replies.removeFirst() }
            // All commands share the slot, so a redirect refuses the first of them (and every one after it).
            guard let message = replies.first?.errorMessage, let redirect = ClusterRedirect(errorMessage: message) else {
                return replies
            }
            switch redirect {
            case .moved(let movedSlot, let host, let port):
                target = node(host: host, port: port)
                noteMoved(slot: movedSlot, to: target)
                asking = false
            case .ask(_, let host, let port):
                target = node(host: host, port: port)
                asking = true
            }
        }
        throw RedisError.unexpectedReply("slot \(slot) redirected more than \(Self.maxRedirects) times")
    }

    /// One command on the slot of `key`.
    public func send(_ command: [String], key: String) async throws -> RedisReply {
        try await pipeline([command.map { Array($0.utf8) }], key: key)[0]
    }

    /// A node the cluster named, with the seeds' credentials and database.
    func node(host: String, port: Int) -> RedisURL {
        var url = seeds[0]
        url.host = host
        url.port = port
        return url
    }

    /// Subscribes to the sharded channel on its slot's master and hands each message's payload to `receive` (in
    /// order, batched per read), until the task is cancelled or the subscription ends: the connection closed, or
    /// the node ended it because the slot moved (`sunsubscribe`). `subscribed` runs once the subscription holds.
    /// The caller subscribes again (a reconnect may have missed messages: catch up from history, as
    /// `RedisSubscriber` does).
    public func subscribeSharded(
        _ channel: String, subscribed: () -> Void = {}, receive: @escaping @Sendable ([[UInt8]]) -> Void
    ) async throws {
        let slot = ClusterSlot.of(key: channel)
        var target = try await master(forSlot: slot)
        for _ in 0...Self.maxRedirects {
            let (pushes, continuation) = AsyncStream.makeStream(of: [RedisReply].self)
            let connection = try await RedisConnection.connect(
                to: target, commandTimeoutSeconds: commandTimeoutSeconds, eventLoopGroup: eventLoopGroup,
                onPush: { continuation.yield($0) })
            connection.closeFuture.whenComplete { _ in continuation.finish() }
            let confirmation: RedisReply
            do {
                confirmation = try await connection.send(["SSUBSCRIBE", channel])
            } catch {
                await connection.close()
                throw error
            }
            if let message = confirmation.errorMessage, case .moved(_, let host, let port)? = ClusterRedirect(errorMessage: message) {
                await connection.close()
                target = node(host: host, port: port)
                state.withLock { $0.map?.assign(slot: slot, to: target) }
                continue
            }
            guard case .array(let parts) = confirmation, parts.first?.text == "ssubscribe" else {
                await connection.close()
                throw RedisError.unexpectedReply("SSUBSCRIBE answered \(confirmation)")
            }
            subscribed()
            await withTaskCancellationHandler {
                readLoop: for await batch in pushes {
                    var payloads: [[UInt8]] = []
                    for push in batch {
                        guard case .array(let parts) = push, let kind = parts.first?.text else { continue }
                        if kind == "sunsubscribe" { break readLoop }
                        if kind == "smessage", parts.count == 3, let payload = parts[2].bytes { payloads.append(payload) }
                    }
                    if !payloads.isEmpty { receive(payloads) }
                }
            } onCancel: {
                connection.channel.close(promise: nil)
            }
            await connection.close()
            return
        }
        throw RedisError.unexpectedReply("SSUBSCRIBE \(channel) redirected more than \(Self.maxRedirects) times")
    }

    /// Closes every connection.
    public func shutdown() async {
        let connections = state.withLock { state in
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in connections { await connection.close() }
    }
}
