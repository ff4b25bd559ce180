import Hummingbird
import StatusHubCore

/// `GET /v1/state/{entity_type}/{entity_id}` and `GET /v1/state?pattern=…`: the write-through cache, read back.
struct StateController {
    let engine: any Engine

    func entity(_ request: Request, context: some RequestContext) async throws -> Response {
        let typeName = context.parameters.get("entity_type") ?? ""
        let entityID = context.parameters.get("entity_id") ?? ""
        guard let type = EntityType(rawValue: typeName) else {
            return JSONResponse.error(.badRequest, field: "entity_type", reason: "unknown value '\(typeName)'; allowed: \(EntityType.allowedList)")
        }
        guard ChannelName.isValidSegment(entityID) else {
            return JSONResponse.error(.badRequest, field: "entity_id", reason: "must be \(ChannelName.segmentRule)")
        }
        let key = type.cacheKey(entityID: entityID)
        do {
            guard let event = try await engine.latest(entityKey: key) else {
                return JSONResponse.error(.notFound, field: "entity_id", reason: "no cached state for \(type.rawValue) \(entityID): never seen, or expired")
            }
            return JSONResponse.bytes(event.json)
        } catch let unavailable as EngineUnavailable {
            return unavailableResponse(unavailable)
        }
    }

    func matching(_ request: Request, context: some RequestContext) async throws -> Response {
        let texts = request.uri.queryParameters.getAll("pattern")
        guard !texts.isEmpty else {
            return JSONResponse.error(.badRequest, field: "pattern", reason: "is required: GET /v1/state?pattern=line:Line-2:* (repeatable)")
        }
        var patterns: [ChannelPattern] = []
        for text in texts {
            do {
                patterns.append(try ChannelPattern(parsing: String(text)))
            } catch {
                return JSONResponse.error(.badRequest, field: "pattern", reason: error.reason)
            }
        }
        do {
            let events = try await engine.snapshot(matching: patterns).events
            var body = Array(#"{"events":["#.utf8)
            for (position, event) in events.enumerated() {
                if position > 0 { body.append(UInt8(ascii: ",")) }
                body += event.json
            }
            body += Array("]}".utf8)
            return JSONResponse.bytes(body)
        } catch let unavailable as EngineUnavailable {
            return unavailableResponse(unavailable)
        }
    }

    private func unavailableResponse(_ unavailable: EngineUnavailable) -> Response {
        JSONResponse.error(
            .serviceUnavailable, field: "engine", reason: unavailable.reason,
            headers: [.retryAfter: String(unavailable.retryAfterSeconds)])
    }
}
