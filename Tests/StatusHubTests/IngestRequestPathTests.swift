import Foundation
import StatusHubCore
import Testing

/// `POST /v1/events` has two request paths: `IngestHandler` below Hummingbird serves it, unless Hummingbird is still
/// answering an earlier request on the connection, when Hummingbird's route does. Both must answer alike, keep
/// HTTP/1's order, and leave the connection usable. A request pipelined behind `GET /health` in the same write takes
/// the router's path: the parser hands both heads over before Hummingbird's task has answered the first.
@Suite("Ingest's two request paths")
struct IngestRequestPathTests {
    static let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

    static func post(_ body: String, headers: [String] = ["Content-Type: application/json"], closing: Bool = false) -> String {
        let lines = ["POST /v1/events HTTP/1.1", "Host: x", "Content-Length: \(body.utf8.count)"] + headers
            + (closing ? ["Connection: close"] : [])
        return lines.joined(separator: "\r\n") + "\r\n\r\n" + body
    }

    /// Requests whose answers do not depend on what was stored before (no event ids compared).
    static let requests: [(name: String, request: String)] = [
        ("one event", post(SampleEvents.alert("M-7"))),
        ("a batch with a bad event", post("[\(SampleEvents.machineStatus("M-1")), \(SampleEvents.machineStatus("M-2", "on-fire"))]")),
        ("not JSON", post("{oops")),
        ("an unsupported Content-Type", post(SampleEvents.alert("M-7"), headers: ["Content-Type: text/plain"])),
        ("an unsupported Content-Encoding", post(SampleEvents.alert("M-7"), headers: ["Content-Type: application/json", "Content-Encoding: br"])),
        ("an Idempotency-Key on a batch",
         post("[\(SampleEvents.alert("M-1")), \(SampleEvents.alert("M-2"))]", headers: ["Content-Type: application/json", "Idempotency-Key: k-1"])),
        ("an NDJSON body", post([SampleEvents.alert("M-1"), "[1]"].joined(separator: "\n"), headers: ["Content-Type: application/x-ndjson"])),
    ]

    /// The parts of an answer both paths must agree on: status, headers but `Date`, and the body with event ids
    /// blanked.
    static func comparable(_ response: RawHTTPResponse) -> String {
        let headers = response.headers.filter { $0.key != "date" }.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        let body = String(decoding: response.body, as: UTF8.self)
            .replacing(/"event_id":"[0-9]+-[0-9]+"/, with: #""event_id":"…""#)
        return "\(response.status)\n\(headers.joined(separator: "\n"))\n\(body)"
    }

    static func metric(_ text: String, servedBy: String) -> Int? {
        let prefix = #"statushub_ingest_requests_total{served_by="\#(servedBy)"} "#
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
    }

    @Test func bothPathsAnswerEveryRequestAlike() async throws {
        try await withHub(engine: .memory) { hub in
            let closingHealth = Self.health.replacing("\r\n\r\n", with: "\r\nConnection: close\r\n\r\n")
            for (name, request) in Self.requests {
                // Alone, then behind a request Hummingbird answers; a last request with `Connection: close` ends each
                // exchange once it is answered.
                let (alone, _, _) = try await HTTPConnectionTests.exchange(port: hub.port, Array((request + closingHealth).utf8))
                let (behind, _, _) = try await HTTPConnectionTests.exchange(port: hub.port, Array((Self.health + request + closingHealth).utf8))
                try #require(alone.count == 2 && behind.count == 3, "\(name): \(alone.count) and \(behind.count) answers")
                #expect(alone[1].status == 200 && behind[0].status == 200 && behind[2].status == 200, "\(name)")
                #expect(Self.comparable(alone[0]) == Self.comparable(behind[1]), "\(name)")
            }
            // A declared body over the limit, sent without it: answered at the head, then the connection ends.
            let oversize = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n"
            let (alone, aloneClosed, _) = try await HTTPConnectionTests.exchange(port: hub.port, Array(oversize.utf8))
            let (behind, behindClosed, _) = try await HTTPConnectionTests.exchange(port: hub.port, Array((Self.health + oversize).utf8))
            #expect(alone.map(\.status) == [413] && behind.map(\.status) == [200, 413])
            #expect(aloneClosed && behindClosed)
            if let first = alone.first, let second = behind.last { #expect(Self.comparable(first) == Self.comparable(second)) }

            let metrics = try await HTTP.get(port: hub.port, "/metrics").text
            #expect(Self.metric(metrics, servedBy: "handler") == Self.requests.count + 1)
            #expect(Self.metric(metrics, servedBy: "router") == Self.requests.count + 1)
        }
    }

    @Test(arguments: EngineKind.allCases)
    func pipelinedRequestsAreAnsweredInOrder(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            // Posts one after another, a read among them, in one write: every answer in request order, ids rising.
            var requests: [String] = []
            for index in 0..<30 {
                requests.append(index == 10 || index == 20 ? Self.health : Self.post(SampleEvents.alert("M-\(index)")))
            }
            requests.append(Self.post(SampleEvents.alert("M-last"), closing: true))
            let (responses, closed, _) = try await HTTPConnectionTests.exchange(port: hub.port, Array(requests.joined().utf8))
            #expect(closed)
            #expect(responses.map(\.status) == requests.indices.map { $0 == 10 || $0 == 20 ? 200 : 202 })
            let ids = responses.compactMap { $0.json["accepted"]?.arrayFirst?["event_id"]?.stringValue.flatMap(EventID.init) }
            #expect(ids.count == 29)
            #expect(ids == ids.sorted())
        }
    }

    @Test func aRequestAnsweredBeforeItsBodyLeavesTheConnectionUsable() async throws {
        try await withHub(engine: .memory) { hub in
            // Refused at its head, its body still arriving: the body is dropped, and the next request is read from
            // where it ends.
            let refused = Self.post(SampleEvents.alert("M-1"), headers: ["Content-Type: text/plain"])
            let (responses, closed, _) = try await HTTPConnectionTests.exchange(
                port: hub.port, Array((refused + Self.post(SampleEvents.alert("M-2"), closing: true)).utf8))
            #expect(responses.map(\.status) == [415, 202])
            #expect(closed)
        }
    }

    @Test func aChunkedBodyOverTheLimitIsRefusedAsItArrives() async throws {
        try await withHub(engine: .memory, configure: { $0.server.maxBodyBytes = 4096 }) { hub in
            let chunk = String(repeating: " ", count: 3000)
            let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            let body = "bb8\r\n\(chunk)\r\nbb8\r\n\(chunk)\r\n0\r\n\r\n"
            let (responses, closed, _) = try await HTTPConnectionTests.exchange(
                port: hub.port, Array((head + body + Self.post(SampleEvents.alert("M-2"), closing: true)).utf8))
            #expect(responses.map(\.status) == [413, 202])
            #expect(responses.first?.errorField == "body")
            #expect(closed)
        }
    }
}
