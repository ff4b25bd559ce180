import Foundation
import Logging
import StatusHubCore
import Synchronization

/// Publishes exactly one `status_stale` event per expired cached state, however many nodes share the Redis.
///
/// The append script keeps, beside each state it caches with a TTL, a shadow copy without one (the last-states
/// hash) and the state's deadline (a sorted set); see `RedisKeys`. When the cached key expires:
///
/// 1. Every node learns of it — from the `expired` keyevent notification its subscriber listens to, or, if it
///    missed that (disconnected, notifications disabled, Redis expiring lazily), from the deadline set, which it
///    reads on every (re)subscribe, after a failure, and every `interval`.
/// 2. Every node builds the stale event from the shadow (`StaleEvent.make`) and appends it with a claim on that
///    shadow. The append script stores the event only if the entity key is still gone and the shadow still holds
///    the claimed state, and deletes the shadow in the same atomic step: the first node's append wins, every
///    other node's is a no-op. A fresh state for the entity before that replaces the shadow and wins instead:
///    no stale event for a state that was refreshed.
///
/// Claim and publish are one script, not a claim followed by an append, so a node that dies halfway cannot lose
/// the stale event: until some node's append has run, the shadow stays and the other nodes keep trying. The
/// cost is that every node builds and sends the stale event, and all but one are turned away.
final class StaleSweeper: Sendable {
    /// Deadlines this close ahead are read too: Redis expires a key by its own clock at the time the script
    /// set it, which can differ from the script's `TIME` by the script's run time. `EXISTS` has the last word.
    static let horizonMilliseconds: Int64 = 1_000
    /// Deadlines read per round trip.
    static let pageSize = 500

    private let commands: ReconnectingConnection
    private let writer: EventWriter
    private let keys: RedisKeys
    private let catalog: Catalog
    private let interval: Duration
    private let retryBackoff: Backoff
    private let logger: Logger
    private let notified = Mutex<Set<String>>([])
    /// `run`'s wake-ups; until it runs, whether a sweep was asked for meanwhile.
    private let wakeup = Mutex<(continuation: AsyncStream<Void>.Continuation?, asked: Bool)>((nil, false))

    init(writer: EventWriter, catalog: Catalog, interval: Duration, retryBackoff: Backoff, logger: Logger) {
        self.catalog = catalog
        self.commands = writer.commands
        self.writer = writer
        self.keys = writer.keys
        self.interval = interval
        self.retryBackoff = retryBackoff
        self.logger = logger
    }

    /// Keys Redis reported expired. Keys that are not entity keys (other applications', idempotency keys) are
    /// ignored. Never blocks: called from the subscriber's delivery loop.
    func expired(_ expiredKeys: [String]) {
        let ours = expiredKeys.filter { RedisKeys.isEntityKey($0, catalog: catalog) }
        guard !ours.isEmpty else { return }
        notified.withLock { $0.formUnion(ours) }
        sweepSoon()
    }

    /// Asks for a sweep of the deadline set, e.g. after a (re)subscribe: whatever expired while no notification
    /// could arrive is found there.
    func sweepSoon() {
        wakeup.withLock { wakeup in
            if let continuation = wakeup.continuation { continuation.yield() } else { wakeup.asked = true }
        }
    }

    /// Sweeps when asked — the node's subscriber asks each time it has subscribed, the first time included — every
    /// `interval` (jittered, so nodes do not sweep in step), and after a failure with backoff, until the task is
    /// cancelled. Wake-ups during a sweep fold into one more. Not at start on its own: a sweep before the node's
    /// subscriber listens publishes stale notices this node never hears (the other nodes do), so it waits for the
    /// subscribe, which would follow it at once anyway.
    func run() async {
        let (wakeups, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wakeup.withLock { wakeup in
            wakeup.continuation = continuation
            if wakeup.asked { continuation.yield() }
            wakeup.asked = false
        }
        defer {
            wakeup.withLock { $0.continuation = nil }
            continuation.finish()
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [interval] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval * Double.random(in: 0.75...1.25))
                    continuation.yield()
                }
            }
            var backoff = retryBackoff
            var failures = 0
            for await _ in wakeups {
                do {
                    let published = try await sweep()
                    if published > 0 { logger.debug("published stale events", metadata: ["count": "\(published)"]) }
                    backoff.reset()
                    failures = 0
                } catch {
                    failures += 1
                    let delay = backoff.next()
                    // Redis being away is reported by the connections already; a sweep failing with it is noise.
                    logger.log(
                        level: failures == 1 && !(error is RedisError) ? .warning : .debug,
                        "stale sweep failed; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(delay * 1000))"])
                    try? await Task.sleep(for: .seconds(delay))
                    continuation.yield()
                }
            }
            group.cancelAll()
        }
    }

    /// Claims every expired state known now: the notified keys and the deadline set up to Redis's clock. Returns
    /// how many stale events this node published (the others were published by other nodes, or superseded).
    func sweep() async throws -> Int {
        var taken = notified.withLock { taken in
            defer { taken = [] }
            return taken
        }
        var published = 0
        do {
            while true {
                let connection = try await commands.connection()
                let due = try await dueKeys(on: connection)
                // Notified keys a page at a time too: a mass expiry must not become one giant pipeline.
                let notifiedPage = Set(taken.prefix(Self.pageSize))
                let candidates = notifiedPage.union(due)
                guard !candidates.isEmpty else { break }
                let (settled, stored) = try await claim(Array(candidates), due: Set(due), on: connection)
                published += stored
                taken.subtract(notifiedPage)
                // A full page of deadlines may have more behind it, unless nothing on it could be settled (states
                // about to expire, still there): everything further back expires later still.
                let moreDue = due.count == Self.pageSize && settled > 0
                if taken.isEmpty, !moreDue { break }
            }
        } catch {
            notified.withLock { $0.formUnion(taken) }
            throw error
        }
        return published
    }

    /// Entity keys whose deadline has passed by Redis's clock (plus the horizon), oldest first.
    private func dueKeys(on connection: RedisConnection) async throws -> [String] {
        let time = try await connection.send(["TIME"]).orThrow()
        guard case .array(let parts) = time, parts.count == 2, let seconds = parts[0].text.flatMap(Int64.init),
            let micros = parts[1].text.flatMap(Int64.init)
        else { throw RedisError.unexpectedReply("TIME answered \(time)") }
        let horizon = seconds * 1000 + micros / 1000 + Self.horizonMilliseconds
        let reply = try await connection.send([
            "ZRANGEBYSCORE", keys.deadlines, "-inf", String(horizon), "LIMIT", "0", String(Self.pageSize),
        ]).orThrow()
        guard case .array(let members) = reply else { throw RedisError.unexpectedReply("ZRANGEBYSCORE answered \(reply)") }
        return members.compactMap(\.text)
    }

    /// Builds and appends the stale events of the candidates whose key is gone. Returns how many candidates are
    /// settled (expired and claimed by someone, or cleaned up) and how many stale events this node stored.
    private func claim(_ candidates: [String], due: Set<String>, on connection: RedisConnection) async throws
        -> (settled: Int, stored: Int)
    {
        var commands = candidates.map { ["EXISTS", $0] }
        commands.append(["HMGET", keys.lastStates] + candidates)
        let replies = try await connection.pipeline(commands)
        guard case .array(let shadows) = try replies[candidates.count].orThrow(), shadows.count == candidates.count else {
            throw RedisError.unexpectedReply("HMGET answered \(replies[candidates.count])")
        }
        let now = Date()
        var stale: [ValidatedEvent] = []
        var claims: [EventID?] = []
        var settled = 0
        for (index, key) in candidates.enumerated() {
            // Still there: a fresh state arrived, or it expires within the horizon.
            guard try replies[index].orThrow().integer == 0 else { continue }
            guard case .string(let message) = shadows[index] else {
                // Another node claimed it between our two reads, or (for a notified key) it was never ours.
                if due.contains(key) { settled += try await forget(key, expecting: nil, on: connection) }
                continue
            }
            guard let last = PubSubMessage.decode(message), let event = StaleEvent.make(for: last, at: now, catalog: catalog) else {
                logger.warning("the last-states hash holds something that is not a state the hub wrote; dropping it", metadata: ["key": "\(key)"])
                settled += try await forget(key, expecting: message, on: connection)
                continue
            }
            stale.append(event)
            claims.append(last.id)
        }
        let outcomes = try await writer.write(stale, claims: claims)
        let stored = outcomes.count(where: { if case .stored = $0 { true } else { false } })
        return (settled + outcomes.count, stored)
    }

    /// Drops the shadow and deadline of `key`, if the key is still gone and the shadow still holds `expected`
    /// (nil: still holds nothing), in one step so a state written meanwhile keeps its own. Returns 1 if dropped.
    private func forget(_ key: String, expecting expected: [UInt8]?, on connection: RedisConnection) async throws -> Int {
        let reply = try await connection.send([
            Array("EVAL".utf8), Array(Self.forgetScript.utf8), Array("3".utf8), Array(keys.lastStates.utf8),
            Array(keys.deadlines.utf8), Array(key.utf8), Array((expected == nil ? "0" : "1").utf8), expected ?? [],
        ]).orThrow()
        return Int(reply.integer ?? 0)
    }

    /// Rarely run (only for inconsistent entries), so it is sent with `EVAL` rather than loaded.
    /// KEYS: [last-states hash, deadlines zset, entity key]; ARGV: [whether a shadow is expected, its value].
    static let forgetScript = #"""
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        local last = redis.call('HGET', KEYS[1], KEYS[3])
        if (ARGV[1] == '0' and last) or (ARGV[1] == '1' and last ~= ARGV[2]) then return 0 end
        redis.call('HDEL', KEYS[1], KEYS[3])
        redis.call('ZREM', KEYS[2], KEYS[3])
        return 1
        """#
}
