import Foundation
import StatusHubCore
import Testing

/// Property-based fuzzing of everything that parses client bytes: the ingest decoder + validator, the
/// client-message decoder, the pattern parser and the subscribe filter parser. Inputs are random bytes and mutations of valid messages
/// (seeded, so a failure reproduces). Properties: no crash or hang, and every input is either accepted or
/// answered with a reason. `STATUSHUB_FUZZ_ITERATIONS` sets the inputs per target (CI: 5,000; `fuzz/run.sh`:
/// 1,000,000). The loops run on threads of their own, so they never starve the cooperative pool the live-hub
/// tests of the same process need.
@Suite struct HostileInputTests {
    static let iterations = ProcessInfo.processInfo.environment["STATUSHUB_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 5_000
    static let seed = ProcessInfo.processInfo.environment["STATUSHUB_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED

    static let seeds: [String] = [
        SampleEvents.machineStatus("M-1"), SampleEvents.operatorStatus("O-1", line: "Line-2"), SampleEvents.alert("M-2"),
        #"{"op":"subscribe","id":"r1","channels":["resource-status","line:Line-2:*"],"snapshot":true,"since":"1763475825678-3"}"#,
        #"{"op":"unsubscribe","id":7,"channels":["*"]}"#, #"{"op":"ping"}"#, #"{"op":"auth","token":"a.b.c"}"#,
        "line:*:alerts:*", "machine:M-203", "*", #"[1e999999,-0,1.5e-400,"\ud800"]"#,
        "data.severity in (high, critical) and line = Line-2", "data.oee_percentage < 60.5 and data.x not in ('a', \"b\")",
        #"{"op":"subscribe","channels":["alerts"],"filter":"data.current_status != breakdown and late exists"}"#,
    ]
    static let alphabet = Array(#"{}[]:,"\ *-.0123456789aeflnrstu@~\#u{0}\#u{7f}é"#.utf8) + [0xFF, 0xC0, 0x80]

    /// One input: random bytes, or a seed with a few bytes flipped, inserted, deleted or duplicated.
    static func input(_ rng: inout SplitMix64) -> [UInt8] {
        if rng.next() % 4 == 0 {
            return (0..<Int(rng.next() % 64)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
        }
        var bytes = Array(seeds[Int(rng.next() % UInt64(seeds.count))].utf8)
        for _ in 0..<(1 + Int(rng.next() % 4)) {
            let position = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 4 {
            case 0 where !bytes.isEmpty: bytes[position] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
            case 1: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: position)
            case 2 where !bytes.isEmpty: bytes.remove(at: position)
            default: bytes.insert(contentsOf: bytes[position...].prefix(16), at: position)
            }
        }
        return bytes
    }

    @Test func ingestDecoderAndValidatorAnswerEveryInput() async throws {
        try await RawSocket.offPool { Self.ingestDecoderAndValidatorAnswerEveryInputBody() }
    }

    static func ingestDecoderAndValidatorAnswerEveryInputBody() {
        var rng = SplitMix64(seed: Self.seed)
        let validator = EventValidator()
        var accepted = 0
        for _ in 0..<Self.iterations {
            let bytes = Self.input(&rng)
            for format in [IngestBodyFormat.json, .ndjson] {
                guard let events = try? IngestBody.decode(bytes, format: format, maxEvents: 1000) else { continue }
                for case .success(let value) in events {
                    switch validator.validate(value, receivedAt: Date(), tenant: "acme") {
                    case .valid(let event):
                        accepted += 1
                        #expect(event.channels.allSatisfy { $0.hasPrefix("@acme:") })
                    case .invalid(let errors):
                        #expect(!errors.isEmpty && errors.allSatisfy { !$0.field.isEmpty && !$0.reason.isEmpty })
                    }
                }
            }
        }
        print("fuzz ingest: \(Self.iterations) inputs x 2 formats, \(accepted) valid events, 0 crashes")
    }

    @Test func clientMessageDecoderAnswersEveryInput() async throws {
        try await RawSocket.offPool { Self.clientMessageDecoderAnswersEveryInputBody() }
    }

    static func clientMessageDecoderAnswersEveryInputBody() {
        var rng = SplitMix64(seed: Self.seed &+ 1)
        for _ in 0..<Self.iterations {
            if case .failure(let refusal) = ClientMessage.decode(Self.input(&rng)) { #expect(!refusal.message.isEmpty) }
        }
        print("fuzz client messages: \(Self.iterations) inputs, 0 crashes")
    }

    @Test func patternParserAnswersEveryInput() async throws {
        try await RawSocket.offPool { Self.patternParserAnswersEveryInputBody() }
    }

    static func patternParserAnswersEveryInputBody() {
        var rng = SplitMix64(seed: Self.seed &+ 2)
        for _ in 0..<Self.iterations {
            let text = String(decoding: Self.input(&rng), as: UTF8.self)
            do {
                let pattern = try ChannelPattern(parsing: text)
                // A parsed pattern can never name a tenant segment, and contains itself.
                #expect(pattern.contains(pattern) && !pattern.text.contains("@"))
            } catch {
                #expect(error.reason.hasPrefix("invalid pattern"))
            }
        }
        print("fuzz patterns: \(Self.iterations) inputs, 0 crashes")
    }

    @Test func filterParserAnswersEveryInput() async throws {
        try await RawSocket.offPool { Self.filterParserAnswersEveryInputBody() }
    }

    static func filterParserAnswersEveryInputBody() {
        var rng = SplitMix64(seed: Self.seed &+ 3)
        let event = JSONValue.object(["data": .object(["severity": .string("high"), "oee_percentage": .number(50)]), "line": .string("Line-2")])
        for _ in 0..<Self.iterations {
            let text = String(decoding: Self.input(&rng), as: UTF8.self)
            do {
                let filter = try EventFilter.parse(text)
                // The normal form parses to the same filter, which judges an event the same way.
                let again = try EventFilter.parse(filter.canonical)
                #expect(again == filter && again.admits(event) == filter.admits(event), "\(text) -> \(filter.canonical)")
            } catch {
                #expect(error.reason.hasPrefix("at byte") || error.reason.hasPrefix("filter is"))
            }
        }
        print("fuzz filters: \(Self.iterations) inputs, 0 crashes")
    }

    @Test func deeplyNestedHugeAndDuplicateInputsAreAnswered() async throws {
        try await RawSocket.offPool { try Self.deeplyNestedHugeAndDuplicateInputsAreAnsweredBody() }
    }

    static func deeplyNestedHugeAndDuplicateInputsAreAnsweredBody() throws {
        let deep = Array(repeating: UInt8(ascii: "["), count: 100_000) + Array(repeating: UInt8(ascii: "]"), count: 100_000)
        #expect(throws: IngestBodyError.self) { try IngestBody.decode(deep, format: .json, maxEvents: 1000) }
        if case .success = ClientMessage.decode(Array(#"{"op":"ping","id":"#.utf8) + deep + [UInt8(ascii: "}")]) { Issue.record("nested id accepted") }
        let huge = #"{"op":"subscribe","channels":["\#(String(repeating: "a", count: 1_000_000))"],"id":1e308}"#
        if case .success = ClientMessage.decode(Array(huge.utf8)) { Issue.record("1 MB pattern accepted") }
        let number = SampleEvents.machineStatus("M-1", extra: #","oee_percentage":1e400"#)
        // A number beyond Double is refused as malformed JSON (400), never rounded to infinity.
        #expect(throws: IngestBodyError.self) { try IngestBody.decode(Array(number.utf8), format: .json, maxEvents: 1000) }
        // Duplicate keys: refused as malformed JSON, never silently one of the two.
        let duplicate = #"{"op":"ping","op":"subscribe","channels":["*"]}"#
        if case .success = ClientMessage.decode(Array(duplicate.utf8)) { Issue.record("duplicate op took one of its values") }
        let twice = SampleEvents.machineStatus("M-1").replacingOccurrences(of: #""entity_id":"M-1""#, with: #""entity_id":"M-1","entity_id":"M-2""#)
        do {
            _ = try IngestBody.decode(Array(twice.utf8), format: .json, maxEvents: 1000)
            Issue.record("an event naming entity_id twice was accepted")
        } catch .malformed(let problem) {
            #expect(problem.field == "body" && problem.reason.contains("appears twice") && problem.reason.contains("entity_id"))
        } catch {
            Issue.record("\(error)")
        }
    }
}

/// A small, fast, seedable generator (Steele, Lea, Flood 2014), so fuzz runs reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
