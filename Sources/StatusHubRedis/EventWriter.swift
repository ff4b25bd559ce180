import Foundation
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
    let callRecords = CallRecords()
    let counterDescriptors = CounterDescriptorCache()
    /// `config.shifts`, parsed once rather than on every call.
    let shifts: ShiftSchedule

    /// Stores and publishes `events` in order, in chunks pipelined on the command connection; `claims[i]`, if
    /// given, makes `events[i]` conditional (see `AppendScript`). With `recordingCalls` (ingest), each chunk keeps
    /// a call record (`CallRecords`) when one of its events has no idempotency key of its own.
    /// - Throws: `AppendOutcomeUnknown` when chunks were sent and their answers lost (with the keys that make a
    ///   resend safe); any other error (`RedisError`, `EngineUnavailable` when Redis refuses the writes) means
    ///   nothing was stored.
    func write(
        _ events: [ValidatedEvent], claims: [EventID?]? = nil, recordingCalls: Bool = false
    ) async throws -> [AppendScript.Outcome] {
        guard !events.isEmpty else { return [] }
        let claims = claims ?? Array(repeating: nil, count: events.count)
        precondition(claims.count == events.count, "one claim (or nil) per event")
        var connection = try await commands.connection()
        let ranges = stride(from: 0, to: events.count, by: AppendScript.chunkSize).map {
            $0..<min($0 + AppendScript.chunkSize, events.count)
        }
        let remembers = config.server.idempotencyWindowSeconds > 0
        let tokens = ranges.map { range in
            recordingCalls && remembers && events[range].contains { $0.idempotencyKey == nil } ? CallRecords.newToken() : nil
        }
        func resendKeys() -> [String?] {
            zip(ranges, tokens).flatMap { range, token in
                events[range].enumerated().map { position, event in
                    guard let token, event.idempotencyKey == nil else { return nil }
                    return CallRecords.hubKey(token: token, position: position)
                }
            }
        }
        let forgetting = callRecords.takeAnswered()
        let now = Date()
        let context = TallyContext(
            now: Timestamps.format(now), shift: shifts.current(at: now), descriptors: counterDescriptors)
        func arguments(_ chunk: Int, sha: String) -> [[UInt8]] {
            AppendScript.arguments(
                sha: sha, events: events[ranges[chunk]], claims: claims[ranges[chunk]], keys: keys, config: config,
                context: context, record: tokens[chunk], forgetting: chunk == 0 ? forgetting : [])
        }
        // A failed call did not delete the records it was given; the next one will.
        func failing(_ error: any Error) -> any Error {
            callRecords.noteAnswered(forgetting)
            return error
        }
        func unknown(_ cause: any Error) -> any Error {
            failing(AppendOutcomeUnknown(resendKeys: resendKeys(), cause: cause))
        }

        var sha: String
        do {
            sha = try await currentSHA(on: connection)
        } catch {
            throw failing(error)
        }
        let filing = indexFiling(events)
        let replicaWait = replicaWaitCommand()
        var replies: [RedisReply] = []
        // On a Redis Cluster the partition's slot may have moved: every command answered `MOVED` and none ran, and
        // the connection (told by the reply) reconnects to the new owner, where the same pipeline is sent again.
        for attempt in 0...Self.movedRetries {
            if attempt > 0 {
                do {
                    connection = try await commands.connection()
                } catch {
                    throw failing(error)
                }
            }
            do {
                replies = try await connection.pipeline(filing + ranges.indices.map { arguments($0, sha: sha) } + replicaWait)
            } catch let error as RedisError where !error.commandMayHaveRun {
                throw failing(error)
            } catch {
                throw unknown(error)
            }
            guard replies.allSatisfy({ $0.errorMessage?.hasPrefix("MOVED ") == true }) else { break }
            logger.info("the partition's cluster slot moved; writing to its new master", metadata: ["from": "\(connection.url)"])
        }
        var replicasAcked = replicaWait.isEmpty ? nil : replies.removeLast()
        if replies.contains(where: { $0.errorMessage?.hasPrefix("READONLY") == true }) {
            // A master demoted behind this node's back: the connection goes, and the next one asks where the
            // master is now (and checks its ROLE). Nothing was stored: the script's first write is refused.
            logger.warning("redis refused writes as a replica; reconnecting to the master", metadata: ["redis.url": "\(connection.url)"])
            await connection.close()
        }
        for reply in replies.prefix(filing.count) {
            guard case .error(let message) = reply else { continue }
            // The script calls behind a refused filing may still have run (they are separate commands).
            let refused = EngineUnavailable(reason: "Redis refused the events: \(message)")
            let scriptsRan = replies.dropFirst(filing.count).contains { $0.errorMessage == nil }
            throw scriptsRan ? unknown(refused) : failing(refused)
        }
        replies.removeFirst(filing.count)

        // NOSCRIPT: someone flushed the script cache since this connection loaded it. Nothing of those chunks
        // ran, so reload and run them again, in order. (Only if another client reloaded the script between two
        // of our pipelined chunks could a retried chunk land after a later one; an operator's SCRIPT FLUSH
        // during a batch is the price of that.)
        let missing = replies.indices.filter { replies[$0].errorMessage?.hasPrefix("NOSCRIPT") == true }
        if !missing.isEmpty {
            logger.warning("redis forgot the append script; reloading it")
            do {
                sha = try await script.load(on: connection)
                var retried = try await connection.pipeline(missing.map { arguments($0, sha: sha) } + replicaWait)
                if !replicaWait.isEmpty { replicasAcked = retried.removeLast() }
                for (index, reply) in zip(missing, retried) { replies[index] = reply }
            } catch let error as RedisError where !error.commandMayHaveRun && missing.count == ranges.count {
                throw failing(error)
            } catch {
                throw unknown(error)
            }
        }

        var outcomes: [AppendScript.Outcome] = []
        outcomes.reserveCapacity(events.count)
        for (range, reply) in zip(ranges, replies) {
            if case .error(let message) = reply {
                // The script's first write is the XADD, so a chunk Redis refused stored nothing. Earlier chunks are
                // stored and published, though (Redis refusing writes mid-batch is the only way here): then the
                // keys make a resend of the whole batch safe, as the stored chunks' records answer for them.
                let refused = EngineUnavailable(reason: "Redis refused the events: \(message)")
                guard ranges.count == 1 else {
                    logger.warning(
                        "redis refused part of a batch", metadata: ["batch": "\(events.count)", "error": "\(message)"])
                    throw unknown(refused)
                }
                throw failing(refused)
            }
            do {
                outcomes.append(contentsOf: try AppendScript.outcomes(reply, expected: range.count))
            } catch {
                throw unknown(error)
            }
        }
        if let replicasAcked {
            let wanted = config.redis.minReplicasAcked
            guard let count = replicasAcked.integer, count >= wanted else {
                // Stored and published on the master, not (yet) on enough replicas: a failover now could lose it.
                // The call records stay, so a resend with the keys is stored at most once wherever it lands.
                throw unknown(EngineUnavailable(
                    reason: "\(replicasAcked.integer.map { "only \($0)" } ?? "no answer from WAIT: \(replicasAcked)") of the \(wanted) replicas required (redis.min_replicas_acked) confirmed the write within \(replicaWaitMilliseconds) ms"))
            }
        }
        callRecords.noteAnswered(tokens.compactMap { $0 })
        return outcomes
    }

    /// Times a batch whose every command was answered `MOVED` is sent again to the slot's new master.
    static let movedRetries = 2

    /// How long `WAIT` waits for the replicas: half the command timeout, so a missing replica is reported as such
    /// rather than as a timeout of the whole pipeline.
    var replicaWaitMilliseconds: Int { max(1, Int(config.redis.commandTimeoutSeconds * 500)) }

    /// `WAIT <redis.min_replicas_acked> <ms>` after the script calls, or nothing when acknowledging needs no replica.
    /// `WAIT` covers every write this connection sent before it, so one per pipeline suffices.
    private func replicaWaitCommand() -> [[[UInt8]]] {
        guard config.redis.minReplicasAcked > 0 else { return [] }
        return [["WAIT", String(config.redis.minReplicasAcked), String(replicaWaitMilliseconds)].map { Array($0.utf8) }]
    }

    /// `SADD`s that file each state-carrying event's entity key under its snapshot indexes, one per index, sent
    /// in the same pipeline just before the script. Redis runs a connection's commands in order, so a key is in its
    /// indexes before its state exists: the indexes are always a superset of the cached states, which is all a
    /// snapshot needs (members without a state, or filed under a line they left, are dropped when a read meets
    /// them; see `RedisEngine.snapshot`). Outside the script because it saves a key and an argument per event in
    /// it, and a filing that outlives a refused script only costs a later read a miss. A `status_stale` notice the
    /// script keeps in its state's place (`server.stale_kept_seconds`) is filed again: a read between the expiry and
    /// the claim may have dropped the key; a final state's claim keeps none (`FinalState`), so it is not.
    private func indexFiling(_ events: [ValidatedEvent]) -> [[[UInt8]]] {
        var members: [String: [String]] = [:]
        var order: [String] = []
        let keepsNotices = config.server.staleKeptSeconds > 0
        for event in events
        where event.carriesState || (keepsNotices && event.eventType.rawValue == EventType.statusStaleName && !event.isFinal) {
            for name in event.snapshotIndexes {
                if members[name] == nil { order.append(name) }
                members[name, default: []].append(keys.stored(event.entityKey))
            }
        }
        var filing = order.map { name in [Array("SADD".utf8), Array(keys.index(name).utf8)] + members[name]!.map { Array($0.utf8) } }
        let lineNames = order.filter { SnapshotIndex.line(ofName: $0) != nil }
        if !lineNames.isEmpty { filing.append([Array("SADD".utf8), Array(keys.lineIndexes.utf8)] + lineNames.map { Array($0.utf8) }) }
        return filing
    }

    private func currentSHA(on connection: RedisConnection) async throws -> String {
        if let sha = script.current { return sha }
        return try await script.load(on: connection)
    }
}
