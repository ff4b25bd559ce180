import Foundation
import StatusHubCore
import StatusHubServer
@testable import StatusHubServer
import Testing

/// Seed 003 §12.1: restricted fields and event types reach only tokens with the claim, in live events, snapshots,
/// replays and `/v1/state`.
@Suite("Who may see what")
struct RedactionTests {
    static let operatorWithPII = #"{"event_type":"resource_status_changed","entity_type":"operator","entity_id":"O-156","line":"Line-2","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"available","name":"John Doe","email":"jd@plant.example","location":"Zone A"},"metadata":{"source":"tna","triggered_by":"badge"}}"#
    static let allocation = #"{"event_type":"allocation_changed","entity_type":"allocation","entity_id":"A-1","line":"Line-2","timestamp":"2025-11-18T14:23:45.678Z","data":{"change_type":"created","operator_id":"O-156","machine_id":"M-1"},"metadata":{"source":"mes","triggered_by":"planner"}}"#
    static let material = #"{"event_type":"material_inventory_changed","entity_type":"material","entity_id":"MAT-1","line":"Line-2","timestamp":"2025-11-18T14:23:45.678Z","data":{"available_quantity":5,"unit_cost":12.5},"metadata":{"source":"erp","triggered_by":"receipt"}}"#

    /// A publisher key of the default tenant for every entity type and line.
    static let plantKey = "plant-key-5d21"

    static func secured(_ issuer: TokenIssuer) throws -> (inout HubConfig) -> Void {
        let base = try AccessControlTests.secured(issuer)
        return { config in
            base(&config)
            config.auth.apiKeys.append(.init(name: "plant-mes", hash: PublisherKeys.hash(key: plantKey)))
        }
    }

    static func socket(_ port: Int, _ token: String) async throws -> TestSocket {
        try await TestSocket(port: port, path: "/v1/ws?token=\(token)")
    }

    static func get(_ port: Int, _ path: String, _ token: String) async throws -> HTTPReply {
        try await HTTP.request("GET", port: port, path, contentType: nil, headers: ["Authorization": "Bearer \(token)"])
    }

    @Test(arguments: EngineKind.allCases)
    func restrictedFieldsAndTypesReachOnlyTokensWithTheClaim(engine: EngineKind) async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: engine, configure: try Self.secured(issuer)) { hub in
            let everything = ["line:Line-2:*"]
            let floor = try await issuer.hs256(patterns: everything)
            let hr = try await issuer.hs256(patterns: everything, see: ["pii"])
            let auditor = try await issuer.hs256(patterns: everything + ["allocation:*"], see: ["audit", "pii", "financial"])
            let floorLive = try await Self.socket(hub.port, floor)
            let hrLive = try await Self.socket(hub.port, hr)
            let auditLive = try await Self.socket(hub.port, auditor)
            for socket in [floorLive, hrLive, auditLive] { _ = try await socket.subscribe(["line:Line-2:*"]) }

            let reply = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data("[\(Self.operatorWithPII),\(Self.allocation),\(Self.material)]".utf8),
                headers: ["Authorization": "Bearer \(Self.plantKey)"])
            #expect(reply.status == 202, "\(reply.text)")
            let firstID = reply.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue

            // The first event may be slow to come on a loaded machine (a full-suite run once took over 800 ms on
            // Redis); once events flow, a quiet 800 ms ends what this reader is sent.
            func live(_ socket: TestSocket) async throws -> [String: StoredEventJSON] {
                var byType: [String: StoredEventJSON] = [:]
                var wait = Duration.seconds(10)
                while let event = try? await socket.nextEvent(timeout: wait) {
                    wait = .milliseconds(800)
                    if let type = event["event_type"]?.stringValue, type != "counter_changed" { byType[type] = event }
                }
                return byType
            }
            let floorSaw = try await live(floorLive)
            let hrSaw = try await live(hrLive)
            let auditSaw = try await live(auditLive)
            // The floor: the operator without name or email, no allocation, the material without its cost.
            #expect(Set(floorSaw.keys) == ["resource_status_changed", "material_inventory_changed"])
            #expect(floorSaw["resource_status_changed"]?["data"] == .object(["current_status": .string("available"), "location": .string("Zone A")]))
            #expect(floorSaw["material_inventory_changed"]?["data"] == .object(["available_quantity": .number(5)]))
            #expect(floorSaw["resource_status_changed"]?["event_id"]?.stringValue == firstID)
            // HR: the name, still no allocation.
            #expect(Set(hrSaw.keys) == ["resource_status_changed", "material_inventory_changed"])
            #expect(hrSaw["resource_status_changed"]?["data"]?["name"] == .string("John Doe"))
            #expect(hrSaw["material_inventory_changed"]?["data"]?["unit_cost"] == nil)
            // Audit with every claim: everything, as stored.
            #expect(Set(auditSaw.keys) == ["resource_status_changed", "allocation_changed", "material_inventory_changed"])
            #expect(auditSaw["material_inventory_changed"]?["data"]?["unit_cost"] == .number(12.5))

            // Snapshots and replays redact alike.
            let floorLater = try await Self.socket(hub.port, floor)
            let snapshot = try await floorLater.subscribe(["line:Line-2:*"], snapshot: true)
            #expect(!snapshot.contains { $0["entity_type"] == .string("allocation") })
            #expect(snapshot.first { $0["entity_type"] == .string("operator") }?["data"]?["name"] == nil)
            #expect(snapshot.first { $0["entity_type"] == .string("operator") }?["data"]?["current_status"] == .string("available"))
            let replayer = try await Self.socket(hub.port, floor)
            replayer.send(#"{"op":"subscribe","id":"r","channels":["line:Line-2:*"],"since":"0-0"}"#)
            _ = try await replayer.next()
            let replayed = try await live(replayer)
            #expect(replayed["allocation_changed"] == nil)
            #expect(replayed["resource_status_changed"]?["data"]?["email"] == nil)

            // /v1/state, one and many.
            let one = try await Self.get(hub.port, "/v1/state/operator/O-156", floor)
            #expect(one.status == 200)
            #expect(one.json["data"]?["name"] == nil && one.json["data"]?["location"] == .string("Zone A"))
            #expect(try await Self.get(hub.port, "/v1/state/operator/O-156", hr).json["data"]?["name"] == .string("John Doe"))
            let hidden = try await Self.get(hub.port, "/v1/state/allocation/A-1", floor)
            #expect(hidden.status == 403)
            #expect(hidden.json["error"]?["field"] == .string("entity_type"))
            #expect(try await Self.get(hub.port, "/v1/state/allocation/A-1", auditor).status == 200)
            let many = try await Self.get(hub.port, "/v1/state?pattern=line:Line-2:*", floor)
            let types = many.json["events"]?.arrayValue?.compactMap { $0["entity_type"]?.stringValue } ?? []
            #expect(!types.contains("allocation") && types.contains("operator"), "\(many.text)")
            #expect(!many.text.contains("John Doe") && !many.text.contains("12.5"))
            // The active sets tell what the allocation events tell: audit only.
            #expect(try await Self.get(hub.port, "/v1/allocations/active?operator=O-156", floor).status == 403)
            let sets = try await Self.get(hub.port, "/v1/allocations/active?operator=O-156", auditor)
            #expect(sets.json["allocation_ids"] == .array([.string("A-1")]))
            for socket in [floorLive, hrLive, auditLive, floorLater, replayer] { _ = await socket.close() }
        }
    }

    /// A state's `status_stale` notice carries the state whole (`data.last_state`): it was sent to every token, so an
    /// allocation (audit), an operator's name (pii) and a material's cost (financial) reached the floor when they
    /// expired. The notice is restricted as its state is.
    @Test(arguments: EngineKind.allCases)
    func staleNoticesAreRestrictedAsTheirStates(engine: EngineKind) async throws {
        let issuer = TokenIssuer()
        let secured = try Self.secured(issuer)
        try await withHub(engine: engine, configure: { config in
            secured(&config)
            for type in ["allocation", "operator", "material"] { config.cacheTTL.overrides[type] = 1 }
        }) { hub in
            let floor = try await Self.socket(hub.port, try await issuer.hs256(patterns: ["line:Line-2:*"]))
            let auditor = try await Self.socket(hub.port, try await issuer.hs256(patterns: ["line:Line-2:*"], see: ["audit", "pii", "financial"]))
            for socket in [floor, auditor] { _ = try await socket.subscribe(["line:Line-2:*"]) }
            let reply = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data("[\(Self.operatorWithPII),\(Self.allocation),\(Self.material)]".utf8),
                headers: ["Authorization": "Bearer \(Self.plantKey)"])
            #expect(reply.status == 202, "\(reply.text)")

            // Redis expires a key when its expiry cycle samples it, or the sweeper finds it (every 5 s ±25 %): the
            // notices can come seconds after the live events, so waiting is bound by one deadline, not a gap.
            func staleNotices(_ socket: TestSocket, until expected: Set<String>, within window: Duration) async -> [String: JSONValue] {
                var byType: [String: JSONValue] = [:]
                let deadline = ContinuousClock.now + window
                while !expected.isSubset(of: Set(byType.keys)), ContinuousClock.now < deadline,
                    let event = try? await socket.nextEvent(timeout: deadline - ContinuousClock.now)
                {
                    if event["event_type"] == .string("status_stale"), let type = event["entity_type"]?.stringValue {
                        byType[type] = event["data"]?["last_state"]?["data"] ?? .null
                    }
                }
                return byType
            }
            // The auditor first: once it holds all three notices, the floor's (sent in the same fan-out) are queued.
            let auditorSaw = await staleNotices(auditor, until: ["operator", "material", "allocation"], within: .seconds(30))
            #expect(Set(auditorSaw.keys) == ["operator", "material", "allocation"], "\(auditorSaw)")
            #expect(auditorSaw["operator"]?["name"] == .string("John Doe"))
            #expect(auditorSaw["material"]?["unit_cost"] == .number(12.5))
            var floorSaw = await staleNotices(floor, until: ["operator", "material"], within: .seconds(10))
            floorSaw.merge(await staleNotices(floor, until: ["allocation"], within: .seconds(1))) { first, _ in first }
            #expect(Set(floorSaw.keys) == ["operator", "material"], "\(floorSaw)")
            #expect(floorSaw["operator"] == .object(["current_status": .string("available"), "location": .string("Zone A")]))
            #expect(floorSaw["material"] == .object(["available_quantity": .number(5)]))
            for socket in [floor, auditor] { _ = await socket.close() }
        }
    }

    /// A live filter was evaluated on the whole event, a replay's and a snapshot's on the reader's view: a floor token
    /// subscribed with `data.name = 'John Doe'` got O-156's events live (learning who O-156 is) and none on replay.
    /// Live delivery now filters the view too.
    @Test func filtersSeeWhatTheirReaderMaySee() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try Self.secured(issuer)) { hub in
            let filtered = #"{"op":"subscribe","id":"f","channels":["line:Line-2:*"],"filter":"data.name = 'John Doe'"}"#
            let floor = try await Self.socket(hub.port, try await issuer.hs256(patterns: ["line:Line-2:*"]))
            let hr = try await Self.socket(hub.port, try await issuer.hs256(patterns: ["line:Line-2:*"], see: ["pii"]))
            for socket in [floor, hr] {
                socket.send(filtered)
                #expect(try await socket.next()["op"] == .string("subscribed"))
            }
            let reply = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data(Self.operatorWithPII.utf8), headers: ["Authorization": "Bearer \(Self.plantKey)"])
            #expect(reply.status == 202, "\(reply.text)")
            #expect(try await hr.nextEvent()["data"]?["name"] == .string("John Doe"))
            let leaked = try? await floor.nextEvent(timeout: .milliseconds(800))
            #expect(leaked == nil, "\(leaked ?? [:])")
            for socket in [floor, hr] { _ = await socket.close() }
        }
    }

    /// Seed 003 §12.2 erases an operator's phone and photo_url with the name and email (GDPR): §3.1's cached operator
    /// document carries photo_url, and both reached every token until the catalog restricted them.
    @Test func anOperatorsPhoneAndPhotoReachOnlyTokensWithPII() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try Self.secured(issuer)) { hub in
            let event = #"{"event_type":"resource_status_changed","entity_type":"operator","entity_id":"O-156","line":"Line-2","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"available","phone":"+1 555 0100","photo_url":"https://cdn.mraos.com/operators/O-156.jpg","location":"Zone A"},"metadata":{"source":"tna","triggered_by":"badge"}}"#
            let reply = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data(event.utf8), headers: ["Authorization": "Bearer \(Self.plantKey)"])
            #expect(reply.status == 202, "\(reply.text)")
            let floor = try await Self.get(hub.port, "/v1/state/operator/O-156", try await issuer.hs256(patterns: ["line:Line-2:*"]))
            #expect(floor.json["data"] == .object(["current_status": .string("available"), "location": .string("Zone A")]), "\(floor.text)")
            let hr = try await Self.get(hub.port, "/v1/state/operator/O-156", try await issuer.hs256(patterns: ["line:Line-2:*"], see: ["pii"]))
            #expect(hr.json["data"]?["phone"] == .string("+1 555 0100"))
            #expect(hr.json["data"]?["photo_url"] == .string("https://cdn.mraos.com/operators/O-156.jpg"))

            // Seed 000's batch names its operator ("Mike Johnson"): the same personal information.
            let batch = #"{"event_type":"production_batch_recorded","entity_type":"production_batch","entity_id":"BATCH-2025-1003-001","line":"Line-2","timestamp":"2025-10-03T14:00:00Z","data":{"machine_id":"CNC-001","order_id":"ORD-1001","operator":"Mike Johnson","serial_range":{"start":1000,"end":1424},"materials_consumed":[{"material_id":"MAT-001","lot_number":"LOT-2025-001"}]},"metadata":{"source":"mes","triggered_by":"batch_close"}}"#
            #expect(try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data(batch.utf8), headers: ["Authorization": "Bearer \(Self.plantKey)"]).status == 202)
            let floorBatch = try await Self.get(hub.port, "/v1/state/production_batch/BATCH-2025-1003-001", try await issuer.hs256(patterns: ["line:Line-2:*"]))
            #expect(floorBatch.status == 200 && floorBatch.json["data"]?["operator"] == nil, "\(floorBatch.text)")
            let hrBatch = try await Self.get(
                hub.port, "/v1/state/production_batch/BATCH-2025-1003-001", try await issuer.hs256(patterns: ["line:Line-2:*"], see: ["pii"]))
            #expect(hrBatch.json["data"]?["operator"] == .string("Mike Johnson"))
        }
    }

    /// A filter judges the event its reader gets: on the whole event, a filter on a field the token may not see
    /// let the redacted event through only when the hidden value matched, telling the token the value.
    @Test(arguments: EngineKind.allCases)
    func filtersCannotProbeFieldsTheTokenMayNotSee(engine: EngineKind) async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: engine, configure: try Self.secured(issuer)) { hub in
            let floor = try await issuer.hs256(patterns: ["operator:*"])
            let hr = try await issuer.hs256(patterns: ["operator:*"], see: ["pii"])
            func probe(_ token: String, _ filter: String) async throws -> TestSocket {
                let socket = try await Self.socket(hub.port, token)
                socket.send(#"{"op":"subscribe","id":"f","channels":["operator:*"],"filter":"\#(filter)"}"#)
                #expect(try await socket.next()["op"] == .string("subscribed"))
                return socket
            }
            let guessRight = try await probe(floor, "data.email = 'jd@plant.example'")
            let guessPresent = try await probe(floor, "data.name exists")
            let guessWrong = try await probe(floor, "data.email != 'jd@plant.example'")
            let hrRight = try await probe(hr, "data.email = 'jd@plant.example'")
            let reply = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data(Self.operatorWithPII.utf8),
                headers: ["Authorization": "Bearer \(Self.plantKey)"])
            #expect(reply.status == 202, "\(reply.text)")
            // The floor's filters see no email and no name: a guess of the value or of its presence admits nothing,
            // and its negation admits the event (without the field).
            #expect(try await hrRight.nextEvent()["data"]?["email"] == .string("jd@plant.example"))
            let negated = try await guessWrong.nextEvent()
            #expect(negated["entity_id"] == .string("O-156") && negated["data"]?["email"] == nil)
            for socket in [guessRight, guessPresent] {
                let leaked = try? await socket.nextEvent(timeout: .milliseconds(800))
                #expect(leaked == nil, "a filter on a hidden field admitted \(String(describing: leaked))")
            }
            for socket in [guessRight, guessPresent, guessWrong, hrRight] { _ = await socket.close() }
        }
    }

    /// A renewed token's claims apply from then on.
    @Test func authWithNewClaimsChangesWhatArrives() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try Self.secured(issuer)) { hub in
            let socket = try await Self.socket(hub.port, try await issuer.hs256(patterns: ["operator:*"]))
            _ = try await socket.subscribe(["operator:*"])
            func post() async throws {
                _ = try await HTTP.request(
                    "POST", port: hub.port, "/v1/events", body: Data(Self.operatorWithPII.utf8),
                    headers: ["Authorization": "Bearer \(Self.plantKey)"])
            }
            try await post()
            #expect(try await socket.nextEvent()["data"]?["name"] == nil)
            let renewed = try await issuer.hs256(patterns: ["operator:*"], see: ["pii"])
            socket.send(#"{"op":"auth","id":"a","token":"\#(renewed)"}"#)
            #expect(try await socket.next()["op"] == .string("authenticated"))
            try await post()
            #expect(try await socket.nextEvent()["data"]?["name"] == .string("John Doe"))
            _ = await socket.close()
        }
    }
}
