import Foundation
import StatusHubCore
import Testing

@Suite("Wire protocol")
struct WireProtocolTests {
    func decode(_ text: String) -> Result<ClientMessage, ClientMessage.Refusal> { ClientMessage.decode(Array(text.utf8)) }

    @Test func subscribeDecodes() throws {
        let message = try decode(#"{"op":"subscribe","id":"r1","channels":["resource-status","line:Line-2:*"],"snapshot":true}"#).get()
        #expect(message == .subscribe(id: "r1", patterns: [try ChannelPattern(parsing: "resource-status"), try ChannelPattern(parsing: "line:Line-2:*")], snapshot: true))
    }

    /// A whole-number id comes back as the same number, so a client correlating by `===` finds its answer (it came
    /// back as a string, `5` as `"5"`); a number that could not be echoed as sent is refused (1e300, 1.5).
    @Test(arguments: [
        (#"{"op":"ping","id":5}"#, #"{"id":5,"op":"pong"}"#), (#"{"op":"ping","id":-12}"#, #"{"id":-12,"op":"pong"}"#),
        (#"{"op":"ping","id":9007199254740991}"#, #"{"id":9007199254740991,"op":"pong"}"#),
        (#"{"op":"ping","id":"5"}"#, #"{"id":"5","op":"pong"}"#),
        (#"{"op":"ping","id":1e300}"#, nil), (#"{"op":"ping","id":1.5}"#, nil), (#"{"op":"ping","id":true}"#, nil),
    ] as [(String, String?)])
    func numericIDs(_ text: String, answer: String?) {
        switch decode(text) {
        case .success(.ping(let id)):
            #expect(String(decoding: ServerMessage.pong(id: id), as: UTF8.self) == answer)
            let snapshot = String(decoding: ServerMessage.snapshot(id: id, events: []), as: UTF8.self)
            #expect(snapshot.hasPrefix(#"{"op":"snapshot","id":"# + (answer?.dropFirst(6).prefix { $0 != "," } ?? "")), "\(snapshot)")
        case .success(let other): Issue.record("decoded as \(other)")
        case .failure(let refusal):
            #expect(answer == nil)
            #expect(refusal.code == .invalidMessage)
            #expect(refusal.message == "'id' must be a string of at most 128 bytes, or a whole number up to 2^53 − 1")
        }
    }

    @Test func refusalsCarryCodeAndID() {
        func refusal(_ text: String) -> ClientMessage.Refusal? {
            if case .failure(let refusal) = decode(text) { return refusal }
            return nil
        }
        #expect(refusal("{nope")?.code == .invalidJSON)
        #expect(refusal(#"{"op":"dance","id":"r9"}"#) == .init(id: "r9", code: .unknownOp, message: "unknown op 'dance'; one of: subscribe, unsubscribe, ping, auth, report"))
        #expect(refusal(#"{"op":"subscribe","id":"r2","channels":["line::x"]}"#)?.code == .invalidPattern)
        #expect(refusal(#"{"op":"subscribe","id":"r3"}"#)?.code == .invalidMessage)
        #expect(refusal(#"{"op":"subscribe","channels":["alerts"],"snapshot":"yes"}"#)?.code == .invalidMessage)
        #expect(refusal(#"[1,2]"#)?.code == .invalidMessage)
    }

    @Test func serverMessagesAreValidJSON() throws {
        let event = StoredEvent(id: EventID(milliseconds: 1, sequence: 0), validated: SampleEvents.validated(SampleEvents.machineStatus("M-1")))
        for bytes in [
            ServerMessage.event(event), ServerMessage.snapshot(id: "r1", events: [event, event]), ServerMessage.snapshot(id: nil, events: []),
            ServerMessage.pong(id: "r\"3"), ServerMessage.error(id: nil, code: .unknownOp, message: "x"),
        ] {
            #expect(throws: Never.self) { try JSONSerialization.jsonObject(with: Data(bytes)) }
        }
        #expect(String(decoding: ServerMessage.pong(id: "r3"), as: UTF8.self) == #"{"id":"r3","op":"pong"}"#)
    }

    /// Every reply but events is written member by member; the bytes are what `JSONEncoder` (sorted keys, `/` not
    /// escaped) made of them, which clients have been reading, escapes and all.
    @Test func repliesAreWhatJSONEncoderWrote() throws {
        struct Reply: Encodable {
            var op: String
            var id: String?
            var channels: [String]?
            var code: String?
            var message: String?
            var reason: String?
            var expires: String?
            var filter: String?
            var samples: Int?
        }
        func encoded(_ reply: Reply) throws -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(reply), as: UTF8.self)
        }
        func written(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
        let patterns = [try ChannelPattern(parsing: "line:Line-2:*"), try ChannelPattern(parsing: "alerts")]
        let filter = try EventFilter.parse("data.severity IN (critical, high) AND metadata.source = 'mes/line'")
        let expires = Date(timeIntervalSince1970: 1_763_475_825.678)
        let tricky = "r\"3/\u{1}é\n"
        #expect(written(ServerMessage.subscribed(id: .text(tricky), patterns: patterns, filter: filter))
            == (try encoded(Reply(op: "subscribed", id: tricky, channels: ["line:Line-2:*", "alerts"], filter: filter.canonical))))
        #expect(written(ServerMessage.subscribed(id: nil, patterns: [])) == (try encoded(Reply(op: "subscribed", channels: []))))
        #expect(written(ServerMessage.unsubscribed(id: "u1", patterns: patterns))
            == (try encoded(Reply(op: "unsubscribed", id: "u1", channels: ["line:Line-2:*", "alerts"]))))
        #expect(written(ServerMessage.authenticated(id: "a", expires: expires))
            == (try encoded(Reply(op: "authenticated", id: "a", expires: Timestamps.format(expires)))))
        #expect(written(ServerMessage.authenticated(id: nil, expires: nil)) == (try encoded(Reply(op: "authenticated"))))
        #expect(written(ServerMessage.pong(id: .text(tricky))) == (try encoded(Reply(op: "pong", id: tricky))))
        #expect(written(ServerMessage.reported(id: "r", samples: 12)) == (try encoded(Reply(op: "reported", id: "r", samples: 12))))
        #expect(written(ServerMessage.resync(id: nil, reason: .historyGap)) == (try encoded(Reply(op: "resync", reason: "history_gap"))))
        #expect(written(ServerMessage.error(id: "e", code: .forbidden, message: "pattern 'a/b' is \"outside\"\t"))
            == (try encoded(Reply(op: "error", id: "e", code: "forbidden", message: "pattern 'a/b' is \"outside\"\t"))))
    }

    @Test func pubSubMessageRoundTrips() throws {
        let event = StoredEvent(id: EventID(milliseconds: 17, sequence: 2), validated: SampleEvents.validated(SampleEvents.alert("M-9")))
        let decoded = try #require(PubSubMessage.decode(PubSubMessage.encode(event)))
        #expect(decoded == event)
    }

    @Test func ingestBodies() throws {
        let two = "\(SampleEvents.machineStatus("M-1"))\n\n\(SampleEvents.machineStatus("M-2"))\r\n{bad\n"
        let lines = try IngestBody.decode(Array(two.utf8), format: .ndjson, maxEvents: 10)
        #expect(lines.count == 3)
        if case .failure(let problem) = lines[2] { #expect(problem.reason.hasPrefix("line 4 is not valid JSON: ")) } else { Issue.record("bad line accepted") }
        #expect(throws: IngestBodyError.tooManyEvents(count: 3, limit: 2)) {
            try IngestBody.decode(Array(two.utf8), format: .ndjson, maxEvents: 2)
        }
        #expect(throws: IngestBodyError.self) { try IngestBody.decode(Array("[]".utf8), format: .json, maxEvents: 2) }
        #expect(IngestBodyFormat(contentType: "application/json; charset=utf-8") == .json)
        #expect(IngestBodyFormat(contentType: "text/plain") == nil)
    }

    @Test func eventIDsOrderAndNeverGoBack() {
        let first = EventID.next(after: nil, nowMilliseconds: 100)
        let second = EventID.next(after: first, nowMilliseconds: 90)  // clock stepped back
        #expect(second > first)
        #expect(EventID("100-1") == second)
        #expect(EventID("abc") == nil)
    }
}
