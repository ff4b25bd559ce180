import Logging
import StatusHubCore
import Synchronization

/// Turns on the keyspace notifications staleness listens for: `notify-keyspace-events` must contain `E`
/// (keyevent channels) and `x` (expired events), or `A`, which includes `x`.
///
/// The setting lives in the server's memory only (a restarted Redis forgets it unless its config file has it), so
/// it is checked on every subscriber connection. Flags someone else enabled are kept: other applications on the
/// same Redis may rely on them. A Redis that refuses (managed services often disable `CONFIG`) is not fatal:
/// the stale sweeper still finds expired states by their deadlines, only later.
final class ExpiryNotifications: Sendable {
    enum Outcome: Equatable {
        /// They were on already, or are now.
        case enabled
        /// `CONFIG` is refused; the operator has to set the flags.
        case refused(String)
    }

    private let logger: Logger
    private let sweepInterval: Duration
    private let warned = Atomic(false)

    init(logger: Logger, sweepInterval: Duration) {
        self.logger = logger
        self.sweepInterval = sweepInterval
    }

    /// Enables them on `connection`, warning (once) if Redis will not.
    func enable(on connection: RedisConnection) async {
        let outcome: Outcome
        do {
            outcome = try await Self.enable(on: connection)
        } catch {
            // The connection failed; the subscriber notices that by itself and retries on a new one.
            logger.debug("could not check notify-keyspace-events", metadata: ["error": "\(error)"])
            return
        }
        guard case .refused(let message) = outcome else { return }
        let first = warned.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        logger.log(
            level: first ? .warning : .debug,
            "Redis refused CONFIG SET notify-keyspace-events; staleness needs `notify-keyspace-events Ex` set on the server, and until then notices expired states only by polling",
            metadata: ["error": "\(message)", "poll_interval_s": "\(sweepInterval.seconds)"])
    }

    static func enable(on connection: RedisConnection) async throws -> Outcome {
        let current = try await connection.send(["CONFIG", "GET", "notify-keyspace-events"])
        if let message = current.errorMessage { return .refused(message) }
        guard case .array(let pair) = current, pair.count == 2, let flags = pair[1].text else {
            throw RedisError.unexpectedReply("CONFIG GET notify-keyspace-events answered \(current)")
        }
        guard let wanted = flagsAdding(to: flags) else { return .enabled }
        let set = try await connection.send(["CONFIG", "SET", "notify-keyspace-events", wanted])
        if let message = set.errorMessage { return .refused(message) }
        return .enabled
    }

    /// `flags` plus `E` and `x`, or nil when they are there already.
    static func flagsAdding(to flags: String) -> String? {
        var wanted = flags
        if !flags.contains("E") { wanted += "E" }
        if !flags.contains("x"), !flags.contains("A") { wanted += "x" }
        return wanted == flags ? nil : wanted
    }
}
