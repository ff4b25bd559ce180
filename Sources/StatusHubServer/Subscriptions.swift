import StatusHubCore

/// Answers a `subscribe` for one connection, whatever carries it (a WebSocket, or an SSE stream): registers the
/// patterns and their filter, replays from `since`, sends the snapshot and the `recent` feed events, and closes the
/// seam.
struct Subscriptions {
    let connection: Connection
    let fanOut: FanOut
    let engine: any Engine
    let maxSubscriptions: Int
    let metrics: HubMetrics

    /// Events per `snapshot` frame: a few hundred KB at seed-sized events.
    static let snapshotChunkEvents = 500

    private func reply(_ bytes: [UInt8]) {
        connection.outbox.push(WireFrame.text(bytes))
    }

    /// Registers the patterns before reading history or the snapshot, holding live events back meanwhile:
    /// whatever happens in between is either in the replay/snapshot or delivered after it, never lost and
    /// never twice. `filter` applies to live events, the replay, the snapshot and the recent feed events alike; those
    /// are sent unless a replay brought the client up to date (it held them, or saw them in the replay).
    func subscribe(
        id: MessageID?, patterns: [ChannelPattern], wantsSnapshot: Bool, since: ResumePoint?, filter: EventFilter? = nil, recent: Int = 0
    ) async {
        let held = connection.patterns
        let added = patterns.filter { !held.contains($0) }
        guard held.count + added.count <= maxSubscriptions else {
            reply(ServerMessage.error(
                id: id, code: .tooManySubscriptions,
                message: "a connection may hold \(maxSubscriptions) patterns (websocket.max_subscriptions); it holds \(held.count)"))
            return
        }
        connection.beginSeam()
        // The filter first: from the moment a pattern is in the index, its live events are judged by it.
        connection.filters.set(filter, for: patterns)
        fanOut.add(connection, patterns: added)
        reply(ServerMessage.subscribed(id: id, patterns: patterns, filter: filter))

        // What a replay that failed part-way had sent: live events held back meanwhile that it covered must not
        // follow it a second time.
        var partlyReplayed = SeamFilter()
        if let since {
            let outcome: Replay
            switch since {
            case .event(let id): outcome = await replay(after: id, patterns: patterns, filter: filter)
            case .token(let token): outcome = await replay(afterToken: token, patterns: patterns, filter: filter)
            }
            switch outcome {
            case .complete(let sent):
                // The live events held back meanwhile go in like one more page.
                try? await untilOutboxHasRoomForAPage()
                endSeam(sent)
                return
            case .gap:
                metrics.resyncs.increment()
                reply(ServerMessage.resync(id: id, reason: .historyGap))
            case .failed(let error, let sent):
                partlyReplayed = sent
                reply(ServerMessage.error(id: id, code: .unavailable, message: "history unavailable: \(error); resync with a snapshot"))
                metrics.resyncs.increment()
                reply(ServerMessage.resync(id: id, reason: .historyUnavailable))
            }
        }
        guard wantsSnapshot else {
            var answered = partlyReplayed
            sendRecent(recent, id: id, patterns: patterns, filter: filter, answering: &answered)
            endSeam(answered)
            return
        }
        var answered = partlyReplayed.holdsAnything ? partlyReplayed : SeamFilter(patterns: patterns)
        do {
            var first = true
            try await engine.snapshot(matching: patterns, chunkSize: Self.snapshotChunkEvents) { chunk in
                if first { answered.snapshot(at: chunk.position) }
                first = false
                // The seam learns every state the snapshot reflects, sent or filtered out.
                answered.sent(chunk.events)
                let visible = chunk.events.compactMap(visible)
                let events = filter.map { filter in visible.filter { Self.admits($0, filter) } } ?? visible
                reply(ServerMessage.snapshot(
                    id: id, events: events, position: chunk.position, resumeToken: chunk.resumeToken, more: !chunk.isLast))
                // Read the next part only once this one is nearly on its way: a snapshot of 50,000 states to a dozen
                // dashboards at once must not sit in their outboxes whole.
                if !chunk.isLast {
                    await connection.outbox.untilCount(atMost: 2)
                    try Task.checkCancellation()
                }
            }
        } catch {
            reply(ServerMessage.error(id: id, code: .unavailable, message: "snapshot unavailable: \(error); live events follow"))
            answered = SeamFilter()
        }
        sendRecent(recent, id: id, patterns: patterns, filter: filter, answering: &answered)
        endSeam(answered)
    }

    /// The newest `count` feed events of the patterns (`RecentFeed`), as this connection's token may see them and its
    /// filter admits, in one `recent` message; the seam learns them, so their live copies still held back are dropped.
    private func sendRecent(
        _ count: Int, id: MessageID?, patterns: [ChannelPattern], filter: EventFilter?, answering answered: inout SeamFilter
    ) {
        guard count > 0 else { return }
        let events = fanOut.recent.newest(count) { event in
            guard event.matches(any: patterns), let shown = visible(event) else { return nil }
            if let filter, !Self.admits(shown, filter) { return nil }
            return shown
        }
        answered.sentRecent(events, patterns: patterns)
        reply(ServerMessage.recent(id: id, events: events))
    }

    private func endSeam(_ answered: SeamFilter = SeamFilter()) {
        let conflated = connection.endSeam(answered)
        if conflated > 0 { metrics.conflated.increment(by: conflated) }
    }

    /// The event as this connection's token may see it (`Redaction`), or nil.
    private func visible(_ event: StoredEvent) -> StoredEvent? {
        Redaction.visible(event, to: connection.claims, catalog: fanOut.catalog)
    }

    private static func admits(_ event: StoredEvent, _ filter: EventFilter) -> Bool {
        guard let decoded = try? JSONValue.parse(event.json) else { return false }
        return filter.admits(decoded)
    }

    /// Frames a replay may fill the outbox with: up to the conflation threshold (with conflation on for every
    /// frame, `websocket.conflate_above` 0 or 1, half the outbox).
    private var replayRoom: Int {
        connection.outbox.conflateAbove > 1 ? connection.outbox.conflateAbove : connection.outbox.capacity / 2
    }

    private var replayPageSize: Int { max(1, min(1000, replayRoom / 2)) }

    private func untilOutboxHasRoomForAPage() async throws {
        await connection.outbox.untilCount(atMost: replayRoom - replayPageSize)
        try Task.checkCancellation()
    }

    /// How a replay ended; `sent`: what the pages it sent covered, for the seam.
    private enum Replay {
        case complete(sent: SeamFilter)
        case gap
        case failed(any Error, sent: SeamFilter)
    }

    /// Queues a page's events that match `patterns` and `filter`, as this connection may see them, and counts what
    /// the outbox conflated. `frame`: the event as this reader gets it, and the event as stored.
    private func send(
        _ page: [StoredEvent], patterns: [ChannelPattern], filter: EventFilter?, frame: (StoredEvent, StoredEvent) -> WireFrame
    ) {
        var conflated: Int64 = 0
        for stored in page where stored.matches(any: patterns) {
            guard let event = visible(stored), filter.map({ Self.admits(event, $0) }) ?? true else { continue }
            if connection.outbox.push(frame(event, stored), conflationKey: fanOut.catalog.conflationKey(of: event)) == .conflated { conflated += 1 }
        }
        if conflated > 0 { metrics.conflated.increment(by: conflated) }
    }

    /// The same from a resume token (a hub with several partitions): each event goes out with the token that
    /// resumes after it (`StoredEvent.resumeToken`), so a client that loses the connection mid-replay resumes where
    /// it stopped.
    /// Paced like `replay(after:)`. Its frames are not shared through `ReplayFrames`: the token an event carries
    /// depends on where this reader stands in the other partitions.
    private func replay(afterToken token: String, patterns: [ChannelPattern], filter: EventFilter?) async -> Replay {
        let pageSize = replayPageSize
        var cursor = token
        var through: [Int: EventID] = [:]
        func sent() -> SeamFilter { SeamFilter(patterns: patterns, replayedThroughPartitions: through) }
        do {
            while true {
                try await untilOutboxHasRoomForAPage()
                guard let page = try await engine.history(afterToken: cursor, limit: pageSize) else {
                    return cursor == token ? .gap : .failed(EngineUnavailable(reason: "history trimmed during replay"), sent: sent())
                }
                for stored in page { through[stored.partition] = stored.id }
                send(page, patterns: patterns, filter: filter) { event, _ in WireFrame.text(ServerMessage.event(event)) }
                guard let last = page.last?.resumeToken else { return .complete(sent: sent()) }
                cursor = last
                if page.count < pageSize { return .complete(sent: sent()) }
            }
        } catch {
            return .failed(error, sent: sent())
        }
    }

    /// Sends every event after `since` that matches `patterns` (and `filter`), page by page, pacing itself on the
    /// outbox: a page goes in only while the outbox has room for it below `websocket.conflate_above`. Pushed all at
    /// once, a replay longer than that threshold was conflated however fast the reader read (a resume of 336 events
    /// on 100 machines lost 59 of them per subscriber), and the metric never heard of it; now only a reader that
    /// falls behind the replay is conflated, as it would be live.
    private func replay(after since: EventID, patterns: [ChannelPattern], filter: EventFilter?) async -> Replay {
        let pageSize = replayPageSize
        var cursor = since
        // The cursor itself when the replay ended without sending anything: live events up to it are old news too.
        func sent() -> SeamFilter { SeamFilter(patterns: patterns, replayedThrough: cursor) }
        do {
            while true {
                try await untilOutboxHasRoomForAPage()
                guard let page = try await engine.history(after: cursor, limit: pageSize) else {
                    return cursor == since ? .gap : .failed(EngineUnavailable(reason: "history trimmed during replay"), sent: sent())
                }
                send(page, patterns: patterns, filter: filter, frame: fanOut.replayFrames.frame(of:storedAs:))
                guard let last = page.last else { return .complete(sent: sent()) }
                cursor = last.id
                if page.count < pageSize { return .complete(sent: sent()) }
            }
        } catch {
            return .failed(error, sent: cursor == since ? SeamFilter() : sent())
        }
    }
}
