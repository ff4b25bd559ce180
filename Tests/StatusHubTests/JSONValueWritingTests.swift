import Foundation
import StatusHubCore
import Testing

/// The hand-written writer against `JSONEncoder` with the options the hub used before it: the same bytes for
/// every value the fuzzer's inputs decode to, and for the awkward cases named here.
@Suite("JSON writing")
struct JSONValueWritingTests {
    static func encoderBytes(_ value: JSONValue) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    static func written(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        value.write(into: &out)
        return out
    }

    @Test func awkwardValuesMatchJSONEncoder() throws {
        let values: [JSONValue] = [
            .string("quote \" backslash \\ slash / newline \n tab \t cr \r bs \u{8} ff \u{c} nul \u{0} us \u{1f} del \u{7f}"),
            .string("é ü 漢字 🏭 \u{2028}"),
            // Escapes at the ends and back to back, around the runs the writer copies whole.
            .string("\"starts and ends with escapes\n"), .string("\\"), .string("\n\n\u{1}"), .string("plain run only"),
            .number(42), .number(-7), .number(0.1), .number(1.5e300), .number(-2.5e-8), .number(9_007_199_254_740_993),
            .bool(true), .bool(false), .null, .array([]), .object([:]),
            .object(["b": .number(1), "a": .array([.string("x"), .null]), "A": .object(["z": .bool(false), "y": .string("")])]),
        ]
        for value in values {
            #expect(Self.written(value) == (try Self.encoderBytes(value)), "\(value)")
        }
    }

    @Test func fuzzedValuesMatchJSONEncoder() throws {
        var rng = SplitMix64(seed: HostileInputTests.seed &+ 7)
        var compared = 0
        for _ in 0..<5_000 {
            let bytes = HostileInputTests.input(&rng)
            guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else { continue }
            #expect(Self.written(value) == (try Self.encoderBytes(value)), "\(String(decoding: bytes, as: UTF8.self))")
            compared += 1
        }
        #expect(compared > 100)
    }

    @Test func ingestRepliesMatchJSONEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var mixed = IngestReply()
        mixed.accept(index: 0, Appended(id: EventID("1763475825678-3")!, duplicate: false))
        mixed.accept(index: 2, Appended(id: EventID("1763475825678-4")!, duplicate: true))
        mixed.accept(index: 3, Appended(id: EventID("1763475825678-5")!, late: true))
        mixed.accept(index: 4, Appended(id: EventID("1763475825678-6")!, held: true))
        var accepted = IngestReply()
        accepted.accept(index: 0, Appended(id: EventID("1763475825679-0")!))
        mixed.reject(index: 1, errors: [
            FieldError(field: "entity_type", reason: "must be one of machine, operator; got \"robot\" / \\ é"),
            FieldError(field: "timestamp", reason: "is required"),
        ])
        for reply in [IngestReply(), mixed, accepted] {
            #expect(reply.json == Array(try encoder.encode(reply)))
        }
    }
}
