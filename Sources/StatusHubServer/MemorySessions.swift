import Synchronization

/// The memory engine's user sessions (`UserSessions`): each kept until `lifetime` after it was last written or read.
///
/// Expired sessions are dropped when read, and all at once whenever the table has doubled since the last sweep: the
/// sweep costs what the table holds, paid once per as many stores, and a plant's users come back to a table no larger
/// than twice the sessions alive.
final class MemorySessions: Sendable {
    private struct Session {
        var value: [UInt8]
        var expiresAt: ContinuousClock.Instant
    }

    private struct Table {
        var sessions: [String: Session] = [:]
        var sweepAbove = 1024
    }

    private let lifetime: Duration
    private let clock = ContinuousClock()
    private let table = Mutex(Table())

    init(lifetimeSeconds: Int) {
        lifetime = .seconds(lifetimeSeconds)
    }

    func read(_ key: String) -> [UInt8]? {
        let now = clock.now
        return table.withLock { table in
            guard var session = table.sessions[key] else { return nil }
            guard session.expiresAt > now else {
                table.sessions[key] = nil
                return nil
            }
            session.expiresAt = now + lifetime
            table.sessions[key] = session
            return session.value
        }
    }

    func store(_ key: String, _ value: [UInt8]?) {
        let now = clock.now
        table.withLock { table in
            table.sessions[key] = value.map { Session(value: $0, expiresAt: now + lifetime) }
            guard table.sessions.count > table.sweepAbove else { return }
            table.sessions = table.sessions.filter { $0.value.expiresAt > now }
            table.sweepAbove = max(1024, 2 * table.sessions.count)
        }
    }
}
