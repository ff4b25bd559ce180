import StatusHubCore
import Synchronization

/// The Lua script that stores and publishes a batch of events in one atomic step.
///
/// Redis runs a script to completion before anything else, so per event the idempotency check, the history
/// entry, the cache write and the publish happen together, no other node's event lands in between, and events
/// are published in the order of their stream ids — the order every node's subscriber then delivers them in.
/// The first write is the `XADD`, so a Redis that refuses writes (OOM, read-only replica) refuses before
/// anything was stored. With AOF, Redis logs a script's writes as one `MULTI`/`EXEC`, so a crash never leaves
/// half an event behind (say, the history entry without its idempotency key).
///
/// Per event:
/// - With an idempotency key that `<stream>:idem:<key>` remembers, nothing is written: the answer is
///   `d:<first id>`. Otherwise the key is set to the new id for the idempotency window, so the same key later in
///   the same batch is a duplicate too.
/// - A hub key (`hub:<token>:<position>`, see `CallRecords`) not yet remembered is looked up in the record of the
///   call it names: the id recorded at that position for the event's own tenant makes it a duplicate of that id;
///   no record, no such position or another tenant's entry means the first attempt never ran, and it is stored.
/// - A state-carrying event sets its cache key (`EX ttl`), its shadow in the last-states hash and its deadline
///   (see `RedisKeys`); with ttl 0 the state never expires and needs neither.
/// - A claim (only `status_stale` events carry one) makes the event conditional: it is stored only if the entity
///   key is still gone and its shadow still holds the claimed state, and it consumes the shadow. Every node tries
///   to claim an expiry; exactly one succeeds, the others get `s` (see `StaleSweeper`). A claim `~<id>` is on a final
///   state (`FinalState`): won, it stores and sends nothing, takes the entity off its counters and drops its facts —
///   the entity leaves quietly — and is answered `q`.
/// After the batch, the stream is trimmed by age (`XTRIM MINID ~`) besides by length (`XADD MAXLEN ~`).
/// Both use Redis's clock (`TIME`; scripts replicate their effects, so this is allowed and deterministic on
/// replicas), the clock stream ids come from.
///
/// With a call record, the call sets it to every event's id (or the id it duplicates; `-` for a claim lost),
/// followed by its tenant prefix, in call order, for the idempotency window, and deletes the records of earlier
/// calls whose answers arrived.
///
/// - A state-carrying event whose source rank (`SourceOrder`) is older than the one `facts` holds for its entity
///   is late: stored and published as news (`~` header, `"late":true` inserted at its offset, keys stay sorted),
///   answered `l:<id>`, and the cache, shadow, deadline and rank stay. Otherwise its rank replaces the held one;
///   the stale claim deletes it with the shadow, so an entity's next event after staleness starts afresh.
/// - A state-carrying event whose entity a hold keeps (`StateHold`: the facts name the hold after the rank, `^<hold>`)
///   and whose type does not lift it is stored and published as news the same way, marked `"held":true`, answered
///   `h:<id>`; the cache, shadow, deadline, rank and hold stay.
///
/// - A state-carrying event's tally argument (`TallyUpdate.scriptArgument`) moves its entity between counters and
///   active sets, from the entries `facts` kept for its previous state (beside its rank, one field per entity); a counter that changes gets its
///   `counter_changed` event (stored, cached under the counter's entity key, indexed, published) from its
///   descriptor (`CounterDescriptor.scriptLine`, kept in the counters hash). A stale claim takes the entity off
///   its counters. These keys (counts, sets, a counter's entity key and indexes) are derived inside the script
///   from what Redis holds, so they are not in KEYS. With several partitions each keeps its own share of every
///   tally under keys carrying its hash tag (`{p3}stats:line:L2:machines_running`, `{p3}stats:event:L2.machines_running`), moved here
///   exactly as one partition's are; `PartitionedRedisEngine` sums and unites the shares.
///
/// KEYS: [stream, last-states hash, deadlines zset, entity facts hash, counters hash, entity key of event 1, …, of event n, idempotency keys and
/// looked-up call records…, this call's record, records to delete…] — every key the script touches is declared,
/// as Redis requires of scripts (and a sharded deployment will need).
/// ARGV: [pub/sub channel, history max length, history max age ms (0 = off), idempotency window seconds, index of
/// this call's record in KEYS, index of the first record to delete, now (ISO-8601), shift in effect, its end (ms),
/// index key prefix, counter descriptor lines, the tally key tag (`RedisKeys.tallyTag`), `server.sequence_reset_seconds`
/// (`SourceOrder.isOlder`), `server.stale_kept_seconds`, then per event: routing header, body after id, ttl, idempotency
/// key's index in KEYS, claim, recall, source rank, late-mark offset, tally argument, and for a dated state
/// (`StatusSince`) the body's part after where `status_since` goes (the body argument is the part before), the
/// status value, the event's timestamp, and "1" when the event names a different previous value ("0" else); those
/// four are empty for other events, the lines a line-scoped publisher may write, `\n`-framed (`\nL1\nL2\n`),
/// '' for any, a state's line ('' for none, and for other events), and its hold rule (`StateHold`: '' when no hold
/// applies to its entity type, else `<held mark offset>\t<the hold it sets>\t<\n-framed holds it may replace>`)]
/// where ttl is "" for events that do not replace cached state, "0" for no expiry, else seconds; recall is
/// "<index of a call record in KEYS> <1-based position>" for a hub key; indexes, claim and recall are "" when
/// absent.
/// Returns per event, in order: the new stream id, `l:<id>` for one stored late, `h:<id>` for one stored held,
/// `d:<id>` for a duplicate, `s` for a claim lost, `q` for a final state's claim won, or `f:<id> <line>` for an event
/// refused because its entity's cached state (`<id>`) is on a line outside its publisher's
/// (`ValidatedEvent.writableLines`; `<line>` empty for a state without one).
enum AppendScript {
    static let source = SourceOrder.luaFunction + "\n" + #"""
        local stream, shadows, deadlines, facts, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
        local channel, maxlen, maxage, window = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
        local record, forget = tonumber(ARGV[5]), tonumber(ARGV[6])
        local nowText, shiftID, shiftEnd, indexPrefix = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
        -- The partition's hash tag on the keys of its share of the tallies (counts, sets, counter states); '' alone.
        local tag = ARGV[12]
        local sequenceReset = tonumber(ARGV[13])
        -- Seconds a claimed stale notice stays the entity's cached entry (`server.stale_kept_seconds`; '0': none).
        local staleKept = ARGV[14]
        local clock = redis.call('TIME')
        local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
        local results, added = {}, false
        local entries, recalled = {}, {}

        -- Counters: descriptor lines (key, shift copy, ttl, entity key, indexes, routing header, body template)
        -- arrive with the calls that count toward them and are kept in the counters hash for later decrements.
        local descriptors = {}
        local function split(text, separator)
          local fields = {}
          for field in string.gmatch(text .. separator, '([^' .. separator .. ']*)' .. separator) do fields[#fields + 1] = field end
          return fields
        end
        local function descriptor(key)
          local found = descriptors[key]
          if found == nil then
            local line = redis.call('HGET', counters, key)
            found = line and split(line, '\t') or false
            descriptors[key] = found
          end
          return found
        end
        local function announce(d, value, cause)
          local vars = {value = tostring(value), cause = cause, now = nowText, shift = shiftID}
          local body = (string.gsub(d[7], '{(%a+)}', vars))
          local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'h', d[6], 'b', body)
          local json = '{"event_id":"' .. id .. '",' .. body
          redis.call('SET', tag .. d[4], json)
          for name in string.gmatch(d[5], '%S+') do redis.call('SADD', indexPrefix .. name, tag .. d[4]) end
          redis.call('PUBLISH', channel, id .. ' ' .. d[6] .. '\n' .. json)
          if d[2] ~= '' then redis.call('SET', tag .. (string.gsub(d[2], '{shift}', shiftID)), value, 'PXAT', shiftEnd) end
          added = true
        end
        for line in string.gmatch(ARGV[11], '[^\n]+') do
          local d = split(line, '\t')
          descriptors[d[1]] = d
          redis.call('HSET', counters, d[1], line)
          -- The first call of a new shift copies the running count to the new shift's key.
          if d[2] ~= '' and redis.call('EXISTS', tag .. (string.gsub(d[2], '{shift}', shiftID))) == 0 then
            local running = redis.call('GET', tag .. d[1])
            if running then announce(d, tonumber(running), 'shift_start') end
          end
        end
        local function count(key, delta, cause)
          local value = redis.call('INCRBY', tag .. key, delta)
          local d = descriptor(key)
          if d then
            if d[3] ~= '' then redis.call('EXPIRE', tag .. key, d[3]) end
            announce(d, value, cause)
          end
        end
        -- An entry is `<tally>=<counter key>` or `<tally>~<set key>`.
        local function parts(entry) return string.match(entry, '^[^=~]*([=~])(.*)$') end
        -- The entity's entries (`<tally>=<key>`, `<tally>~<key>`) move from what its previous state counted toward
        -- (`previous`, tab-separated) to what this one does (`argument`: `<member>\t<entries>`; nil: it went stale,
        -- which leaves its counters and keeps its sets): counters count, sets gain or lose the entity's id.
        -- Returns the new entries.
        local function retally(previous, argument, cause)
          local member, wanted = '', nil
          if argument then member, wanted = string.match(argument, '^([^\t]*)\t?(.*)$') end
          if wanted and wanted == previous then
            -- The same entries as before (a status repeated): only the counters' expiry moves.
            for entry in string.gmatch(wanted, '[^\t]+') do
              local kind, target = parts(entry)
              local d = kind == '=' and descriptor(target)
              if d and d[3] ~= '' then redis.call('EXPIRE', tag .. target, d[3]) end
            end
            return previous
          end
          local old, oldList, new, newList = {}, {}, {}, {}
          for entry in string.gmatch(previous or '', '[^\t]+') do old[entry] = true; oldList[#oldList + 1] = entry end
          local function take(entry)
            if not new[entry] then new[entry] = true; newList[#newList + 1] = entry end
          end
          if wanted then
            for entry in string.gmatch(wanted, '[^\t]+') do take(entry) end
          else
            for _, entry in ipairs(oldList) do
              if parts(entry) == '~' then take(entry) end
            end
          end
          for _, entry in ipairs(oldList) do
            if not new[entry] then
              local kind, target = parts(entry)
              if kind == '=' then count(target, -1, cause) else redis.call('SREM', tag .. target, member) end
            end
          end
          for _, entry in ipairs(newList) do
            local kind, target = parts(entry)
            if not old[entry] then
              if kind == '=' then count(target, 1, cause) else redis.call('SADD', tag .. target, member) end
            elseif kind == '=' then
              local d = descriptor(target)
              if d and d[3] ~= '' then redis.call('EXPIRE', tag .. target, d[3]) end
            end
          end
          return table.concat(newList, '\t')
        end

        for i = 1, (#ARGV - 14) / 16 do
          local a = 16 * i - 1
          local header, body, ttl, idem, claim, recall = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
          local rank, lateAt, tally = ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
          -- A dated state (`StatusSince`): its body arrives in two parts, split where `status_since` goes.
          local tail, value, time, changed = ARGV[a + 9], ARGV[a + 10], ARGV[a + 11], ARGV[a + 12]
          -- A publisher scoped to lines: '\n'-framed (`\nL1\nL2\n`), '' for any line.
          local writable = ARGV[a + 13]
          -- A state's line ('' for none), kept in its facts for that check.
          local line = ARGV[a + 14]
          -- A hold on the entity (`StateHold`): '' when none applies to its type, else `<mark offset>\t<the hold this
          -- state sets>\t<the holds it may replace, \n-framed>`.
          local holding = ARGV[a + 15]
          local key = KEYS[5 + i]
          -- On a Redis Cluster the key carries its partition's hash tag first (`{p3}@acme:resource:…`).
          local name = string.byte(key) == 123 and string.match(key, '^{[^}]*}(.*)$') or key
          local tenant = string.byte(name) == 64 and string.match(name, '^@[^:]*') or ''
          local idemKey = idem ~= '' and KEYS[tonumber(idem)] or nil
          local seen = idemKey and redis.call('GET', idemKey)
          if not seen and recall ~= '' then
            local index, position = string.match(recall, '^(%d+) (%d+)$')
            local call = recalled[index]
            if not call then
              call = {}
              for entry in string.gmatch(redis.call('GET', KEYS[tonumber(index)]) or '', '%S+') do call[#call + 1] = entry end
              recalled[index] = call
            end
            local id, owner = string.match(call[tonumber(position)] or '', '^([^@]+)(.*)$')
            if id and id ~= '-' and owner == tenant then seen = id end
          end
          local claimed, quiet = true, false
          if claim ~= '' then
            -- `~<id>`: the claimed state was final (`FinalState`): its entity leaves quietly.
            if string.byte(claim) == 126 then quiet, claim = true, string.sub(claim, 2) end
            local last = redis.call('HGET', shadows, key)
            claimed = redis.call('EXISTS', key) == 0 and last and string.sub(last, 1, #claim + 1) == claim .. ' '
          end
          -- A line-scoped publisher may write only about an entity whose state is on one of its lines (or none
          -- cached): the state's id and line answer a refusal. The entity's facts name the line its state was
          -- written on (`@<line>` after the rank), which clears the usual case, one of the key's own lines, without
          -- reading the state; any other (a foreign line, facts from before lines were kept, a stale notice) reads
          -- and decodes the state, which decides.
          local foreign, held = nil, nil
          if not seen and writable ~= '' then
            held = redis.call('HGET', facts, key) or false
            local marked = held and string.match(held, '^[^@\t\n]*@([^\t\n]*)')
            if not (marked and marked ~= '' and string.find(writable, '\n' .. marked .. '\n', 1, true)) then
              local current = redis.call('GET', key)
              -- pcall: what the hub stores always decodes (nested at most 512 deep, `JSONValue.maxDepth`, against
              -- cjson's 1000), but a state written by other hands must not fail the whole call.
              local readable, state = false, nil
              if current then readable, state = pcall(cjson.decode, current) end
              -- A kept stale notice (below) is no state: its entity is any line's, as once its state expired.
              if readable and type(state) == 'table' and state.event_type ~= 'status_stale' then
                local heldLine = type(state.line) == 'string' and state.line or ''
                if heldLine == '' or not string.find(writable, '\n' .. heldLine .. '\n', 1, true) then
                  foreign = state.event_id .. ' ' .. heldLine
                end
              end
            end
          end
          if seen then
            results[i] = 'd:' .. seen
          elseif foreign then
            results[i] = 'f:' .. foreign
          elseif not claimed then
            results[i] = 's'
          else
            -- What the hub keeps of the entity beside its state: `<rank>[^<hold>][@<line>][\t<status>\t<since>]` and
            -- its tally entries after a newline (the hold its state puts on it; the line its state was written on, for
            -- the line check above; the status and the start it is known to have held it from, '' unknown:
            -- `StatusSince`).
            if held == nil then
              held = (rank ~= '' or tally ~= '' or claim ~= '' or value ~= '' or ttl ~= '') and redis.call('HGET', facts, key) or false
            end
            local heldRank, heldEntries, statusPart = '', '', ''
            if held then heldRank, heldEntries = string.match(held, '^([^\n]*)\n?(.*)$') end
            -- Plain finds and byte checks, not patterns: this runs for every state of a dated type.
            local tab = string.find(heldRank, '\t', 1, true)
            if tab then statusPart, heldRank = string.sub(heldRank, tab), string.sub(heldRank, 1, tab - 1) end
            local at = string.find(heldRank, '@', 1, true)
            if at then heldRank = string.sub(heldRank, 1, at - 1) end
            local heldHold = ''
            local caret = string.find(heldRank, '^', 1, true)
            if caret then heldHold, heldRank = string.sub(heldRank, caret + 1), string.sub(heldRank, 1, caret - 1) end
            if claim ~= '' then
              redis.call('HDEL', shadows, key)
              redis.call('ZREM', deadlines, key)
              heldRank, statusPart, heldHold = '', '', ''
            end
            if quiet then
              -- A final state's expiry: nothing is stored or sent; the entity leaves its counters (its sets are
              -- kept, as after staleness) and its facts go with its rank.
              local entries = retally(heldEntries, nil, claim)
              local remaining = entries ~= '' and ('\n' .. entries) or ''
              if remaining == '' then
                if held then redis.call('HDEL', facts, key) end
              elseif remaining ~= held then
                redis.call('HSET', facts, key, remaining)
              end
              results[i] = 'q'
            else
              local late = rank ~= '' and heldRank ~= '' and older(rank, heldRank, now, sequenceReset)
              -- A state the entity's hold keeps out is news, as a late one is; `holdAt` is where its mark goes.
              local holdAt, sets = nil, ''
              if not late and holding ~= '' then
                local markAt, passes
                markAt, sets, passes = string.match(holding, '^(%d+)\t([^\t]*)\t(.*)$')
                if heldHold ~= '' and not string.find(passes, '\n' .. heldHold .. '\n', 1, true) then holdAt = tonumber(markAt) end
              end
              local kept = late or holdAt ~= nil
              if late then
                if value ~= '' then body = body .. tail end
                header = '~' .. header
                local at = tonumber(lateAt)
                body = string.sub(body, 1, at) .. '"late":true,' .. string.sub(body, at + 1)
              elseif holdAt then
                if value ~= '' then body = body .. tail end
                header = '~' .. header
                body = string.sub(body, 1, holdAt) .. '"held":true,' .. string.sub(body, holdAt + 1)
              elseif value ~= '' then
                local since
                if statusPart ~= '' and string.find(statusPart, value, 2, true) == 2 and string.byte(statusPart, #value + 2) == 9 then
                  since = string.sub(statusPart, #value + 3)
                else
                  since = (statusPart ~= '' or changed == '1') and time or ''
                  statusPart = '\t' .. value .. '\t' .. since
                end
                if since ~= '' then body = body .. '"status_since":"' .. since .. '",' .. tail else body = body .. tail end
              end
              local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'h', header, 'b', body)
              local json = '{"event_id":"' .. id .. '",' .. body
              local message = id .. ' ' .. header .. '\n' .. json
              if kept then
                -- news about the entity, not its state: the cache, its deadline, its rank and its hold stay
              elseif claim ~= '' then
                -- The stale notice stays where the state was, without a shadow or a deadline (it announces nothing
                -- when it goes), so a snapshot still shows the entity, marked stale, until a state replaces it.
                if staleKept ~= '0' then redis.call('SET', key, json, 'EX', staleKept) end
              elseif ttl == '0' then
                redis.call('SET', key, json)
                redis.call('HDEL', shadows, key)
                redis.call('ZREM', deadlines, key)
              elseif ttl ~= '' then
                redis.call('SET', key, json, 'EX', ttl)
                redis.call('HSET', shadows, key, message)
                redis.call('ZADD', deadlines, string.format('%.0f', now + tonumber(ttl) * 1000), key)
              end
              if idemKey then redis.call('SET', idemKey, id, 'EX', window) end
              redis.call('PUBLISH', channel, message)
              if not kept and (claim ~= '' or rank ~= '' or tally ~= '' or value ~= '' or ttl ~= '') then
                local entries = heldEntries
                if claim ~= '' then
                  entries = retally(heldEntries, nil, id)
                elseif tally ~= '' then
                  entries = retally(heldEntries, tally, id)
                end
                -- A sequenced rank keeps when it was stored, for telling a restarted count (`SourceOrder.isOlder`).
                if rank ~= '' then heldRank = string.byte(rank) == 124 and rank or (rank .. '|' .. string.format('%.0f', now)) end
                if heldRank ~= '' then
                  heldRank = heldRank .. (sets ~= '' and ('^' .. sets) or '') .. (ttl ~= '' and ('@' .. line) or '') .. statusPart
                end
                local value = entries ~= '' and (heldRank .. '\n' .. entries) or heldRank
                if value == '' then
                  if held then redis.call('HDEL', facts, key) end
                elseif value ~= held then
                  redis.call('HSET', facts, key, value)
                end
              end
              results[i] = late and ('l:' .. id) or holdAt and ('h:' .. id) or id
              added = true
            end
          end
          if record then
            local result = results[i]
            if string.byte(result, 1) == 102 or result == 's' or result == 'q' then
              result = '-'
            elseif string.byte(result, 2) == 58 then
              result = string.sub(result, 3)
            end
            entries[i] = result .. tenant
          end
        end
        if record then redis.call('SET', KEYS[record], table.concat(entries, ' '), 'EX', window) end
        if forget then redis.call('DEL', unpack(KEYS, forget, #KEYS)) end
        if added and maxage > 0 and now > maxage then
          redis.call('XTRIM', stream, 'MINID', '~', string.format('%.0f', now - maxage) .. '-0')
        end
        return results
        """#

    /// The script that publishes on a Redis Cluster: `SPUBLISH` on the partition's sharded channel (which shares
    /// the slot of its keys), so a message goes to the nodes of that slot's shard only, not to every node.
    static let shardedSource = source.replacing("redis.call('PUBLISH', channel,", with: "redis.call('SPUBLISH', channel,")

    /// Events per script call: big enough that a 1000-event batch costs two calls, small enough that one call
    /// does not hold Redis (which runs nothing else meanwhile) for long.
    static let chunkSize = 500

    /// What became of one event.
    enum Outcome: Sendable, Equatable {
        /// Stored and published; `late` when older by source time than the cached state, which it left alone.
        case stored(EventID, late: Bool)
        /// Stored and published as news: a hold on its entity (`StateHold`) kept its state out.
        case held(EventID)
        /// Its idempotency key was seen within the window; nothing was written.
        case duplicate(of: EventID)
        /// Its claim was lost (another node published the stale event, or the entity has a state again).
        case claimLost
        /// Its claim was won for a final state (`FinalState`): nothing was stored, the entity left quietly.
        case leftQuietly
        /// Not stored: its entity's cached state (`id`) is on `line` ("" for none), outside its publisher's lines.
        case foreign(EventID, line: String)
    }

    /// The `EVALSHA` arguments for one chunk of events; `claims[i]` is the id of the state event `events[i]`
    /// claims, if any. `record` is this call's token when it keeps a call record; `forgetting` are the tokens of
    /// answered calls whose records it deletes.
    static func arguments(
        sha: String, events: ArraySlice<ValidatedEvent>, claims: ArraySlice<EventID?>, keys: RedisKeys, config: HubConfig,
        context: TallyContext, record: String? = nil, forgetting: [String] = []
    ) -> [[UInt8]] {
        let window = config.server.idempotencyWindowSeconds
        var extraKeys: [String] = []
        var recordIndexes: [String: Int] = [:]
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(18 + events.count * 11 + forgetting.count)
        arguments.append(Array("EVALSHA".utf8))
        arguments.append(Array(sha.utf8))
        arguments.append([])  // the number of keys, known once the idempotency keys are counted
        arguments.append(Array(keys.stream.utf8))
        arguments.append(Array(keys.lastStates.utf8))
        arguments.append(Array(keys.deadlines.utf8))
        arguments.append(Array(keys.entityFacts.utf8))
        arguments.append(Array(keys.counters.utf8))
        for event in events { arguments.append(Array(keys.stored(event.entityKey).utf8)) }
        let fixedKeys = 5 + events.count
        var perEvent: [[UInt8]] = []
        perEvent.reserveCapacity(events.count * 16)
        var counterLines: [String] = []
        var described = Set<String>()
        for (event, claim) in zip(events, claims) {
            perEvent.append(Array(event.routingHeader.utf8))
            // A dated state's body goes in two parts, split where `status_since` goes (the script joins them); any
            // other event's whole, uncopied.
            perEvent.append(event.statusSince.map { Array(event.bodyAfterID[..<$0.offset]) } ?? event.bodyAfterID)
            if event.carriesState {
                perEvent.append(Array(String(max(0, config.cacheTTL.seconds(for: event))).utf8))
            } else {
                perEvent.append([])
            }
            // A window of 0 or less turns idempotency off, as in the memory engine: nothing is remembered.
            var recall: [UInt8] = []
            if let key = event.idempotencyKey, window > 0 {
                extraKeys.append(keys.idempotencyKey(key))
                perEvent.append(Array(String(fixedKeys + extraKeys.count).utf8))
                if let named = CallRecords.parse(hubKey: Tenant.split(key).rest) {
                    let recordKey = keys.callRecord(named.token)
                    if recordIndexes[recordKey] == nil {
                        extraKeys.append(recordKey)
                        recordIndexes[recordKey] = fixedKeys + extraKeys.count
                    }
                    recall = Array("\(recordIndexes[recordKey]!) \(named.position + 1)".utf8)
                }
            } else {
                perEvent.append([])
            }
            perEvent.append(claim.map { Array(((event.isFinal ? "~" : "") + $0.description).utf8) } ?? [])
            perEvent.append(recall)
            perEvent.append(event.sourceRank.map { Array($0.utf8) } ?? [])
            perEvent.append(event.sourceRank == nil ? [] : Array(String(event.lateMarkOffset).utf8))
            if let tallies = event.tallies {
                perEvent.append(Array(tallies.scriptArgument.utf8))
                for entry in tallies.entries where entry.isCounter && described.insert(entry.key).inserted {
                    if let descriptor = CounterDescriptor.make(for: entry, catalog: config.catalog, cache: context.descriptors) {
                        counterLines.append(descriptor.scriptLine(countedStatesTTL: config.cacheTTL.seconds(for: event.entityType)))
                    }
                }
            } else {
                perEvent.append([])
            }
            if let dated = event.statusSince {
                perEvent.append(Array(event.bodyAfterID[dated.offset...]))
                perEvent.append(Array(dated.value.utf8))
                perEvent.append(Array(dated.timestamp.utf8))
                perEvent.append(dated.changed ? [UInt8(ascii: "1")] : [UInt8(ascii: "0")])
            } else {
                perEvent.append(contentsOf: [[], [], [], []])
            }
            perEvent.append(event.writableLines.map { lines in Array(("\n" + lines.joined(separator: "\n") + "\n").utf8) } ?? [])
            perEvent.append(event.carriesState ? Array((event.line ?? "").utf8) : [])
            perEvent.append(event.hold.map { hold in
                Array("\(event.heldMarkOffset)\t\(hold.sets ?? "")\t\n\(hold.passes.map { $0 + "\n" }.joined())".utf8)
            } ?? [])
        }
        for key in extraKeys { arguments.append(Array(key.utf8)) }
        var keyCount = fixedKeys + extraKeys.count
        var recordIndex: [UInt8] = []
        if let record, window > 0 {
            arguments.append(Array(keys.callRecord(record).utf8))
            keyCount += 1
            recordIndex = Array(String(keyCount).utf8)
        }
        var forgetIndex: [UInt8] = []
        if !forgetting.isEmpty {
            forgetIndex = Array(String(keyCount + 1).utf8)
            for token in forgetting { arguments.append(Array(keys.callRecord(token).utf8)) }
            keyCount += forgetting.count
        }
        arguments[2] = Array(String(keyCount).utf8)
        arguments.append(Array(config.redis.pubsubChannel.utf8))
        arguments.append(Array(String(config.redis.historyMaxLength).utf8))
        arguments.append(Array(String(max(0, config.redis.historyMaxAgeSeconds) * 1000).utf8))
        arguments.append(Array(String(window).utf8))
        arguments.append(recordIndex)
        arguments.append(forgetIndex)
        arguments.append(Array(context.now.utf8))
        arguments.append(Array(context.shift.id.utf8))
        arguments.append(Array(String(Int64(context.shift.endsAt.timeIntervalSince1970 * 1000)).utf8))
        arguments.append(Array(keys.indexPrefix.utf8))
        arguments.append(Array(counterLines.joined(separator: "\n").utf8))
        arguments.append(Array(keys.tallyTag.utf8))
        arguments.append(Array(String(config.server.sequenceResetSeconds).utf8))
        arguments.append(Array(String(max(0, config.server.staleKeptSeconds)).utf8))
        arguments.append(contentsOf: perEvent)
        return arguments
    }

    /// The script's answer for a chunk of `expected` events.
    static func outcomes(_ reply: RedisReply, expected: Int) throws(RedisError) -> [Outcome] {
        guard case .array(let elements) = reply, elements.count == expected else {
            throw .unexpectedReply("the append script answered \(reply)")
        }
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(expected)
        for element in elements {
            guard let text = element.text else { throw .unexpectedReply("the append script answered \(element)") }
            if text == "s" {
                outcomes.append(.claimLost)
            } else if text == "q" {
                outcomes.append(.leftQuietly)
            } else if text.hasPrefix("d:"), let id = EventID(text.dropFirst(2)) {
                outcomes.append(.duplicate(of: id))
            } else if text.hasPrefix("f:") {
                let refusal = text.dropFirst(2)
                let space = refusal.firstIndex(of: " ") ?? refusal.endIndex
                guard let id = EventID(refusal[..<space]) else {
                    throw .unexpectedReply("the append script answered a bad refusal \(text)")
                }
                outcomes.append(.foreign(id, line: String(refusal[space...].dropFirst())))
            } else if text.hasPrefix("l:"), let id = EventID(text.dropFirst(2)) {
                outcomes.append(.stored(id, late: true))
            } else if text.hasPrefix("h:"), let id = EventID(text.dropFirst(2)) {
                outcomes.append(.held(id))
            } else if let id = EventID(text) {
                outcomes.append(.stored(id, late: false))
            } else {
                throw .unexpectedReply("the append script answered a bad id \(text)")
            }
        }
        return outcomes
    }
}

/// What a call's counters need besides its events: the time their events carry, the shift in effect, and the
/// descriptors built so far.
struct TallyContext: Sendable {
    var now: String
    var shift: ShiftSchedule.Current
    var descriptors: CounterDescriptorCache
}

/// The append script's SHA1 as Redis reported it when loading it, shared by every connection of an engine.
/// Redis computes the hash, so none is needed here.
final class LoadedScript: Sendable {
    private let sha = Mutex<String?>(nil)
    /// `AppendScript.source`, or its sharded form on a Redis Cluster.
    let source: String

    init(source: String = AppendScript.source) { self.source = source }

    var current: String? { sha.withLock { $0 } }

    /// `SCRIPT LOAD`s the script on `connection` and remembers its SHA1.
    @discardableResult
    func load(on connection: RedisConnection) async throws -> String {
        let reply = try await connection.send(["SCRIPT", "LOAD", source]).orThrow()
        guard let loaded = reply.text, loaded.count == 40 else {
            throw RedisError.unexpectedReply("SCRIPT LOAD answered \(reply)")
        }
        sha.withLock { $0 = loaded }
        return loaded
    }
}
