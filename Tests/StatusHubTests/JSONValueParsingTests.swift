import Foundation
import StatusHubCore
import Testing

/// The hand-written parser against `JSONDecoder`, which the hub used before it: the same verdict (accepted or
/// refused) and the same value for every input — awkward ones named here, then the fuzzer's generated and mutated
/// inputs — except where the parser is stricter on purpose: a key twice in one object, a trailing comma.
@Suite("JSON parsing")
struct JSONValueParsingTests {
    static func decoderVerdict(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    static func parserVerdict(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONValue.parse(bytes)
    }

    /// Refused for a reason `JSONDecoder` does not refuse.
    static func stricter(_ bytes: [UInt8]) -> Bool {
        do {
            _ = try JSONValue.parse(bytes)
            return false
        } catch {
            return JSONValue.stricterThanJSONDecoder.contains { error.problem.hasPrefix($0) }
        }
    }

    static func nested(_ depth: Int, open: String, close: String) -> [UInt8] {
        Array((String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth)).utf8)
    }

    @Test func awkwardInputsGetJSONDecodersVerdict() {
        for input in [#"{"a":1,"a":2}"#, #"{"a":{"x":1,"x":1}}"#, #"[1,]"#, #"{"a":1,}"#, #"[[1,],2]"#, #"[0.1,-2.5e-8,9007199254740993]"#] {
            #expect(Self.stricter(Array(input.utf8)), "\(input)")
        }
        let inputs: [String] = [
            #"{"a":1,"b":{"a":2}}"#, #"[1e400]"#, #"[-1e400]"#, #"[1.5e-400]"#,
            #"[01]"#, #"[-0]"#, #"[-]"#, #"[1.]"#, #"[.5]"#, #"[1e]"#, #"[1E+2]"#, #"[0.1,-2.5e-8,9007199254740991]"#,
            #"["\ud800"]"#, #"["\udc00"]"#, #"["\ud83c\udfed"]"#, #"["\u00e9\u0000\u001F"]"#, "[\"a\u{01}b\"]", #"["\x"]"#,
            "[\"tab\tin\"]", #"["é 漢字 🏭"]"#, "\u{FEFF}{\"a\":1}", " \n\t\r{ \"a\" : [ true , false , null ] } \n", "{} x",
            "", " ", "1", "\"s\"", "null", "nul", "tru", "[", "{", "{\"a\"}", "{\"a\" 1}", "[1 2]",
            "{1:2}", "[\"unterminated]", "[\"\\u12\"]", "[\"\\uZZZZ\"]",
        ]
        for input in inputs {
            let bytes = Array(input.utf8)
            #expect(Self.parserVerdict(bytes) == Self.decoderVerdict(bytes), "\(input.debugDescription)")
        }
        for bad in [[0x22, 0xFF, 0x22], [0x22, 0xC0, 0x80, 0x22], [0x5B, 0x22, 0xE2, 0x82, 0x22, 0x5D]] as [[UInt8]] {
            #expect(Self.parserVerdict(bad) == nil && Self.decoderVerdict(bad) == nil)
        }
    }

    /// An integer a `Double` cannot hold exactly is refused as over a limit, never silently rounded; up to
    /// 2^53 − 1 it is kept exactly, and numbers with a fraction or exponent stay floating point.
    @Test func integersBeyondExactAreRefusedNotRounded() throws {
        for text in ["9007199254740992", "-9007199254740993", "12345678901234567890", #"{"data":{"count":18446744073709551615}}"#] {
            do {
                _ = try JSONValue.parse(Array(text.utf8))
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.isLimit && error.problem.contains("2^53"), "\(error)")
            }
        }
        #expect(try JSONValue.parse(Array("9007199254740991".utf8)) == .number(9_007_199_254_740_991))
        #expect(try JSONValue.parse(Array("-9007199254740991".utf8)) == .number(-9_007_199_254_740_991))
        #expect(try JSONValue.parse(Array("1e300".utf8)) == .number(1e300))
        #expect(try JSONValue.parse(Array("12345678901234567890.5".utf8)) == .number(12345678901234567890.5))
    }

    /// Nesting past the limit is said to be over it, not "not valid JSON".
    @Test func nestingPastTheLimitIsSaidToBeOverIt() throws {
        let deep = #"{"event_type":"alert_raised","data":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}"
        do {
            _ = try IngestBody.decode(Array(deep.utf8), format: .json, maxEvents: 10)
            Issue.record("accepted")
        } catch .malformed(let problem) {
            #expect(problem.field == "body")
            #expect(problem.reason.hasPrefix("is over a limit: nested deeper than the limit of 512 levels"), "\(problem.reason)")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// Objects of many members (past the few whose keys are compared one by one): the same value as `JSONDecoder`'s,
    /// and a key given twice refused at its second occurrence, before that member's value is read.
    @Test func largeObjectsParseAndRefuseARepeatedKeyWhereItIs() throws {
        let members = (0..<40).map { #""k\#($0)":\#($0)"# }
        let text = "{" + members.joined(separator: ",") + "}"
        #expect(Self.parserVerdict(Array(text.utf8)) == Self.decoderVerdict(Array(text.utf8)))
        #expect(Self.parserVerdict(Array(text.utf8)).map { if case .object(let all) = $0 { all.count } else { 0 } } == 40)
        for repeated in [3, 30] {
            let prefix = "{" + members.prefix(repeated).joined(separator: ",") + ","
            let twice = prefix + #""k1":[1,}"#  // its value is broken too: the repeat is what is told
            do {
                _ = try JSONValue.parse(Array(twice.utf8))
                Issue.record("accepted a repeated key among \(repeated)")
            } catch {
                #expect(error.problem == "a key appears twice in one object: 'k1'")
                #expect(error.offset == prefix.utf8.count)
            }
        }
    }

    @Test func nestingIsLimitedLikeJSONDecoder() {
        for depth in [1, 100, 511, 512, 513, 100_000] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let bytes = Self.nested(depth, open: open, close: close)
                #expect((Self.parserVerdict(bytes) == nil) == (Self.decoderVerdict(bytes) == nil), "depth \(depth) \(open)")
            }
        }
    }

    @Test func fuzzedInputsGetJSONDecodersVerdict() async throws {
        try await RawSocket.offPool {
            var rng = SplitMix64(seed: HostileInputTests.seed &+ 11)
            var accepted = 0
            for _ in 0..<HostileInputTests.iterations * 4 {
                let bytes = HostileInputTests.input(&rng)
                guard !Self.stricter(bytes) else { continue }
                let parsed = Self.parserVerdict(bytes)
                #expect(parsed == Self.decoderVerdict(bytes), "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
                if parsed != nil { accepted += 1 }
            }
            #expect(accepted > 100)
        }
    }

    @Test func writtenValuesParseBack() throws {
        let value: JSONValue = .object([
            "s": .string("quote \" backslash \\ newline \n nul \u{0} 🏭"), "n": .array([.number(42), .number(-0.5), .number(1e300)]),
            "o": .object(["b": .bool(true), "z": .null]),
        ])
        var out: [UInt8] = []
        value.write(into: &out)
        #expect(try JSONValue.parse(out) == value)
    }
}
