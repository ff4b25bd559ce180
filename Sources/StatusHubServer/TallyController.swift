import Hummingbird
import StatusHubCore

/// `GET /v1/counters` and `GET /v1/allocations/active`: the tallies of seed 003 §4.2 (`Tally`), read back with the
/// subscriber rules of `/v1/state`. Counters are read from their cached `counter_changed` states (written in the
/// same atomic step as the count), so the answer is what a snapshot of the counter channel would hold.
struct TallyController {
    let engine: any Engine
    let tokens: SubscriberTokens
    let catalog: Catalog

    func counters(_ request: Request, context: some RequestContext) async throws -> Response {
        let subscriber: Subscriber
        switch await tokens.reader(of: request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return response
        }
        let category = catalog.eventType(named: CounterDescriptor.eventTypeName)?.category.rawValue ?? "counters"
        var text = category
        if let line = request.uri.queryParameters.get("line") {
            guard ChannelName.isValidSegment(line) else {
                return JSONResponse.error(.badRequest, field: "line", reason: "'\(line.prefix(64))' must be \(ChannelName.segmentRule)")
            }
            text = "line:\(line):\(category):*"
        }
        let pattern = try ChannelPattern(parsing: text)
        guard subscriber.allows(pattern) else {
            return JSONResponse.error(.forbidden, field: request.uri.queryParameters.get("line") == nil ? "Authorization" : "line", reason: "'\(text)' is outside the token's patterns")
        }
        var counters: [JSONValue] = []
        do {
            try await engine.snapshot(matching: [pattern.scoped(to: subscriber.tenant)], chunkSize: 500) { chunk in
                for event in chunk.events {
                    guard let parsed = try? JSONValue.parse(event.json), case .object(var data)? = parsed["data"] else { continue }
                    data["line"] = parsed["line"]
                    data["event_id"] = parsed["event_id"]
                    data["updated_at"] = parsed["received_at"]
                    counters.append(.object(data))
                }
            }
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
        counters.sort { ($0["key"]?.stringValue ?? "") < ($1["key"]?.stringValue ?? "") }
        var bytes: [UInt8] = []
        JSONValue.object(["counters": .array(counters)]).write(into: &bytes)
        return JSONResponse.bytes(bytes)
    }

    /// `?operator=O-156` (or `machine=`, `workorder=`: the segment before the id in the catalog's set keys,
    /// `allocation:operator:{operator_id}:active`).
    func activeAllocations(_ request: Request, context: some RequestContext) async throws -> Response {
        let subscriber: Subscriber
        switch await tokens.reader(of: request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return response
        }
        let owners = Self.owners(catalog)
        let given = owners.keys.sorted().compactMap { name in request.uri.queryParameters.get(name).map { (name, $0) } }
        guard given.count == 1, let (owner, id) = given.first, let template = owners[owner] else {
            return JSONResponse.error(
                .badRequest, field: "query", reason: "give exactly one of \(owners.keys.sorted().map { "\($0)=<id>" }.joined(separator: ", "))")
        }
        guard ChannelName.isValidSegment(id) else {
            return JSONResponse.error(.badRequest, field: owner, reason: "'\(id.prefix(64))' must be \(ChannelName.segmentRule)")
        }
        let allocations = try ChannelPattern(parsing: "allocation:*")
        guard subscriber.allows(allocations) else {
            return JSONResponse.error(.forbidden, field: "Authorization", reason: "allocations are outside the token's patterns")
        }
        // The sets say what the events of their entity type say: the claims those need, these need too.
        let entityName = catalog.tallies.first { $0.kind == .set && $0.keys.contains(template) }?.entityType
        let needed = Set(catalog.eventTypes.filter { $0.entityTypes.contains { $0.rawValue == entityName } }
            .compactMap(\.definition.restriction.eventClaim))
        if let claims = subscriber.claims, !needed.isSubset(of: claims) {
            return JSONResponse.error(
                .forbidden, field: "Authorization", reason: "active \(entityName ?? "")s need the claims \(needed.sorted().joined(separator: ", ")) (see)")
        }
        let key = template.replacingOccurrences(of: "{\(Self.placeholder(in: template) ?? "")}", with: id)
        do {
            let members = try await engine.activeSet(key: Tenant.prefix(subscriber.tenant) + key)
            var bytes: [UInt8] = []
            JSONValue.object(["key": .string(key), "allocation_ids": .array(members.map(JSONValue.string))]).write(into: &bytes)
            return JSONResponse.bytes(bytes)
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    /// Query name → key template, for every active-set key with one placeholder.
    static func owners(_ catalog: Catalog) -> [String: String] {
        var owners: [String: String] = [:]
        for tally in catalog.tallies where tally.kind == .set {
            for template in tally.keys {
                guard let name = placeholder(in: template) else { continue }
                let segments = template.split(separator: ":")
                guard let index = segments.firstIndex(where: { $0 == "{\(name)}" }), index > 0 else { continue }
                owners[String(segments[index - 1])] = template
            }
        }
        return owners
    }

    private static func placeholder(in template: String) -> String? {
        guard let open = template.firstIndex(of: "{"), let close = template.firstIndex(of: "}"), open < close,
            template.filter({ $0 == "{" }).count == 1
        else { return nil }
        return String(template[template.index(after: open)..<close])
    }
}
