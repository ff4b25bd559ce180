import Foundation
@testable import StatusHubCore
import Testing

/// Seed 003 §4.2's live counters and active allocations, kept by the engines from the cached previous state: on the
/// memory engine, one Redis, and three redis-servers holding three partitions (each keeps its share, the hub sums).
@Suite("Live counters and active allocations")
struct TallyTests {
    @Test(arguments: ContractEngine.allCases)
    func countersFollowStatesLinesAndLateEvents(engine: ContractEngine) async throws {
        try await withHub(on: engine) { hub in
            let socket = try await TestSocket(port: hub.port)
            _ = try await socket.subscribe(["line:Line-2:counters:*"])
            func post(_ id: String, _ status: String, line: String = "Line-2", at second: Int) async throws -> String? {
                let reply = try await HTTP.post(port: hub.port, event: Self.machine(id, status, line: line, at: second))
                #expect(reply.status == 202, "\(reply.text)")
                return reply.json["accepted"]?.arrayValue?.first?["event_id"]?.stringValue
            }
            func nextCount() async throws -> (value: Double?, cause: String?) {
                let event = try await socket.nextEvent()
                #expect(event["event_type"] == .string("counter_changed"))
                #expect(event["entity_id"] == .string("Line-2.machines_running"))
                return (event["data"]?["value"]?.numberValue, event["metadata"]?["triggered_by"]?.stringValue)
            }
            let first = try await post("M-1", "running", at: 10)
            let one = try await nextCount()
            #expect(one.value == 1)
            #expect(one.cause == first)
            _ = try await post("M-2", "running", at: 10)
            #expect(try await nextCount().value == 2)
            // The same status again counts nothing; the publisher's previous_status is not consulted.
            _ = try await post("M-2", "running", at: 11)
            _ = try await post("M-1", "breakdown", at: 12)
            #expect(try await nextCount().value == 1)
            // A late "running" for M-1 is older than its breakdown: no change.
            _ = try await post("M-1", "running", at: 5)
            // M-2 moves to Line-3: Line-2 loses it.
            _ = try await post("M-2", "running", line: "Line-3", at: 13)
            #expect(try await nextCount().value == 0)
            #expect(await socket.drain(for: .milliseconds(300)).isEmpty)

            let line2 = try await HTTP.get(port: hub.port, "/v1/counters?line=Line-2")
            #expect(line2.status == 200)
            let counters = line2.json["counters"]?.arrayValue ?? []
            #expect(counters.first { $0["name"] == .string("machines_running") }?["value"] == .number(0), "\(line2.text)")
            #expect(counters.first?["key"] == .string("stats:line:Line-2:machines_running"))
            let all = try await HTTP.get(port: hub.port, "/v1/counters")
            let line3 = (all.json["counters"]?.arrayValue ?? []).first { $0["key"] == .string("stats:line:Line-3:machines_running") }
            #expect(line3?["value"] == .number(1), "\(all.text)")
            // A line's snapshot carries its counters.
            let watcher = try await TestSocket(port: hub.port)
            let snapshot = try await watcher.subscribe(["line:Line-3:*"], snapshot: true)
            #expect(snapshot.contains { $0["event_type"] == .string("counter_changed") && $0["data"]?["value"] == .number(1) })
            #expect(try await HTTP.get(port: hub.port, "/v1/counters?line=bad%20line").status == 400)
            _ = await socket.close()
            _ = await watcher.close()
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func aStateGoneStaleLeavesItsCounters(engine: ContractEngine) async throws {
        try await withHub(on: engine, configure: { $0.cacheTTL.overrides["machine"] = 1 }) { hub in
            let socket = try await TestSocket(port: hub.port)
            _ = try await socket.subscribe(["counters", "machine:*"])
            _ = try await HTTP.post(port: hub.port, event: Self.machine("M-7", "running", line: "Line-9", at: 1))
            var values: [Double] = []
            var staleID: String?
            var cause: String?
            while values.count < 2 {
                let event = try await socket.nextEvent(timeout: .seconds(20))
                if event["event_type"] == .string("status_stale") { staleID = event["event_id"]?.stringValue }
                if event["event_type"] == .string("counter_changed") {
                    values.append(event["data"]?["value"]?.numberValue ?? -1)
                    cause = event["metadata"]?["triggered_by"]?.stringValue
                }
            }
            #expect(values == [1, 0])
            #expect(cause == staleID)
            _ = await socket.close()
        }
    }

    @Test(arguments: ContractEngine.allCases)
    func allocationsJoinAndLeaveTheirOwnersSets(engine: ContractEngine) async throws {
        try await withHub(on: engine) { hub in
            func post(_ change: String, operator op: String?, machine: String?, at second: Int) async throws {
                let reply = try await HTTP.post(port: hub.port, event: Self.allocation("A-1", change, operator: op, machine: machine, workOrder: "WO-1", at: second))
                #expect(reply.status == 202, "\(reply.text)")
            }
            func members(_ query: String) async throws -> [String] {
                let reply = try await HTTP.get(port: hub.port, "/v1/allocations/active?\(query)")
                #expect(reply.status == 200, "\(reply.text)")
                return reply.json["allocation_ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
            }
            try await post("created", operator: "O-1", machine: "M-1", at: 1)
            #expect(try await members("operator=O-1") == ["A-1"])
            #expect(try await members("machine=M-1") == ["A-1"])
            #expect(try await members("workorder=WO-1") == ["A-1"])
            try await post("reassigned", operator: "O-2", machine: "M-1", at: 2)
            #expect(try await members("operator=O-1") == [])
            #expect(try await members("operator=O-2") == ["A-1"])
            try await post("paused", operator: "O-2", machine: "M-1", at: 3)
            #expect(try await members("operator=O-2") == ["A-1"])
            // Late: the created event from before the reassignment changes nothing.
            try await post("created", operator: "O-1", machine: "M-1", at: 0)
            #expect(try await members("operator=O-1") == [])
            try await post("completed", operator: "O-2", machine: "M-1", at: 4)
            #expect(try await members("operator=O-2") == [])
            #expect(try await members("machine=M-1") == [])
            let reply = try await HTTP.get(port: hub.port, "/v1/allocations/active?operator=O-1&machine=M-1")
            #expect(reply.status == 400)
            #expect(reply.text.contains("operator=<id>"), "\(reply.text)")
        }
    }

    /// 10,000 events in a random order over two nodes (one on the memory engine; on three shards, every line's
    /// machines spread over the partitions): afterwards every counter and set equals a recount from the cached states.
    @Test(arguments: ContractEngine.allCases)
    func randomizedRunLeavesEveryTallyEqualToARecount(engine: ContractEngine) async throws {
        var generator = SystemRandomNumberGenerator()
        let lines = ["L-1", "L-2", "L-3", "L-4"]
        let machineStatuses = ["running", "idle", "maintenance", "breakdown", "offline"]
        let operatorStatuses = ["available", "busy", "break", "absent"]
        let changes = ["created", "reassigned", "paused", "resumed", "released", "completed"]
        var events: [String] = []
        for index in 0..<10_000 {
            let second = Int.random(in: 0..<100_000, using: &generator)
            switch index % 3 {
            case 0:
                events.append(Self.machine(
                    "M-\(Int.random(in: 0..<60, using: &generator))", machineStatuses.randomElement(using: &generator)!,
                    line: lines.randomElement(using: &generator)!, at: second))
            case 1:
                events.append(Self.operatorStatus(
                    "O-\(Int.random(in: 0..<50, using: &generator))", operatorStatuses.randomElement(using: &generator)!,
                    line: lines.randomElement(using: &generator)!, at: second))
            default:
                events.append(Self.allocation(
                    "A-\(Int.random(in: 0..<80, using: &generator))", changes.randomElement(using: &generator)!,
                    operator: "O-\(Int.random(in: 0..<10, using: &generator))", machine: "M-\(Int.random(in: 0..<10, using: &generator))",
                    workOrder: "WO-\(Int.random(in: 0..<5, using: &generator))", at: second))
            }
        }
        try await withNodes(on: engine) { ports in
            let batches = stride(from: 0, to: events.count, by: 50).map { Array(events[$0..<min($0 + 50, events.count)]) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, batch) in batches.enumerated() {
                    let port = ports[index % ports.count]
                    group.addTask {
                        let reply = try await HTTP.post(port: port, events: batch)
                        #expect(reply.status == 202, "\(reply.text.prefix(300))")
                    }
                    if index % 4 == 3 { try await group.waitForAll() }
                }
                try await group.waitForAll()
            }
            let port = ports.last!
            func states(_ pattern: String) async throws -> [JSONValue] {
                try await HTTP.get(port: port, "/v1/state?pattern=\(pattern)").json["events"]?.arrayValue ?? []
            }
            let counters = try await HTTP.get(port: port, "/v1/counters").json["counters"]?.arrayValue ?? []
            func counter(_ key: String) -> Double {
                counters.first { $0["key"]?.stringValue == key }?["value"]?.numberValue ?? 0
            }
            let machines = try await states("machine:*")
            let operators = try await states("operator:*")
            #expect(machines.count == 60)
            for line in lines {
                let running = machines.filter { $0["line"]?.stringValue == line && $0["data"]?["current_status"] == .string("running") }.count
                #expect(counter("stats:line:\(line):machines_running") == Double(running), "\(line) machines")
                let available = operators.filter { $0["line"]?.stringValue == line && $0["data"]?["current_status"] == .string("available") }.count
                #expect(counter("stats:line:\(line):operators_available") == Double(available), "\(line) operators")
            }
            let available = operators.filter { $0["data"]?["current_status"] == .string("available") }.count
            let shift = counters.first { $0["name"] == .string("operators_available") }
            #expect(shift?["value"]?.numberValue == Double(available), "shift counter \(String(describing: shift))")

            var expected: [String: Set<String>] = [:]
            for allocation in try await states("allocation:*") {
                guard let change = allocation["data"]?["change_type"]?.stringValue, change != "released", change != "completed",
                    let id = allocation["entity_id"]?.stringValue, let data = allocation["data"]
                else { continue }
                if let owner = data["operator_id"]?.stringValue { expected["operator=\(owner)", default: []].insert(id) }
                if let owner = data["machine_id"]?.stringValue { expected["machine=\(owner)", default: []].insert(id) }
                if let owner = data["work_order_id"]?.stringValue { expected["workorder=\(owner)", default: []].insert(id) }
            }
            let queries = (0..<10).flatMap { ["operator=O-\($0)", "machine=M-\($0)"] } + (0..<5).map { "workorder=WO-\($0)" }
            for query in queries {
                let members = try await HTTP.get(port: port, "/v1/allocations/active?\(query)").json["allocation_ids"]?.arrayValue?
                    .compactMap(\.stringValue) ?? []
                #expect(Set(members) == expected[query] ?? [], "\(query)")
            }
        }
    }

    static func stamp(_ second: Int) -> String {
        Timestamps.format(Date(timeIntervalSince1970: 1_748_772_000 + Double(second)))
    }

    static func machine(_ id: String, _ status: String, line: String, at second: Int) -> String {
        #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"\#(id)","line":"\#(line)","timestamp":"\#(stamp(second))","data":{"current_status":"\#(status)"},"metadata":{"source":"mes","triggered_by":"test"}}"#
    }

    static func operatorStatus(_ id: String, _ status: String, line: String, at second: Int) -> String {
        #"{"event_type":"resource_status_changed","entity_type":"operator","entity_id":"\#(id)","line":"\#(line)","timestamp":"\#(stamp(second))","data":{"current_status":"\#(status)"},"metadata":{"source":"tna","triggered_by":"test"}}"#
    }

    static func allocation(_ id: String, _ change: String, operator op: String?, machine: String?, workOrder: String, at second: Int) -> String {
        var data = [#""change_type":"\#(change)""#, #""work_order_id":"\#(workOrder)""#]
        if let op { data.append(#""operator_id":"\#(op)""#) }
        if let machine { data.append(#""machine_id":"\#(machine)""#) }
        return #"{"event_type":"allocation_changed","entity_type":"allocation","entity_id":"\#(id)","line":"Line-2","timestamp":"\#(stamp(second))","data":{\#(data.joined(separator: ","))},"metadata":{"source":"mes","triggered_by":"test"}}"#
    }
}

@Suite("Tallies in the catalog, shifts in the config")
struct TallyCatalogTests {
    static let events = """
          status_changed:
            category: quality
            carries_state: true
            entity_types: [machine]
            data: {current_status: {type: status, required: true}}
        """

    static func refusal(_ tallies: String) -> String? {
        do {
            _ = try CatalogLoader.load(sources: [
                ("a.yaml", """
                entity_types:
                  machine: {cache_key: "resource:machine:{id}", ttl_seconds: 300, status: [running, idle]}
                categories:
                  quality: {}
                event_types:
                \(events)
                """), ("b.yaml", tallies),
            ])
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func badTalliesAreRefusedWithTheirKeyPath() {
        #expect(Self.refusal("counters:\n  up:\n    key: \"stats:{line}:up\"\n    entity_type: robot\n    when: {current_status: [running]}\n")?
            .contains("counters.up.entity_type: unknown entity type 'robot'") == true)
        #expect(Self.refusal("counters:\n  up:\n    key: \"stats:{line}:{shift}\"\n    entity_type: machine\n    when: {current_status: [running]}\n")?
            .contains("per line or per shift") == true)
        #expect(Self.refusal("counters:\n  up:\n    key: \"stats:{line}:up\"\n    entity_type: machine\n")?.contains("when is required") == true)
        #expect(Self.refusal("active_sets:\n  mine:\n    keys: [\"m:{owner}:active\"]\n    entity_type: machine\n")?.contains("until is required") == true)
        #expect(Self.refusal("counters:\n  up:\n    key: \"stats:{line}:up\"\n    entity_type: machine\n    when: {current_status: [running]}\n    ttl: 3\n")?
            .contains("unknown key") == true)
        #expect(Self.refusal("counters:\n  up:\n    key: \"stats:{line}:up\"\n    entity_type: machine\n    when: {current_status: [running]}\n") == nil)
    }

    @Test func theShiftInEffectAndItsEnd() throws {
        var shifts = HubConfig.Shifts()
        shifts.utcOffset = "+01:00"
        let schedule = try ShiftSchedule(shifts)
        func at(_ text: String) -> ShiftSchedule.Current { schedule.current(at: Timestamps.parse(text)!) }
        // 05:30 local is still yesterday's night shift C, which ends at 06:00 local.
        #expect(at("2026-11-30T04:30:00Z") == .init(id: "2026-11-29.C", endsAt: Timestamps.parse("2026-11-30T05:00:00Z")!))
        #expect(at("2026-11-30T13:30:00Z") == .init(id: "2026-11-30.B", endsAt: Timestamps.parse("2026-11-30T21:00:00Z")!))
        #expect(at("2026-11-30T21:00:00Z").id == "2026-11-30.C")
        shifts.schedule = ["A 06:00", "A 14:00"]
        #expect(throws: ConfigError.self) { try ShiftSchedule(shifts) }
        #expect(throws: ConfigError.self) { _ = try HubConfig.load(yaml: "shifts:\n  utc_offset: \"1h\"\n") }
    }
}

@Suite("Counter events from their templates")
struct CounterTemplateTests {
    static func descriptor(template: String) -> CounterDescriptor {
        CounterDescriptor(
            key: "stats:line:L1:up", shiftCopy: nil, ttlSeconds: nil, entityKey: "counter:L1.up", entityID: "L1.up", line: "L1",
            tenant: "default", channels: ["counters"], indexes: [], bodyTemplate: template)
    }

    /// Filled as the append script fills it (`gsub('{(%a+)}', vars)`): every placeholder in one pass, unknown names and
    /// a brace that opens nothing left alone, and a value that itself looks like a placeholder not filled again.
    @Test func placeholdersAreFilledOnceAsTheScriptFillsThem() {
        let body = Self.descriptor(template: #""value":{value},"cause":"{cause}","at":"{now}","seen":"{now}","shift":"{shift}","x":"{other}{","y":"{ {value"}"#)
            .body(value: -3, cause: "{now}", now: "2026-12-01T18:00:00Z", shift: "A")
        #expect(String(decoding: body, as: UTF8.self)
            == #""value":-3,"cause":"{now}","at":"2026-12-01T18:00:00Z","seen":"2026-12-01T18:00:00Z","shift":"A","x":"{other}{","y":"{ {value"}"#)
        #expect(Self.descriptor(template: "").body(value: 1, cause: "c", now: "n", shift: "s").isEmpty)
        #expect(String(decoding: Self.descriptor(template: "{value}").body(value: 12, cause: "", now: "", shift: ""), as: UTF8.self) == "12")
    }
}
