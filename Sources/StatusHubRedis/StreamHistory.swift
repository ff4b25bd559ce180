import StatusHubCore

/// What the history holds after a position.
public enum HistoryPage: Sendable, Equatable {
    /// Up to a page of the events that follow, oldest first; empty when none do.
    case events([StoredEvent])
    /// Events after the position are missing: trimmed by length or age, lost with a Redis that restarted without
    /// its data, or the history is another one (a promoted replica that never got the position's event). What the
    /// stream holds after `continueAfter` is news to whoever stood at the position; nil: all of it is.
    case gap(continueAfter: EventID?)
}

/// The history stream as resume and catch-up read it: pages after a position, and whether the stream still
/// reaches back that far.
struct StreamHistory: Sendable {
    let commands: ReconnectingConnection
    let streamKey: String

    /// Up to `limit` events after `id`, or `.gap`. One round trip: `XRANGE` pipelined with `XINFO STREAM` and the
    /// newest entry at or before `id` (`XREVRANGE id - COUNT 1`). The completeness check runs after the read, and
    /// trimming only ever removes the oldest entries, so if nothing after `id` is missing at the check, nothing was
    /// missing at the read either. An `id` inside the stream's span that the stream does not hold was never in
    /// this history (after a failover, the promoted replica may lack the old master's last events, and then write
    /// its own): that is a gap too, and what follows it is news.
    /// With `id` nil: the oldest events the stream still holds, never `.gap`.
    func page(after id: EventID?, limit: Int) async throws -> HistoryPage {
        let count = String(max(1, limit))
        guard let id else {
            let reply = try await commands.connection().send(["XRANGE", streamKey, "-", "+", "COUNT", count])
            return .events(try Self.decodeEntries(reply.orThrow()))
        }
        let replies = try await commands.connection().pipeline([
            ["XRANGE", streamKey, "(\(id)", "+", "COUNT", count],
            ["XINFO", "STREAM", streamKey],
            ["XREVRANGE", streamKey, "\(id)", "-", "COUNT", "1"],
        ])
        let bounds = try StreamBounds(replies[1])
        guard bounds.holdsEverything(after: id) else { return .gap(continueAfter: bounds.continuation(after: id)) }
        if let held = try Self.heldAtOrBefore(id, bounds: bounds, reply: replies[2]), held != id {
            return .gap(continueAfter: held)
        }
        return .events(try Self.decodeEntries(replies[0].orThrow()))
    }

    func isComplete(after id: EventID) async throws -> Bool {
        let replies = try await commands.connection().pipeline([
            ["XINFO", "STREAM", streamKey], ["XREVRANGE", streamKey, "\(id)", "-", "COUNT", "1"],
        ])
        let bounds = try StreamBounds(replies[0])
        guard bounds.holdsEverything(after: id) else { return false }
        return try Self.heldAtOrBefore(id, bounds: bounds, reply: replies[1]).map { $0 == id } ?? true
    }

    /// The id of the newest entry at or before `id` (`XREVRANGE id - COUNT 1`), or nil when `id` needs no such
    /// check: `0-0`, the newest id, or the last one trimming removed (positions a stream vouches for without an
    /// entry).
    private static func heldAtOrBefore(_ id: EventID, bounds: StreamBounds, reply: RedisReply) throws -> EventID? {
        if id == .zero || id == bounds.lastGenerated || id == bounds.maxDeleted { return nil }
        guard case .array(let entries) = try reply.orThrow() else { throw RedisError.unexpectedReply("XREVRANGE answered \(reply)") }
        return entries.first?.array?.first?.text.flatMap(EventID.init) ?? .zero
    }

    /// Up to `limit` entries before `id` (from the newest with nil), newest first (`XREVRANGE`).
    func page(before id: EventID?, limit: Int) async throws -> [StoredEvent] {
        let start = id.map { "(\($0)" } ?? "+"
        let reply = try await commands.connection().send(["XREVRANGE", streamKey, start, "-", "COUNT", String(max(1, limit))])
        return try Self.decodeEntries(reply.orThrow())
    }

    /// The id of the newest event the stream has generated, nil if there is no stream.
    func newest() async throws -> EventID? {
        try await bounds().lastGenerated
    }

    private func bounds() async throws -> StreamBounds {
        try StreamBounds(await commands.connection().send(["XINFO", "STREAM", streamKey]))
    }

    /// `XRANGE` entries as stored events: the routing header and body the append script wrote, and the id.
    static func decodeEntries(_ reply: RedisReply) throws -> [StoredEvent] {
        guard case .array(let entries) = reply else { throw RedisError.unexpectedReply("XRANGE answered \(reply)") }
        return try entries.map { entry in
            guard case .array(let parts) = entry, parts.count == 2, let idText = parts[0].text,
                let id = EventID(idText), case .array(let fields) = parts[1]
            else { throw RedisError.unexpectedReply("XRANGE entry \(entry)") }
            var header: [UInt8]?
            var body: [UInt8]?
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                switch fields[index].text {
                case "h": header = fields[index + 1].bytes
                case "b": body = fields[index + 1].bytes
                default: break
                }
            }
            guard let header, let body, let routing = RoutingHeader.decode(header) else {
                throw RedisError.unexpectedReply("history entry \(id) lacks its routing header or body")
            }
            return StoredEvent(
                id: id, entityKey: routing.entityKey, channels: routing.channels,
                json: StoredEvent.assembleJSON(id: id, bodyAfterID: body), carriesState: routing.carriesState)
        }
    }
}

/// What `XINFO STREAM` says about which ids a stream still holds.
struct StreamBounds: Equatable {
    /// False when the key does not exist: the stream was never written, or was lost.
    var exists: Bool
    var lastGenerated: EventID?
    var firstEntry: EventID?
    /// The newest id trimming removed (Redis 7 and later); nil when unknown or nothing was removed.
    var maxDeleted: EventID?

    init(exists: Bool, lastGenerated: EventID? = nil, firstEntry: EventID? = nil, maxDeleted: EventID? = nil) {
        self.exists = exists
        self.lastGenerated = lastGenerated
        self.firstEntry = firstEntry
        self.maxDeleted = maxDeleted
    }

    init(_ reply: RedisReply) throws {
        if case .error(let message) = reply, message.contains("no such key") {
            self.init(exists: false)
            return
        }
        guard case .array(let fields) = try reply.orThrow() else {
            throw RedisError.unexpectedReply("XINFO STREAM answered \(reply)")
        }
        var info: [String: RedisReply] = [:]
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            if let name = fields[index].text { info[name] = fields[index + 1] }
        }
        var first: EventID?
        if case .array(let entry)? = info["first-entry"] { first = entry.first?.text.flatMap(EventID.init) }
        let maxDeleted = info["max-deleted-entry-id"]?.text.flatMap(EventID.init)
        self.init(
            exists: true, lastGenerated: info["last-generated-id"]?.text.flatMap(EventID.init), firstEntry: first,
            maxDeleted: maxDeleted == EventID(milliseconds: 0, sequence: 0) ? nil : maxDeleted)
    }

    /// Whether every event after `id` is still in the stream, so a resume from `id` misses nothing.
    ///
    /// False when the stream does not know `id`: an id past its newest, or before its first entry — trimming
    /// removes the oldest entries first, so what follows the first retained entry is intact, and an id before it
    /// was either trimmed or predates this stream (a lost and recreated one); either way, what came after it may
    /// be gone. Two ids before the first entry are still complete: the newest id itself (age trimming may have
    /// emptied a quiet stream, but nothing came after it), and the very last id trimming removed.
    /// `0-0` asks for the whole history: complete while trimming has removed nothing (a stream never written is
    /// an empty history).
    /// After a gap at `id`: where what the stream holds stops being history the position already covers. Past the
    /// newest id, the stream is a prefix of that history (a promoted replica that was behind): nothing in it is
    /// news. Before the first entry (trimmed, or a stream made anew), all of it may be.
    func continuation(after id: EventID) -> EventID? {
        guard exists, let lastGenerated, id > lastGenerated else { return nil }
        return lastGenerated
    }

    func holdsEverything(after id: EventID) -> Bool {
        if id == .zero { return maxDeleted == nil }
        guard exists, let lastGenerated, id <= lastGenerated else { return false }
        if id == lastGenerated || id == maxDeleted { return true }
        guard let firstEntry else { return false }
        return id >= firstEntry
    }
}
