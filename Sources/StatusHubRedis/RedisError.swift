/// Why a Redis operation failed. The engine turns all of these into `EngineUnavailable` at its boundary.
public enum RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidURL(String)
    /// The connection could not be opened (refused, unreachable, DNS, AUTH or SELECT rejected).
    case connectFailed(String)
    /// The connection closed before the reply arrived; the command may or may not have run.
    case connectionClosed
    /// The command never left this process (the connection had already failed or closed): it did not run.
    case notSent(String)
    /// No reply within the command timeout; the connection was closed because its replies can no longer be
    /// matched to anything trustworthy.
    case timeout
    /// Redis sent something hiredis could not parse, or a reply nobody asked for.
    case protocolError(String)
    /// Redis answered with an error reply.
    case reply(String)
    /// Redis answered, but not with the shape the caller needs.
    case unexpectedReply(String)
    /// A reconnect is pending; the next attempt is due after the given number of seconds.
    case notConnected(retryAfterSeconds: Double)
    /// The owner shut the connection down for good.
    case shutDown
    /// `RedisSubscriber.run` was called while already running: its sink is promised one caller at a time.
    case alreadyRunning

    public var description: String {
        switch self {
        case .invalidURL(let reason): "invalid Redis URL: \(reason)"
        case .connectFailed(let reason): "cannot connect to Redis: \(reason)"
        case .connectionClosed: "Redis connection closed"
        case .notSent(let reason): "not sent to Redis: \(reason)"
        case .timeout: "Redis did not answer in time"
        case .protocolError(let reason): "Redis protocol error: \(reason)"
        case .reply(let message): "Redis error: \(message)"
        case .unexpectedReply(let reason): "unexpected Redis reply: \(reason)"
        case .notConnected(let seconds): "not connected to Redis; next attempt in \(Int((seconds * 1000).rounded())) ms"
        case .shutDown: "Redis client shut down"
        case .alreadyRunning: "the Redis subscriber is already running"
        }
    }

    /// Whether a command that failed with this error may still have run: it was written to Redis and no answer
    /// came back (a timeout, a connection lost or garbled after the write). For these the caller cannot know
    /// whether its writes happened; for every other error they did not.
    public var commandMayHaveRun: Bool {
        switch self {
        case .connectionClosed, .timeout, .protocolError: true
        case .invalidURL, .connectFailed, .notSent, .reply, .unexpectedReply, .notConnected, .shutDown, .alreadyRunning: false
        }
    }
}
