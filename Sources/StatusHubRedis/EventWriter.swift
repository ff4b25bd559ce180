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
        var replies = try await connection.pipeline(ranges.map { arguments($0, sha: sha) })

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

    private func currentSHA(on connection: RedisConnection) async throws -> String {
        if let sha = script.current { return sha }
        return try await script.load(on: connection)
    }
}
