import NIOCore
import NIOPosix
import StatusHubCore

/// One TCP connection to Redis. NIO does the non-blocking I/O, hiredis the RESP protocol (see `RESPHandler`).
///
/// Any number of tasks may call `send` and `pipeline` at once: requests are written in the order they reach the
/// event loop and replies are matched in that order, so concurrent callers share the connection's pipeline.
/// A command that gets no reply within the command timeout closes the connection and fails everything in
/// flight, because a stalled Redis or a dead peer would otherwise hold every later reply hostage.
public final class RedisConnection: Sendable {
    public let url: RedisURL
    let channel: any Channel

    private init(url: RedisURL, channel: any Channel) {
        self.url = url
        self.channel = channel
    }

    /// Opens a connection, authenticates if the URL has a password, and selects the URL's database.
    ///
    /// - Parameters:
    ///   - commandTimeoutSeconds: how long a command may wait for its reply, and how long connecting may take.
    ///   - onPush: makes this a pub/sub connection; receives `message`/`pmessage` pushes on the event loop, in
    ///     order. It must not block.
    ///   - onMoved: hears each `MOVED` reply (a Redis Cluster slot served elsewhere now) on the event loop, before
    ///     the command's caller gets it. It must not block.
    /// - Throws: `RedisError.connectFailed`.
    public static func connect(
        to url: RedisURL,
        commandTimeoutSeconds: Double = 2,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onPush: (@Sendable ([RedisReply]) -> Void)? = nil,
        onMoved: (@Sendable (ClusterRedirect) -> Void)? = nil
    ) async throws -> RedisConnection {
        let timeout = TimeAmount.nanoseconds(Int64(max(0.001, commandTimeoutSeconds) * 1_000_000_000))
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RESPHandler(commandTimeout: timeout, onPush: onPush, onMoved: onMoved))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: url.host, port: url.port).get()
        } catch {
            throw RedisError.connectFailed("\(url): \(error)")
        }
        let connection = RedisConnection(url: url, channel: channel)
        do {
            try await connection.handshake()
        } catch {
            await connection.close()
            throw RedisError.connectFailed("\(url): \(error)")
        }
        return connection
    }

    private func handshake() async throws {
        var commands: [[String]] = []
        if let password = url.password {
            commands.append(url.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if url.database != 0 { commands.append(["SELECT", String(url.database)]) }
        for reply in try await pipeline(commands) { _ = try reply.orThrow() }
    }

    /// Whether the connection is open. A closed connection never reopens; make a new one.
    public var isActive: Bool { channel.isActive }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Sends one command and waits for its reply. An error reply is returned as `.error`, not thrown.
    /// - Throws: `RedisError` when the connection fails or the reply is late.
    public func send(_ arguments: [[UInt8]]) async throws -> RedisReply {
        try await pipeline([arguments])[0]
    }

    public func send(_ arguments: [String]) async throws -> RedisReply {
        try await pipeline([arguments])[0]
    }

    /// Writes all `commands` with a single flush and returns their replies in order: one round trip for N
    /// commands. Not atomic: other clients' commands may run in between (use a script for atomicity).
    public func pipeline(_ commands: [[[UInt8]]]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        var buffer = channel.allocator.buffer(capacity: commands.count * 32)
        for command in commands { try RESPCommandEncoder.encode(command, into: &buffer) }
        return try await submit(buffer, count: commands.count)
    }

    public func pipeline(_ commands: [[String]]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        var buffer = channel.allocator.buffer(capacity: commands.count * 32)
        for command in commands { try RESPCommandEncoder.encode(command, into: &buffer) }
        return try await submit(buffer, count: commands.count)
    }

    private func submit(_ payload: ByteBuffer, count: Int) async throws -> [RedisReply] {
        let replies = channel.eventLoop.makePromise(of: [RedisReply].self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        // Once the channel has closed, its handlers are gone and a write never reaches `RESPHandler`, so the
        // failed write is the only thing that can release the caller. (Completing a promise twice is a no-op.)
        // A write refused because the channel was already closed sent nothing; any other failed write may have
        // sent part of the commands, so whether they ran is unknown.
        written.futureResult.whenFailure { error in
            let unsent = (error as? ChannelError) == .ioOnClosedChannel
            replies.fail(unsent ? RedisError.notSent("the connection was closed") : RedisError.connectionClosed)
        }
        channel.writeAndFlush(RESPRequest(payload: payload, count: count, promise: replies), promise: written)
        return try await replies.futureResult.get()
    }

    /// Returns when the connection closes, when `limit` (if any) has passed, or when the task is cancelled —
    /// whichever comes first.
    public func waitUntilClosed(atMost limit: Duration? = nil) async {
        let done = channel.eventLoop.makePromise(of: Void.self)
        // Each path below may complete `done`; only the first counts (NIO ignores later completions).
        channel.closeFuture.whenComplete { _ in done.succeed() }
        let timer = limit.map { limit in
            channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(limit.seconds * 1_000_000_000))) { done.succeed() }
        }
        await withTaskCancellationHandler {
            try? await done.futureResult.get()
        } onCancel: {
            done.succeed()
        }
        timer?.cancel()
    }

    /// Closes the connection; commands in flight fail with `RedisError.connectionClosed`.
    public func close() async {
        try? await channel.close()
    }
}
