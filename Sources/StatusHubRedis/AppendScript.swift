import StatusHubCore
import Synchronization

/// The Lua script that stores and publishes a batch of events in one atomic step.
///
/// Redis runs a script to completion before anything else, so per event the history entry, the cache write
/// and the publish happen together, no other node's event lands in between, and events are published in the
/// order of their stream ids — the order every node's subscriber then delivers them in. The first write is the
/// `XADD`, so a Redis that refuses writes (OOM, read-only replica) refuses before anything was stored.
///
/// KEYS: [stream, entity key of event 1, …, entity key of event n] — every key the script touches is declared,
/// as Redis requires of scripts (and as a sharded deployment will need).
/// ARGV: [pub/sub channel, history max length, then per event: routing header, body after id, ttl]
/// where ttl is "" for events that do not replace cached state, "0" for no expiry, else seconds.
/// Returns the stream ids, in order.
enum AppendScript {
    static let source = #"""
        local stream, channel, maxlen = KEYS[1], ARGV[1], ARGV[2]
        local ids = {}
        for i = 1, #KEYS - 1 do
          local header, body, ttl = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
          local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'h', header, 'b', body)
          local json = '{"event_id":"' .. id .. '",' .. body
          if ttl == '0' then
            redis.call('SET', KEYS[i + 1], json)
          elseif ttl ~= '' then
            redis.call('SET', KEYS[i + 1], json, 'EX', ttl)
          end
          redis.call('PUBLISH', channel, id .. ' ' .. header .. '\n' .. json)
          ids[i] = id
        end
        return ids
        """#

    /// Events per script call: big enough that a 1000-event batch costs two calls, small enough that one call
    /// does not hold Redis (which runs nothing else meanwhile) for long.
    static let chunkSize = 500

    /// The `EVALSHA` arguments for one chunk of events.
    static func arguments(
        sha: String, events: ArraySlice<ValidatedEvent>, config: HubConfig
    ) -> [[UInt8]] {
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(6 + events.count * 4)
        arguments.append(Array("EVALSHA".utf8))
        arguments.append(Array(sha.utf8))
        arguments.append(Array(String(events.count + 1).utf8))
        arguments.append(Array(config.redis.streamKey.utf8))
        for event in events { arguments.append(Array(event.entityKey.utf8)) }
        arguments.append(Array(config.redis.pubsubChannel.utf8))
        arguments.append(Array(String(config.redis.historyMaxLength).utf8))
        for event in events {
            arguments.append(Array(event.routingHeader.utf8))
            arguments.append(event.bodyAfterID)
            if event.carriesState {
                arguments.append(Array(String(max(0, config.cacheTTL.seconds(for: event.entityType))).utf8))
            } else {
                arguments.append([])
            }
        }
        return arguments
    }
}

/// The append script's SHA1 as Redis reported it when loading it, shared by every connection of an engine.
/// Redis computes the hash, so none is needed here.
final class LoadedScript: Sendable {
    private let sha = Mutex<String?>(nil)

    var current: String? { sha.withLock { $0 } }

    /// `SCRIPT LOAD`s the script on `connection` and remembers its SHA1.
    @discardableResult
    func load(on connection: RedisConnection) async throws -> String {
        let reply = try await connection.send(["SCRIPT", "LOAD", AppendScript.source]).orThrow()
        guard let loaded = reply.text, loaded.count == 40 else {
            throw RedisError.unexpectedReply("SCRIPT LOAD answered \(reply)")
        }
        sha.withLock { $0 = loaded }
        return loaded
    }
}
