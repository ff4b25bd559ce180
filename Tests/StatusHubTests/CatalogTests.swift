import Foundation
import StatusHubCore
import Testing

@Suite("Event catalog")
struct CatalogTests {
    /// A one-file catalog around `events` (YAML under `event_types:`), with two entity types and one category.
    static func catalog(_ events: String, entities: String? = nil, categories: String? = nil) throws -> Catalog {
        let text = """
            entity_types:
            \(entities ?? """
                machine: {cache_key: "resource:machine:{id}", ttl_seconds: 300, status: [running, idle]}
                lot: {cache_key: "lot:{id}", ttl_seconds: 600}
            """)
            categories:
            \(categories ?? "  quality: {}\n  unused: {}")
            event_types:
            \(events)
            """
        return try CatalogLoader.load(sources: [(path: "plant.yaml", text: text)])
    }

    static func refusal(_ events: String, entities: String? = nil, categories: String? = nil) -> CatalogError? {
        do {
            _ = try catalog(events, entities: entities, categories: categories)
            return nil
        } catch let error as CatalogError {
            return error
        } catch {
            Issue.record("not a CatalogError: \(error)")
            return nil
        }
    }

    /// Expects the catalog around `events` (and `entities`) refused at `path`, with a reason containing `reason`.
    static func expectRefused(
        _ events: String, entities: String? = nil, at path: String, because reason: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let error = refusal(events, entities: entities)
        #expect(error?.path == path, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.reason.contains(reason) == true, "\(String(describing: error))", sourceLocation: sourceLocation)
    }

    @Test func shippedCatalogLoadsAndKeepsSeed003Layout() throws {
        let catalog = try CatalogLoader.load(directory: "config/catalog")
        #expect(catalog == Catalog.standard)
        #expect(catalog.entityType(named: "machine")?.cacheKey(entityID: "M-1") == "resource:machine:M-1")
        #expect(catalog.entityType(named: "work_order")?.cacheKey(entityID: "WO-1") == "workorder:WO-1")
        #expect(catalog.entityType(named: "allocation")?.cacheKey(entityID: "A-1") == "allocation:A-1")
        // Seed 003 §4.3's report rates, not §4.2's cache TTLs, bound staleness: operators report on change only (a
        // TTL had every operator stale, and none counted available, five minutes after their last change), materials
        // every 5 minutes (120 s went stale between reports).
        #expect(catalog.entityType(named: "operator")?.definition.ttlSeconds == 0)
        #expect(catalog.entityType(named: "material")?.definition.ttlSeconds == 600)
        #expect(catalog.entityType(named: "machine")?.definition.ttlSeconds == 300)
        #expect(catalog.entityType(named: "allocation")?.definition.ttlSeconds == 43200, "on change, about a shift long")
        #expect(catalog.entityType(named: "kpi")?.definition.ttlSeconds == 43200, "recalculated as entries come in, not every 5 minutes")
        #expect(catalog.eventType(named: "status_stale")?.isPublishable == false)
        #expect(catalog.publishableEventType(named: "status_stale") == nil)
    }

    /// Which states a reader that is behind may skip is the catalog's to say (`conflates` on a category), not code's.
    @Test func conflationIsTheCategorysToSay() throws {
        #expect(Catalog.standard.conflatingCategories == ["resource-status", "work-order-progress", "kpi", "counters"])
        let catalog = try Self.catalog("""
              lot_inspected: {category: quality, carries_state: true, entity_types: [lot]}
              lot_flagged: {category: quality, entity_types: [lot]}
              machine_seen: {category: unused, carries_state: true, entity_types: [machine]}
            """, categories: "  quality: {conflates: true}\n  unused: {conflates: false}")
        func validated(_ type: String, _ entity: String, tenant: String = Tenant.defaultName) throws -> ValidatedEvent {
            let json = #"{"event_type":"\#(type)","entity_type":"\#(entity)","entity_id":"E-1","timestamp":"2025-11-18T14:23:45Z","data":{},"metadata":{"source":"mes","triggered_by":"system"}}"#
            let value = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
            switch EventValidator(catalog: catalog).validate(value, receivedAt: Date(), tenant: tenant) {
            case .valid(let event): return event
            case .invalid(let problems): throw CatalogError(file: "test", path: type, reason: "sample refused: \(problems)")
            }
        }
        func stored(_ type: String, _ entity: String, tenant: String = Tenant.defaultName) throws -> StoredEvent {
            StoredEvent(id: try #require(EventID("1-0")), validated: try validated(type, entity, tenant: tenant), statusSince: nil)
        }
        #expect(catalog.conflationKey(of: try stored("lot_inspected", "lot")) == "lot:E-1")
        #expect(catalog.conflationKey(of: try stored("lot_inspected", "lot", tenant: "acme")) == "@acme:lot:E-1")
        #expect(catalog.conflationKey(of: try stored("lot_flagged", "lot")) == nil, "news never conflates")
        // A state stored late or held is news too (docs/protocol.md, *Slow readers*): it must not replace a queued
        // current state for a reader that is behind.
        let id = try #require(EventID("2-0"))
        #expect(catalog.conflationKey(of: StoredEvent(id: id, lateEvent: try validated("lot_inspected", "lot"))) == nil)
        #expect(catalog.conflationKey(of: StoredEvent(id: id, heldEvent: try validated("lot_inspected", "lot"))) == nil)
        #expect(catalog.conflationKey(of: try stored("machine_seen", "machine")) == nil)
        let served = catalog.json(ttlSeconds: { _ in 0 })["categories"]?.arrayValue?.map { $0["conflates"] }
        #expect(served == [.bool(true), nil], "GET /v1/catalog says so for the categories that conflate")
        let refused = Self.refusal("  lot_flagged: {category: quality, entity_types: [lot]}", categories: "  quality: {conflates: sometimes}")
        #expect(refused?.description.contains("conflates") == true, "\(String(describing: refused))")
    }

    @Test func aPlantTypeNeedsNoRebuild() throws {
        let catalog = try Self.catalog("""
              lot_inspected:
                category: quality
                carries_state: true
                entity_types: [lot]
                line: required
                data:
                  result: {enum: [pass, fail], required: true}
                  samples:
                    type: array
                    min_items: 1
                    items: {type: object, fields: {id: {type: string, required: true}, value: {type: number, min: 0}}}
                  inspected: {type: integer, min: 1}
                  inspector: {type: string, min_length: 2, max_length: 8}
                  at: {type: timestamp}
                  signed: {type: boolean}
            """)
        let validator = EventValidator(catalog: catalog)
        func errors(_ data: String, line: String? = #""line":"L-1","#) -> [FieldError] {
            let json = #"{"event_type":"lot_inspected","entity_type":"lot","entity_id":"LOT-1",\#(line ?? "")"timestamp":"2025-11-18T14:23:45Z","data":\#(data),"metadata":{"source":"qms","triggered_by":"user"}}"#
            switch validator.validate(try! JSONValue.parse(Array(json.utf8)), receivedAt: Date()) {
            case .valid(let event):
                #expect(event.entityKey == "lot:LOT-1" && event.channels.first == "quality" && event.carriesState)
                return []
            case .invalid(let errors): return errors
            }
        }
        #expect(errors(#"{"result":"pass","samples":[{"id":"s1","value":2}],"inspected":3,"inspector":"ann","at":"2025-11-18T14:00:00Z","signed":true}"#).isEmpty)
        #expect(errors(#"{"result":"pass"}"#, line: nil).map(\.field) == ["line"])
        #expect(errors(#"{"result":"maybe"}"#).first?.reason == "unknown value 'maybe'; allowed: pass, fail")
        #expect(errors(#"{"result":"pass","samples":[]}"#).map(\.field) == ["data.samples"])
        #expect(errors(#"{"result":"pass","samples":[{"value":-1}]}"#).map(\.field) == ["data.samples[0].id", "data.samples[0].value"])
        #expect(errors(#"{"result":"pass","inspected":1.5,"inspector":"a","at":"noon","signed":"yes"}"#).map(\.field)
            == ["data.inspected", "data.inspector", "data.at", "data.signed"])
        #expect(errors(#"{"result":"pass","inspector":"abcdefghi"}"#).first?.reason == "must be a string of 2-8 characters (got 9)")
    }

    @Test func commonMistakesNameFileKeyAndReason() {
        let good = "  ok: {category: quality, entity_types: [lot]}\n"
        let cases: [(String, String?, String?, String, String)] = [
            (good + "  bad: {category: quality, entity_types: [lot], rules: [{greater_than: [a, b]}]}", nil, nil,
                "event_types.bad.rules[0].greater_than", "unknown rule 'greater_than'"),
            (good + "  bad: {category: quality, entity_types: [lot], data: {grade: {enum: []}}}", nil, nil,
                "event_types.bad.data.grade.enum", "an enum needs at least one value"),
            (good + "  bad: {category: quality, entity_types: [robot]}", nil, nil,
                "event_types.bad.entity_types[0]", "unknown entity type 'robot'"),
            (good + "  bad: {entity_types: [lot]}", nil, nil, "event_types.bad", "category is required"),
            (good + "  bad: {category: kpi, entity_types: [lot]}", nil, nil, "event_types.bad.category", "unknown category 'kpi'"),
            // Within a file the YAML parser refuses the repeated key itself, naming it (across files: below).
            (good + "  ok: {category: quality, entity_types: [lot]}", nil, nil, "", "duplicated key(s): 'ok'"),
            (good + "  bad: {category: quality, entity_types: [lot], data: {x: {type: colour}}}", nil, nil,
                "event_types.bad.data.x.type", "unknown type 'colour'"),
            (good + "  bad: {category: quality, entity_types: [lot], data: {x: {type: status}}}", nil, nil,
                "event_types.bad.data.x.type", "entity type 'lot' declares none"),
            (good + "  status_stale: {category: quality, entity_types: [lot]}", nil, nil, "event_types.status_stale", "the hub's own"),
            (good, "  lot: {cache_key: \"lot:{id}\"}", nil, "entity_types.lot", "ttl_seconds is required"),
            (good, "  lot: {cache_key: \"lot:{id}\", ttl_seconds: 1}\n  lot2: {cache_key: \"lot:x:{id}\", ttl_seconds: 1}", nil,
                "entity_types.lot2.cache_key", "overlaps the cache keys of entity type 'lot'"),
            (good, "  lot: {cache_key: \"lot:{id}:x\", ttl_seconds: 1}", nil, "entity_types.lot.cache_key", "ending in {id}"),
            (good + "  bad: {category: quality, entity_types: [lot], colour: red}", nil, nil, "event_types.bad.colour", "unknown key 'colour'"),
        ]
        for (events, entities, categories, path, reason) in cases {
            let error = Self.refusal(events, entities: entities, categories: categories)
            #expect(error?.file == "plant.yaml", "\(path)")
            #expect(error?.path == path, "\(String(describing: error))")
            #expect(error?.reason.contains(reason) == true, "\(String(describing: error))")
            if !path.isEmpty { #expect(error?.line != nil) }
        }
        // A category no event type uses is fine (the default `unused` above).
        #expect(Self.refusal(good) == nil)
    }

    /// `feed` (the alert feed's types and severities, served for dashboards): what it may name is checked on load.
    @Test func aFeedNamesDeclaredFieldsValuesAndLevels() throws {
        let head = "  bad: {category: quality, entity_types: [machine, lot], data: {grade: {enum: [A, B]}, state: {type: string}}, "
        let cases: [(String, String, String)] = [
            ("feed: {severity: urgent}}", "event_types.bad.feed.severity", "'urgent' is not a severity; one of info, low, medium, high, critical"),
            ("feed: {from: grade}}", "event_types.bad.feed.from", "names a field of data"),
            ("feed: {from: data.colour}}", "event_types.bad.feed.from", "'data.colour', which data does not declare"),
            ("feed: {from: data.grade, values: {C: high}}}", "event_types.bad.feed.values.C", "'C' is not a value of data.grade (A, B)"),
            ("feed: {from: data.grade, values: {A: severe}}}", "event_types.bad.feed.values.A", "'severe' is not a severity"),
            ("feed: {values: {A: high}}}", "event_types.bad.feed.values", "add from"),
            ("feed: {level: high}}", "event_types.bad.feed.level", "unknown key 'level'"),
        ]
        for (feed, path, reason) in cases { Self.expectRefused(head + feed, at: path, because: reason) }
        // A status field takes its entity types' statuses; a free-text field any value; and the declaration is
        // served as written, for dashboards.
        let catalog = try Self.catalog("""
              ok: {category: quality, entity_types: [machine], data: {current_status: {type: status}, note: {type: string}},
                   feed: {from: data.current_status, values: {idle: medium}, severity: low}}
              free: {category: quality, entity_types: [lot], data: {note: {type: string}}, feed: {from: data.note, values: {anything: high}}}
            """)
        #expect(Self.refusal("  bad: {category: quality, entity_types: [machine], data: {current_status: {type: status}}, feed: {from: data.current_status, values: {broken: high}}}")?
            .reason.contains("'broken' is not a value of data.current_status (running, idle)") == true)
        guard case .array(let types)? = catalog.json(ttlSeconds: { _ in 0 })["event_types"] else {
            Issue.record("GET /v1/catalog's shape has no event_types list")
            return
        }
        let served = try #require(types.first { $0["name"] == .string("ok") })
        #expect(served["feed"] == .object([
            "from": .string("data.current_status"), "values": .object(["idle": .string("medium")]), "severity": .string("low"),
        ]))
    }

    @Test func duplicateNamesAcrossFilesNameTheFirstFile() {
        let base = try! String(contentsOfFile: "config/catalog/10-resources.yaml", encoding: .utf8)
        let plant = "entity_types:\n  machine: {cache_key: \"machine2:{id}\", ttl_seconds: 5}\n"
        #expect(throws: CatalogError.self) { try CatalogLoader.load(sources: [("a.yaml", base), ("b.yaml", plant)]) }
        do {
            _ = try CatalogLoader.load(sources: [("a.yaml", base), ("b.yaml", plant)])
        } catch let error as CatalogError {
            #expect(error.file == "b.yaml" && error.path == "entity_types.machine" && error.reason.contains("already in a.yaml"))
        } catch {}
    }

    @Test func aBadCatalogStopsTheConfig() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("plant.yaml").path
        try "event_types:\n  x: {entity_types: [machine]}\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            _ = try HubConfig.load(yaml: "catalog:\n  files: [\(file)]\n")
        } throws: { error in
            "\(error)".contains("catalog \(file):2: event_types.x: category is required")
        }
        #expect(throws: ConfigError.self) { _ = try HubConfig.load(yaml: "cache_ttl:\n  robot: 5\n") }
        #expect(try HubConfig.load(yaml: "cache_ttl:\n  material: 5\n").cacheTTL.seconds(for: .material) == 5)
        #expect(try HubConfig.load(yaml: "", environment: ["STATUSHUB_CACHE_TTL_WORK_ORDER": "7"]).cacheTTL.workOrder == 7)
    }

    /// Every event type's own examples (`example_valid`, `example_invalid`), posted over HTTP on both engines:
    /// the valid ones are accepted, each invalid one is refused naming its field.
    @Test(arguments: EngineKind.allCases)
    func catalogExamplesOverHTTP(_ kind: EngineKind) async throws {
        var valid: [String] = []
        var invalid: [(json: String, field: String, type: String)] = []
        for type in Catalog.standard.eventTypes where type.isPublishable {
            #expect(!type.definition.validExamples.isEmpty && !type.definition.invalidExamples.isEmpty, "\(type) has no examples")
            for example in type.definition.validExamples { valid.append(Self.envelope(example, type: type)) }
            for example in type.definition.invalidExamples {
                invalid.append((Self.envelope(example["event"]!, type: type), example["field"]!.stringValue!, type.rawValue))
            }
        }
        try await withHub(engine: kind) { hub in
            let accepted = try await HTTP.post(port: hub.port, events: valid)
            #expect(accepted.status == 202, "\(accepted.text)")
            for (json, field, type) in invalid {
                let refused = try await HTTP.post(port: hub.port, event: json)
                #expect(refused.status == 400, "\(type): \(refused.text)")
                let fields = refused.json["rejected"]?.arrayFirst?["errors"].flatMap { errors -> [String]? in
                    guard case .array(let list) = errors else { return nil }
                    return list.compactMap { $0["field"]?.stringValue }
                }
                #expect(fields?.contains(field) == true, "\(type): expected \(field), got \(refused.text)")
            }
        }
    }

    /// An example as a publisher sends it: `event_type`, `timestamp` and `metadata` filled in where it has none.
    static func envelope(_ example: JSONValue, type: EventType) -> String {
        guard case .object(var members) = example else { return "null" }
        members["event_type"] = members["event_type"] ?? .string(type.rawValue)
        members["timestamp"] = members["timestamp"] ?? .string("2025-11-18T14:23:45.678Z")
        members["metadata"] = members["metadata"] ?? .object(["source": .string("catalog-example"), "triggered_by": .string("test")])
        var bytes: [UInt8] = []
        JSONValue.write(members: members.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
