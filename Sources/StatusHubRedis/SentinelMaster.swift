import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The master as Redis Sentinel names it (`redis.sentinels` + `redis.master_name`), following failovers.
///
/// As the Sentinel client guidelines ask: the master's address comes from the first sentinel that answers
/// `SENTINEL get-master-addr-by-name` (which then moves to the front of the list), a new connection checks
/// `ROLE` before use (`checksRole`), and a connection error makes the next connection ask again. `watch`
/// subscribes to `+switch-master` on one sentinel, so a failover is heard the moment the sentinels agree on it,
/// and connections to the old master are closed at once (`onMasterChange`) rather than when they next fail.
/// The master's user, password and database come from `redis.url` when it is set (its host and port are ignored).
public final class SentinelMaster: MasterLocator {
    /// A sentinel's `host:port`.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port` (`[v6]:port` for IPv6).
        public init(parsing text: String) throws(RedisError) {
            guard let url = try? RedisURL(parsing: "redis://" + text), !text.contains("/"), !text.contains("@"),
                text.hasSuffix(":\(url.port)")
            else { throw .invalidURL("sentinel address '\(text)' must be host:port") }
            self.init(host: url.host, port: url.port)
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    private struct State {
        var sentinels: [Address]
        var known: RedisURL?
        var asking: Task<RedisURL, any Error>?
        var observers: [@Sendable (RedisURL) -> Void] = []
    }

    public let masterName: String
    private let template: RedisURL
    private let commandTimeoutSeconds: Double
    private let backoff: Backoff
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state: Mutex<State>

    /// - Parameter template: user, password and database of the master (host and port are not used).
    public init(
        sentinels: [Address], masterName: String, template: RedisURL, commandTimeoutSeconds: Double, backoff: Backoff,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.masterName = masterName
        self.template = template
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.backoff = backoff
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.state = Mutex(State(sentinels: sentinels))
    }

    public var description: String {
        "sentinel master '\(masterName)' via \(state.withLock { $0.sentinels }.map(\.description).joined(separator: ","))"
    }

    public var checksRole: Bool { true }

    public func master() async throws -> RedisURL {
        enum Next {
            case known(RedisURL)
            case wait(Task<RedisURL, any Error>)
        }
        let next = state.withLock { state -> Next in
            if let known = state.known { return .known(known) }
            if let asking = state.asking { return .wait(asking) }
            // One question at a time: every connection that finds the master gone asks at once.
            let asking = Task { try await self.ask() }
            state.asking = asking
            return .wait(asking)
        }
        switch next {
        case .known(let url): return url
        case .wait(let asking): return try await asking.value
        }
    }

    public func masterFailed(_ url: RedisURL) {
        let forgot = state.withLock { state -> Bool in
            guard state.known == url else { return false }
            state.known = nil
            return true
        }
        guard forgot else { return }
        logger.info("redis master failed or was demoted; asking the sentinels again", metadata: ["redis.url": "\(url)"])
        // The other connections (the subscriber's above all) may still sit on it: if the sentinels name another
        // master now, they are told to move.
        Task { _ = try? await self.master() }
    }

    public func onMasterChange(_ moved: @escaping @Sendable (RedisURL) -> Void) {
        state.withLock { $0.observers.append(moved) }
    }

    /// Asks the sentinels in order; the first that names the master moves to the front.
    private func ask() async throws -> RedisURL {
        let sentinels = state.withLock { $0.sentinels }
        var problems: [String] = []
        for sentinel in sentinels {
            do {
                let connection = try await RedisConnection.connect(
                    to: RedisURL(host: sentinel.host, port: sentinel.port), commandTimeoutSeconds: commandTimeoutSeconds,
                    eventLoopGroup: eventLoopGroup)
                let reply: RedisReply
                do {
                    reply = try await connection.send(["SENTINEL", "get-master-addr-by-name", masterName])
                } catch {
                    await connection.close()
                    throw error
                }
                await connection.close()
                guard case .array(let parts) = try reply.orThrow(), parts.count == 2, let host = parts[0].text,
                    let port = parts[1].text.flatMap(Int.init)
                else {
                    problems.append("\(sentinel): knows no master '\(masterName)'")
                    continue
                }
                var url = template
                url.host = host
                url.port = port
                settle(url, answeredBy: sentinel)
                return url
            } catch {
                problems.append("\(sentinel): \(error)")
            }
        }
        state.withLock { $0.asking = nil }
        throw RedisError.connectFailed("no sentinel named the master '\(masterName)': \(problems.joined(separator: "; "))")
    }

    /// Records `url` as the master (and the sentinel that said so as the first to ask), telling the observers
    /// when it moved.
    private func settle(_ url: RedisURL, answeredBy sentinel: Address?) {
        let (observers, moved, previous) = state.withLock { state -> ([@Sendable (RedisURL) -> Void], Bool, RedisURL?) in
            if let sentinel, let index = state.sentinels.firstIndex(of: sentinel), index > 0 {
                state.sentinels.remove(at: index)
                state.sentinels.insert(sentinel, at: 0)
            }
            state.asking = nil
            let previous = state.known
            state.known = url
            return (state.observers, previous != url, previous)
        }
        guard moved else { return }
        logger.notice(
            "redis master is \(url)", metadata: ["master_name": "\(masterName)", "previous": "\(previous.map { "\($0)" } ?? "-")"])
        for observer in observers { observer(url) }
    }

    /// Listens for `+switch-master` on the first sentinel that takes the subscription, moving on to the next one
    /// when it goes away, until the task is cancelled. After each (re)subscribe the master is asked for again: a
    /// failover announced while no one listened is not announced twice.
    public func watch() async {
        var backoff = self.backoff
        while !Task.isCancelled {
            let sentinels = state.withLock { $0.sentinels }
            for sentinel in sentinels where !Task.isCancelled {
                do {
                    try await listen(to: sentinel) { backoff.reset() }
                } catch {
                    logger.debug("sentinel subscription failed", metadata: ["sentinel": "\(sentinel)", "error": "\(error)"])
                }
            }
            try? await Task.sleep(for: .seconds(backoff.next()))
        }
    }

    private func listen(to sentinel: Address, onSubscribed: () -> Void) async throws {
        let (pushes, continuation) = AsyncStream.makeStream(of: [RedisReply].self)
        let connection = try await RedisConnection.connect(
            to: RedisURL(host: sentinel.host, port: sentinel.port), commandTimeoutSeconds: commandTimeoutSeconds,
            eventLoopGroup: eventLoopGroup, onPush: { continuation.yield($0) })
        connection.closeFuture.whenComplete { _ in continuation.finish() }
        do {
            try await subscribed(on: connection, pushes: pushes, onSubscribed: onSubscribed)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
    }

    private func subscribed(
        on connection: RedisConnection, pushes: AsyncStream<[RedisReply]>, onSubscribed: () -> Void
    ) async throws {
        let confirmation = try await connection.send(["SUBSCRIBE", "+switch-master"])
        guard case .array(let parts) = confirmation, parts.first?.text == "subscribe" else {
            throw RedisError.unexpectedReply("SUBSCRIBE +switch-master answered \(confirmation)")
        }
        onSubscribed()
        _ = try? await ask()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [commandTimeoutSeconds] in
                // A sentinel that vanished without a FIN would otherwise leave this node deaf to failovers.
                while !Task.isCancelled {
                    do {
                        try await Task.sleep(for: .seconds(max(1, 2 * commandTimeoutSeconds)))
                        _ = try await connection.send(["PING"])
                    } catch {
                        return
                    }
                }
            }
            for await batch in pushes {
                for push in batch {
                    // [message, +switch-master, "<name> <old ip> <old port> <new ip> <new port>"]
                    guard case .array(let parts) = push, parts.count == 3, parts[0].text == "message",
                        let words = parts[2].text?.split(separator: " "), words.count == 5, words[0] == masterName,
                        let port = Int(words[4])
                    else { continue }
                    var url = template
                    url.host = String(words[3])
                    url.port = port
                    logger.notice("sentinels switched the master", metadata: ["master_name": "\(masterName)", "to": "\(url)"])
                    settle(url, answeredBy: nil)
                }
            }
            group.cancelAll()
        }
    }
}
