import Logging
import NIOCore
import NIOPosix
import StatusHubCore
import Synchronization

/// A command connection that is always either usable, being opened, or failing fast.
///
/// Callers ask for `connection()`; the first caller after a drop opens a new one and everyone arriving meanwhile
/// waits for that same attempt (one connect, not a stampede). After a failed attempt, callers fail at once with
/// `RedisError.notConnected` until the backoff delay has passed: ingest answers 503 immediately instead of
/// queueing behind a dead Redis. `maintain()` keeps the connection up in the background and health-checks it,
/// so a silently dead peer is noticed even when no one is sending.
///
/// It connects to whatever its `MasterLocator` names: one fixed URL, or the master Sentinel names. With Sentinel a
/// new connection must answer `ROLE` as master, the health check asks `ROLE` too (a demoted master is left), and a
/// failover the locator hears of closes the connection to the old master at once.
public final class ReconnectingConnection: Sendable {
    private enum State {
        case idle
        case connecting(EventLoopFuture<RedisConnection>)
        case connected(RedisConnection)
        case waiting(until: ContinuousClock.Instant)
        case shutDown
    }

    private struct Locked {
        var state = State.idle
        var backoff: Backoff
        var failedAttempts = 0
        /// Why the last attempt failed, while no connection is up: what `/ready` tells an operator.
        var lastFailure: String?
    }

    public let locator: any MasterLocator
    private let commandTimeoutSeconds: Double
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let prepare: @Sendable (RedisConnection) async throws -> Void
    private let locked: Mutex<Locked>

    /// - Parameter prepare: runs on every new connection before anyone may use it (e.g. `SCRIPT LOAD`); if it
    ///   throws, the attempt counts as failed.
    public convenience init(
        url: RedisURL,
        commandTimeoutSeconds: Double,
        backoff: Backoff,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        prepare: @escaping @Sendable (RedisConnection) async throws -> Void = { _ in }
    ) {
        self.init(
            locator: FixedMaster(url), commandTimeoutSeconds: commandTimeoutSeconds, backoff: backoff,
            eventLoopGroup: eventLoopGroup, logger: logger, prepare: prepare)
    }

    public init(
        locator: any MasterLocator,
        commandTimeoutSeconds: Double,
        backoff: Backoff,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        prepare: @escaping @Sendable (RedisConnection) async throws -> Void = { _ in }
    ) {
        self.locator = locator
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.prepare = prepare
        self.locked = Mutex(Locked(backoff: backoff))
        locator.onMasterChange { [weak self] master in self?.masterMoved(to: master) }
    }

    public var isConnected: Bool {
        locked.withLock { locked in
            if case .connected(let connection) = locked.state { connection.isActive } else { false }
        }
    }

    /// Why the latest attempt to connect failed, while it is still not connected (`ERR DB index is out of range`,
    /// `WRONGPASS …`): a node that cannot connect says why where an operator looks, not only in its log.
    public var lastFailure: String? {
        locked.withLock { locked in
            if case .connected(let connection) = locked.state, connection.isActive { return nil }
            return locked.lastFailure
        }
    }

    /// The open connection, or a new one.
    /// - Throws: `RedisError.notConnected` while backing off, `.connectFailed` if this attempt fails,
    ///   `.shutDown` after `shutdown()`.
    public func connection() async throws -> RedisConnection {
        enum Action {
            case use(RedisConnection)
            case join(EventLoopFuture<RedisConnection>)
            case open(EventLoopPromise<RedisConnection>)
            case fail(RedisError)
        }
        let now = ContinuousClock.now
        let action: Action = locked.withLock { locked in
            switch locked.state {
            case .connected(let connection) where connection.isActive:
                return .use(connection)
            case .connecting(let attempt):
                return .join(attempt)
            case .waiting(let until) where now < until:
                return .fail(.notConnected(retryAfterSeconds: (until - now).seconds))
            case .shutDown:
                return .fail(.shutDown)
            case .idle, .connected, .waiting:
                let promise = eventLoopGroup.next().makePromise(of: RedisConnection.self)
                locked.state = .connecting(promise.futureResult)
                return .open(promise)
            }
        }
        switch action {
        case .use(let connection):
            return connection
        case .join(let attempt):
            return try await attempt.get()
        case .fail(let error):
            throw error
        case .open(let promise):
            do {
                let connection = try await open()
                promise.succeed(connection)
                return connection
            } catch {
                promise.fail(error)
                throw error
            }
        }
    }

    private func open() async throws -> RedisConnection {
        let connection: RedisConnection
        var url: RedisURL?
        do {
            let master = try await locator.master()
            url = master
            var onMoved: (@Sendable (ClusterRedirect) -> Void)?
            if locator.isCluster {
                onMoved = { [weak self] redirect in self?.slotMoved(redirect, from: master) }
            }
            connection = try await RedisConnection.connect(
                to: master, commandTimeoutSeconds: commandTimeoutSeconds, eventLoopGroup: eventLoopGroup, onMoved: onMoved)
            do {
                if locator.checksRole, try await !connection.isMaster() {
                    throw RedisError.connectFailed("\(master) is not a master (ROLE)")
                }
                try await prepare(connection)
            } catch {
                await connection.close()
                throw RedisError.connectFailed("\(master): preparing the connection failed: \(error)")
            }
        } catch {
            if let url { locator.masterFailed(url) }
            let (delay, attempts) = locked.withLock { locked -> (Double?, Int) in
                guard case .connecting = locked.state else { return (nil, locked.failedAttempts) }
                let delay = locked.backoff.next()
                locked.failedAttempts += 1
                locked.lastFailure = "\(error)"
                locked.state = .waiting(until: .now + .seconds(delay))
                return (delay, locked.failedAttempts)
            }
            // The first failure is news; the hundredth in a row is noise.
            let level: Logger.Level = attempts == 1 || attempts.isMultiple(of: 50) ? .warning : .debug
            logger.log(
                level: level, "redis connect failed",
                metadata: [
                    "redis.url": "\(url.map { "\($0)" } ?? locator.description)", "error": "\(error)", "attempt": "\(attempts)",
                    "retry_in_ms": "\(delay.map { Int($0 * 1000) } ?? 0)",
                ])
            throw error
        }

        let (accepted, previousFailures) = locked.withLock { locked -> (Bool, Int) in
            guard case .connecting = locked.state else { return (false, 0) }
            let failures = locked.failedAttempts
            locked.state = .connected(connection)
            locked.backoff.reset()
            locked.failedAttempts = 0
            locked.lastFailure = nil
            return (true, failures)
        }
        guard accepted else {
            await connection.close()
            throw RedisError.shutDown
        }
        logger.info(
            "redis connected", metadata: ["redis.url": "\(connection.url)", "after_failed_attempts": "\(previousFailures)"])
        connection.closeFuture.whenComplete { [weak self] _ in self?.dropped(connection) }
        return connection
    }

    private func dropped(_ connection: RedisConnection) {
        let wasCurrent = locked.withLock { locked -> Bool in
            guard case .connected(let current) = locked.state, current === connection else { return false }
            locked.state = .idle
            return true
        }
        guard wasCurrent else { return }
        logger.warning("redis connection lost", metadata: ["redis.url": "\(connection.url)"])
        locator.masterFailed(connection.url)
    }

    /// The locator heard of a failover: a connection to another server is left now, not when it next fails.
    private func masterMoved(to master: RedisURL) {
        let stale = locked.withLock { locked -> RedisConnection? in
            guard case .connected(let current) = locked.state, current.url != master else { return nil }
            return current
        }
        guard let stale else { return }
        logger.notice("leaving the old redis master", metadata: ["redis.url": "\(stale.url)", "master": "\(master)"])
        Task { await stale.close() }
    }

    /// A cluster node answered `MOVED`: everything this connection sends is of one slot (a partition's), which is
    /// served elsewhere now. The locator learns where, and the connection is left: the next `connection()` opens one
    /// to the new owner. It is closed once the commands already sent on it are answered (all `MOVED` too, or
    /// keyless) — a `PING` is answered after them — so no caller sees a command it sent cut off.
    private func slotMoved(_ redirect: ClusterRedirect, from server: RedisURL) {
        guard case .moved(_, let host, let port) = redirect else { return }
        locator.slotMoved(redirect)
        let left = locked.withLock { locked -> RedisConnection? in
            guard case .connected(let current) = locked.state, current.url == server else { return nil }
            locked.state = .idle
            return current
        }
        guard let left else { return }
        logger.notice("the cluster slot moved; reconnecting to its new master", metadata: ["redis.url": "\(server)", "master": "\(host):\(port)"])
        Task {
            _ = try? await left.send(["PING"])
            await left.close()
        }
    }

    /// Keeps the connection open until the task is cancelled: reconnects after a drop (with backoff) and sends a
    /// `PING` every `healthCheckInterval`; one that times out closes the connection, which starts a reconnect.
    public func maintain(healthCheckInterval: Duration = .seconds(5)) async {
        while !Task.isCancelled {
            do {
                let connection = try await connection()
                while connection.isActive, !Task.isCancelled {
                    await connection.waitUntilClosed(atMost: healthCheckInterval)
                    guard connection.isActive, !Task.isCancelled else { break }
                    if locator.checksRole {
                        // A master demoted behind this node's back still answers; only ROLE tells.
                        if (try? await connection.isMaster()) == false {
                            logger.warning("redis server is no longer the master; reconnecting", metadata: ["redis.url": "\(connection.url)"])
                            await connection.close()
                        }
                    } else {
                        _ = try? await connection.send(["PING"])
                    }
                }
            } catch RedisError.shutDown {
                return
            } catch {
                try? await Task.sleep(for: retryDelay())
            }
        }
    }

    private func retryDelay() -> Duration {
        let now = ContinuousClock.now
        return locked.withLock { locked in
            if case .waiting(let until) = locked.state, until > now { return until - now }
            return .milliseconds(10)
        }
    }

    /// Closes the connection for good; later `connection()` calls throw `RedisError.shutDown`.
    public func shutdown() async {
        let previous = locked.withLock { locked -> State in
            let previous = locked.state
            locked.state = .shutDown
            return previous
        }
        switch previous {
        case .connected(let connection):
            await connection.close()
        case .connecting(let attempt):
            if let connection = try? await attempt.get() { await connection.close() }
        case .idle, .waiting, .shutDown:
            break
        }
    }
}
