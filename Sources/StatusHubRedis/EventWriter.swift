import Logging
import StatusHubCore

/// Runs the append script over a batch: the one write path of the engine, shared by ingest (`append`) and the
/// stale sweeper, so a `status_stale` event gets its id, history entry and publish exactly like any other.
struct EventWriter: Sendable {
    let commands: ReconnectingConnection
    let script: LoadedScript
    let keys: RedisKeys
    let config: HubConfig
    let logger: Logger

    /// Stores and publishes `events` in order, in chunks pipelined on the command connection; `claims[i]`, if
    /// given, makes `events[i]` conditional (see `AppendScript`).
    /// - Throws: `RedisError` (or `EngineUnavailable` when Redis refuses the writes); nothing is acknowledged then.
    func write(_ events: [ValidatedEvent], claims: [EventID?]? = nil) async throws -> [AppendScript.Outcome] {
        guard !events.isEmpty else { return [] }
        let claims = claims ?? Array(repeating: nil, count: events.count)
        precondition(claims.count == events.count, "one claim (or nil) per event")
        let connection = try await commands.connection()
        let ranges = stride(from: 0, to: events.count, by: AppendScript.chunkSize).map {
            $0..<min($0 + AppendScript.chunkSize, events.count)
        }
        func arguments(_ range: Range<Int>, sha: String) -> [[UInt8]] {
            AppendScript.arguments(sha: sha, events: events[range], claims: claims[range], keys: keys, config: config)
        }
        var sha = try await currentSHA(on: connection)
        let filing = indexFiling(events)
        var replies = try await connection.pipeline(filing + ranges.map { arguments($0, sha: sha) })
        for reply in replies.prefix(filing.count) {
            if case .error(let message) = reply { throw EngineUnavailable(reason: "Redis refused the events: \(message)") }
        }
        replies.removeFirst(filing.count)

        // NOSCRIPT: someone flushed the script cache since this connection loaded it. Nothing of those chunks
        // ran, so reload and run them again, in order. (Only if another client reloaded the script between two
        // of our pipelined chunks could a retried chunk land after a later one; an operator's SCRIPT FLUSH
        // during a batch is the price of that.)
        let missing = replies.indices.filter { replies[$0].errorMessage?.hasPrefix("NOSCRIPT") == true }
        if !missing.isEmpty {
            logger.warning("redis forgot the append script; reloading it")
            sha = try await script.load(on: connection)
            let retried = try await connection.pipeline(missing.map { arguments(ranges[$0], sha: sha) })
            for (index, reply) in zip(missing, retried) { replies[index] = reply }
        }

        var outcomes: [AppendScript.Outcome] = []
        outcomes.reserveCapacity(events.count)
        for (range, reply) in zip(ranges, replies) {
            if case .error(let message) = reply {
                if !outcomes.isEmpty {
                    // Earlier chunks are stored and published; a retry of the whole batch finds the events that
                    // carry idempotency keys already stored, and stores the others twice. Redis refusing writes
                    // mid-batch is the only way here.
                    logger.warning(
                        "redis refused part of a batch after storing the start of it",
                        metadata: ["stored": "\(outcomes.count)", "batch": "\(events.count)", "error": "\(message)"])
                }
                throw EngineUnavailable(reason: "Redis refused the events: \(message)")
            }
            outcomes.append(contentsOf: try AppendScript.outcomes(reply, expected: range.count))
        }
        return outcomes
    }

    /// `SADD`s that file each state-carrying event's entity key under its snapshot indexes, one per index, sent
    /// in the same pipeline just before the script. Redis runs a connection's commands in order, so a key is in its
    /// indexes before its state exists: the indexes are always a superset of the cached states, which is all a
    /// snapshot needs (members without a state, or filed under a line they left, are dropped when a read meets
    /// them; see `RedisEngine.snapshot`). Outside the script because it saves a key and an argument per event in
    /// it, and a filing that outlives a refused script only costs a later read a miss.
    private func indexFiling(_ events: [ValidatedEvent]) -> [[[UInt8]]] {
        var members: [String: [String]] = [:]
        var order: [String] = []
        for event in events where event.carriesState {
            for name in SnapshotIndex.names(forChannels: event.channels) {
                if members[name] == nil { order.append(name) }
                members[name, default: []].append(event.entityKey)
            }
        }
        return order.map { name in [Array("SADD".utf8), Array(keys.index(name).utf8)] + members[name]!.map { Array($0.utf8) } }
    }

    private func currentSHA(on connection: RedisConnection) async throws -> String {
        if let sha = script.current { return sha }
        return try await script.load(on: connection)
    }
}
