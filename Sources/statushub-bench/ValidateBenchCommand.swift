import ArgumentParser
import Foundation
import StatusHubCore

@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "statushub-bench",
        abstract: "CPU benchmarks of StatusHubCore, without I/O.",
        subcommands: [ValidateBenchCommand.self, MatchBenchCommand.self]
    )
}

/// `statushub-bench validate`: CPU per event of validation, the catalog-driven `EventValidator` beside the
/// compiled seed 003 rules it replaced (`CompiledValidator`), on the same parsed events of the plant mix, in one
/// process, passes alternating. Before timing, it checks that both answer every event the same (the same
/// accepted bytes and routing, or the same errors).
struct ValidateBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Time event validation: the catalog-driven validator against the compiled seed 003 rules.",
        discussion: """
            Builds --events events of the plant mix (statushub-load --mix plant's proportions of the six seed 003 \
            types), every --invalid-every'th \
            one broken (an unknown status, a negative quantity, an allocation without a resource…), parses them \
            once, checks both validators agree on each, then runs --rounds rounds; each round validates the whole \
            set with each validator, 1,000 events at a time, alternating which goes first, and prints thread CPU \
            nanoseconds per event.

            Example:
              swift build -c release --product statushub-bench
              .build/release/statushub-bench validate --events 100000 --rounds 7
            """
    )

    @Option(help: "Events in the set (the plant mix: 11 machine, 3 operator, 3 work order, 1 material, 1 alert, 1 allocation in 20).")
    var events = 100_000

    @Option(help: "Rounds; each times both validators once over the whole set.")
    var rounds = 5

    @Option(help: "Every Nth event is broken so it is refused (0: all valid).")
    var invalidEvery = 10

    enum Only: String, ExpressibleByArgument {
        case compiled, catalog, neither
    }

    @Option(help: "Run only one validator, --rounds times, without the agreement check: for `perf stat -e instructions` (neither: the set-up alone, to subtract).")
    var only: Only?

    func run() throws {
        let corpus = try Self.corpus(count: events, invalidEvery: invalidEvery)
        let catalog = EventValidator(catalog: .standard)
        let compiled = CompiledValidator()
        let receivedAt = Date(timeIntervalSince1970: 1_763_475_825)
        if let only {
            for _ in 0..<rounds {
                switch only {
                case .compiled: _ = Self.time(corpus[...]) { compiled.validate($0, receivedAt: receivedAt) }
                case .catalog: _ = Self.time(corpus[...]) { catalog.validate($0, receivedAt: receivedAt) }
                case .neither: break
                }
            }
            return
        }
        var refused = 0
        for (index, event) in corpus.enumerated() {
            let new = catalog.validate(event, receivedAt: receivedAt)
            let old = compiled.validate(event, receivedAt: receivedAt)
            guard Self.same(new, old) else {
                throw ValidationError("event \(index): the validators disagree\n catalog: \(new)\n compiled: \(old)")
            }
            if case .invalid = new { refused += 1 }
        }
        print("validate: \(corpus.count) events (\(refused) refused), both validators agree on every one")
        print("round  compiled ns/event  catalog ns/event  catalog/compiled")
        var ratios: [Double] = []
        for round in 1...rounds {
            // Chunk by chunk, alternating which goes first, so drift in the machine's load (other processes on a
            // shared box) falls on both alike.
            var compiledNanos: UInt64 = 0
            var catalogNanos: UInt64 = 0
            for (chunkIndex, start) in stride(from: 0, to: corpus.count, by: 1000).enumerated() {
                let chunk = corpus[start..<min(start + 1000, corpus.count)]
                for pass in (chunkIndex % 2 == 0 ? [0, 1] : [1, 0]) {
                    if pass == 0 {
                        compiledNanos += Self.time(chunk) { compiled.validate($0, receivedAt: receivedAt) }
                    } else {
                        catalogNanos += Self.time(chunk) { catalog.validate($0, receivedAt: receivedAt) }
                    }
                }
            }
            let compiledNs = Double(compiledNanos) / Double(corpus.count)
            let catalogNs = Double(catalogNanos) / Double(corpus.count)
            ratios.append(catalogNs / compiledNs)
            print(String(format: "%5d  %17.0f  %16.0f  %16.2f", round, compiledNs, catalogNs, catalogNs / compiledNs))
        }
        print(String(format: "catalog/compiled: %.2f-%.2f (median %.2f)", ratios.min()!, ratios.max()!, ratios.sorted()[ratios.count / 2]))
    }

    /// Thread CPU nanoseconds of one pass over `events`.
    static func time(_ events: ArraySlice<JSONValue>, _ validate: (JSONValue) -> EventValidator.Validation) -> UInt64 {
        var accepted = 0
        let start = threadCPUNanoseconds()
        for event in events {
            if case .valid = validate(event) { accepted += 1 }
        }
        let elapsed = threadCPUNanoseconds() - start
        precondition(accepted > 0)
        return elapsed
    }

    static func threadCPUNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func same(_ lhs: EventValidator.Validation, _ rhs: EventValidator.Validation) -> Bool {
        switch (lhs, rhs) {
        case (.valid(let a), .valid(let b)):
            a.bodyAfterID == b.bodyAfterID && a.channels == b.channels && a.entityKey == b.entityKey
                && a.carriesState == b.carriesState && a.eventType == b.eventType && a.entityType == b.entityType
                && a.sourceRank == b.sourceRank && a.lateMarkOffset == b.lateMarkOffset
                && a.tallies?.scriptArgument == b.tallies?.scriptArgument
        case (.invalid(let a), .invalid(let b)):
            a == b
        default:
            false
        }
    }

    /// The plant mix of `statushub-load --mix plant` (out of 20: 11 machine statuses, 3 operator statuses,
    /// 3 work-order progress updates, 1 material inventory change, 1 alert, 1 allocation change), parsed; every
    /// `invalidEvery`'th event broken.
    static func corpus(count: Int, invalidEvery: Int) throws -> [JSONValue] {
        let machine = ["running", "idle", "maintenance", "breakdown", "offline"]
        let operators = ["available", "busy", "break", "absent", "offline"]
        let workOrder = ["queued", "assigned", "in_progress", "paused", "completed"]
        return try (0..<count).map { seq in
            let unit = seq % 500
            let broken = invalidEvery > 0 && seq % invalidEvery == invalidEvery - 1
            func status(_ values: [String]) -> String {
                broken ? #""current_status":"exploded","previous_status":"\#(values[0])""#
                    : #""current_status":"\#(values[seq % values.count])","previous_status":"\#(values[(seq + 4) % values.count])""#
            }
            let (eventType, entityType, entityID, fields): (String, String, String, String) =
                switch seq % 20 {
                case 0..<11: ("resource_status_changed", "machine", "M-\(unit)", status(machine))
                case 11..<14: ("resource_status_changed", "operator", "OP-\(unit)", status(operators) + #","efficiency_rating":4.2"#)
                case 14..<17:
                    ("work_order_progress", "work_order", "WO-\(unit)",
                        status(workOrder) + #","quantity_produced":\#(seq % 500),"quantity_ordered":500"#)
                case 17:
                    ("material_inventory_changed", "material", "MAT-\(unit)",
                        #""available_quantity":\#(broken ? -1 : 1000 - seq % 1000),"on_hand_quantity":1000,"allocated_quantity":\#(seq % 1000)"#)
                case 18:
                    ("alert_raised", "machine", "M-\(unit)", #""severity":"\#(broken ? "apocalyptic" : "high")","message":"spindle temperature above limit""#)
                default:
                    ("allocation_changed", "allocation", "AL-\(unit)",
                        broken ? #""change_type":"reassigned""# : #""change_type":"reassigned","operator_id":"OP-\#(unit)","machine_id":"M-\#(unit)""#)
                }
            let json = #"{"event_type":"\#(eventType)","entity_type":"\#(entityType)","entity_id":"\#(entityID)","#
                + #""line":"Line-\#(unit % 10)","timestamp":"2025-11-18T14:23:45.678Z","data":{\#(fields)},"#
                + #""metadata":{"source":"mes","triggered_by":"system"}}"#
            return try JSONValue.parse(Array(json.utf8))
        }
    }
}
