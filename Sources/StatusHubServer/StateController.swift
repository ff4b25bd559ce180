import Hummingbird
import StatusHubCore

/// `GET /v1/state/{entity_type}/{entity_id}`, `GET /v1/state?pattern=…` and `GET /v1/lines`: the write-through
/// cache, read back, with the same subscriber token and the same tenant and pattern rules (and limit) as a WebSocket snapshot.
struct StateController {
    let engine: any Engine
    let tokens: SubscriberTokens
    let catalog: Catalog
    /// Distinct patterns one `GET /v1/state` may name (`websocket.max_subscriptions`, as one subscribe): each costs a
    /// pass over the cache on the event loop, so thousands of them stalled the node.
    let maxPatterns: Int

    private func reader(_ request: Request) async -> SubscriberTokens.Reader { await tokens.reader(of: request) }

    func entity(_ request: Request, context: some RequestContext) async throws -> Response {
        let subscriber: Subscriber
        switch await reader(request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return response
        }
        let typeName = context.parameters.get("entity_type") ?? ""
        let entityID = context.parameters.get("entity_id") ?? ""
        guard let type = catalog.entityType(named: typeName) else {
            return JSONResponse.error(.badRequest, field: "entity_type", reason: "unknown value '\(typeName)'; allowed: \(catalog.entityTypeList)")
        }
        guard ChannelName.isValidSegment(entityID) else {
            return JSONResponse.error(.badRequest, field: "entity_id", reason: "must be \(ChannelName.segmentRule)")
        }
        // No event can carry one (the validator refuses it), so it is malformed here too, not "never seen".
        guard !ChannelName.isDotSegment(entityID) else {
            return JSONResponse.error(.badRequest, field: "entity_id", reason: "'\(entityID)' \(ChannelName.dotSegmentRule)")
        }
        // Refused before the cache is read, or a 403 for a cached entity beside a 404 for an unknown one would tell the
        // token which entities of the type exist.
        if let claims = subscriber.claims {
            let states = catalog.eventTypes.filter { $0.carriesState && $0.entityTypes.contains(type) }
            let hidden = states.compactMap(\.definition.restriction.eventClaim).filter { !claims.contains($0) }
            if !states.isEmpty, hidden.count == states.count {
                return JSONResponse.error(
                    .forbidden, field: "entity_type",
                    reason: "\(type.rawValue) states are restricted to tokens with the claim \(Set(hidden).sorted().joined(separator: ", ")) (see)")
            }
        }
        let key = Tenant.prefix(subscriber.tenant) + type.cacheKey(entityID: entityID)
        do {
            guard let event = try await engine.latest(entityKey: key) else {
                return JSONResponse.error(.notFound, field: "entity_id", reason: "no cached state for \(type.rawValue) \(entityID): never seen, or stale for longer than server.stale_kept_seconds")
            }
            if let allowed = subscriber.allowed, !event.matches(any: allowed.map { $0.scoped(to: subscriber.tenant) }) {
                return JSONResponse.error(.forbidden, field: "entity_id", reason: "\(type.rawValue) \(entityID) is outside the token's patterns")
            }
            guard let visible = Redaction.visible(event, to: subscriber.claims, catalog: catalog) else {
                return JSONResponse.error(.forbidden, field: "entity_type", reason: "\(type.rawValue) \(entityID)'s latest event is restricted to tokens with a claim this one lacks (see)")
            }
            return JSONResponse.bytes(visible.json)
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    /// `GET /v1/lines`: the lines of the token's tenant with an entity cached, those its patterns reach — what a
    /// dashboard offers to pick from, without reading every state to find them.
    func lines(_ request: Request, context: some RequestContext) async throws -> Response {
        let subscriber: Subscriber
        switch await reader(request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return response
        }
        do {
            let lines = try await engine.lines(tenant: subscriber.tenant).filter { line in
                subscriber.allowed?.contains { $0.reaches(line: line) } ?? true
            }
            var bytes: [UInt8] = []
            JSONValue.object(["lines": .array(lines.map(JSONValue.string))]).write(into: &bytes)
            return JSONResponse.bytes(bytes)
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    func matching(_ request: Request, context: some RequestContext) async throws -> Response {
        let subscriber: Subscriber
        switch await reader(request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return response
        }
        let texts = request.uri.queryParameters.getAll("pattern")
        guard !texts.isEmpty else {
            return JSONResponse.error(.badRequest, field: "pattern", reason: "is required: GET /v1/state?pattern=line:Line-2:* (repeatable)")
        }
        var patterns: [ChannelPattern] = []
        var seen = Set<String>()
        for text in texts where seen.insert(text).inserted {
            guard seen.count <= maxPatterns else {
                return JSONResponse.error(.badRequest, field: "pattern", reason: SubscribeQuery.tooManyPatterns(maxPatterns))
            }
            let pattern: ChannelPattern
            do {
                pattern = try ChannelPattern(parsing: String(text))
            } catch {
                return JSONResponse.error(.badRequest, field: "pattern", reason: error.reason)
            }
            guard subscriber.allows(pattern) else {
                return JSONResponse.error(.forbidden, field: "pattern", reason: "'\(pattern.text)' is outside the token's patterns")
            }
            patterns.append(pattern.scoped(to: subscriber.tenant))
        }
        // Streamed a chunk at a time, like a WebSocket snapshot, so ten of these at once on 50,000 states hold no
        // large buffer. The status goes out before the first read, so only an engine known to be down gets a 503;
        // one that fails midway cuts the response off (no final chunk): a client never mistakes part for the whole.
        // A partitioned engine is ready while any partition is: the partitions it knows to be down are asked first.
        guard engine.isReady else {
            return JSONResponse.engineUnavailable(EngineUnavailable(reason: "the engine is not connected"))
        }
        if let down = (engine as? any PartialAvailability)?.unreadableParts {
            return JSONResponse.engineUnavailable(EngineUnavailable(reason: down))
        }
        let (engine, scoped, catalog, claims) = (engine, patterns, catalog, subscriber.claims)
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: #"{"events":["#))
            var first = true
            try await engine.snapshot(matching: scoped, chunkSize: 500) { chunk in
                guard !chunk.events.isEmpty else { return }
                var bytes: [UInt8] = []
                for stored in chunk.events {
                    guard let event = Redaction.visible(stored, to: claims, catalog: catalog) else { continue }
                    if !first { bytes.append(UInt8(ascii: ",")) }
                    first = false
                    bytes += event.json
                }
                try await writer.write(ByteBuffer(bytes: bytes))
            }
            try await writer.write(ByteBuffer(string: "]}"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }
}
