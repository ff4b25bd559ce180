import Foundation
import StatusHubCore
import Testing

@Suite("Ingest and state over HTTP")
struct IngestHTTPTests {
    @Test(arguments: EngineKind.allCases)
    func singleEventIsAcceptedAndReadable(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let reply = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-203", "running"))
            #expect(reply.status == 202)
            guard case .array(let accepted)? = reply.json["accepted"] else { Issue.record(Comment(rawValue: "no accepted: \(reply.text)")); return }
            let eventID = try #require(accepted.first?["event_id"]?.stringValue)
            #expect(EventID(eventID) != nil)
            #expect(reply.json["rejected"] == .array([]))

            let state = try await HTTP.get(port: hub.port, "/v1/state/machine/M-203")
            #expect(state.status == 200)
            #expect(state.json["event_id"]?.stringValue == eventID)
            #expect(state.json["received_at"]?.stringValue != nil)
            #expect(state.json["data"]?["current_status"]?.stringValue == "running")

            let matching = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-2:*&pattern=operator:*")
            #expect(matching.status == 200)
            if case .array(let events)? = matching.json["events"] {
                // The machine, and the line's live counter it now counts toward.
                #expect(events.compactMap { $0["entity_type"]?.stringValue }.sorted() == ["counter", "machine"])
            } else {
                Issue.record(Comment(rawValue: matching.text))
            }
        }
    }

    @Test(arguments: EngineKind.allCases)
    func batchWithSomeBadEventsIs207WithIndexes(_ kind: EngineKind) async throws {
        try await withHub(engine: kind) { hub in
            let reply = try await HTTP.post(port: hub.port, events: [
                SampleEvents.machineStatus("M-1"), SampleEvents.machineStatus("M-2", "on-fire"), #""text""#, SampleEvents.alert("M-1"),
            ])
            #expect(reply.status == 207)
            guard case .array(let accepted)? = reply.json["accepted"], case .array(let rejected)? = reply.json["rejected"] else {
                Issue.record(Comment(rawValue: reply.text))
                return
            }
            #expect(accepted.compactMap { $0["index"]?.numberValue } == [0, 3])
            #expect(rejected.compactMap { $0["index"]?.numberValue } == [1, 2])
            #expect(rejected[0]["errors"] == .array([.object([
                "field": .string("data.current_status"),
                "reason": .string("unknown value 'on-fire'; allowed: running, idle, maintenance, breakdown, offline"),
            ])]))
            #expect(rejected[1]["errors"]?.arrayFirst?["reason"]?.stringValue?.contains("must be a JSON object") == true)
        }
    }

    @Test func ndjsonBodyIsOneEventPerLine() async throws {
        try await withHub(engine: .memory) { hub in
            let body = [SampleEvents.machineStatus("M-1"), "{oops", SampleEvents.operatorStatus("O-1")].joined(separator: "\n")
            let reply = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data(body.utf8), contentType: "application/x-ndjson")
            #expect(reply.status == 207)
            guard case .array(let rejected)? = reply.json["rejected"] else { Issue.record(Comment(rawValue: reply.text)); return }
            #expect(rejected.first?["index"]?.numberValue == 1)
            #expect(rejected.first?["errors"]?.arrayFirst?["reason"]?.stringValue?.hasPrefix("line 2 is not valid JSON: ") == true)
        }
    }

    /// A bad line is named by its line in the body, blank lines counted, as an editor numbers them; its index
    /// counts events only.
    @Test func ndjsonErrorsNameTheLineOfTheBody() async throws {
        try await withHub(engine: .memory) { hub in
            let body = [SampleEvents.machineStatus("M-1"), "", "  ", "{oops"].joined(separator: "\n")
            let reply = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data(body.utf8), contentType: "application/x-ndjson")
            guard case .array(let rejected)? = reply.json["rejected"] else { Issue.record(Comment(rawValue: reply.text)); return }
            #expect(rejected.first?["index"]?.numberValue == 1)
            #expect(rejected.first?["errors"]?.arrayFirst?["reason"]?.stringValue?.hasPrefix("line 4 is not valid JSON: ") == true)
        }
    }

    /// An `Idempotency-Key` header and the event's own `idempotency_key` that differ: refused, naming the header (the
    /// header was ignored, and a retry keyed by it stored the event again).
    @Test func anIdempotencyKeyHeaderThatContradictsTheEventIsRefused() async throws {
        try await withHub(engine: .memory) { hub in
            guard case .object(var event) = try JSONValue.parse(Array(SampleEvents.machineStatus("M-K").utf8)) else { return }
            event["idempotency_key"] = .string("mes-42")
            var bytes: [UInt8] = []
            JSONValue.object(event).write(into: &bytes)
            let conflicting = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data(bytes), headers: ["Idempotency-Key": "mes-43"])
            #expect(conflicting.status == 400)
            #expect(conflicting.text.contains(#""field":"Idempotency-Key""#))
            let agreeing = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data(bytes), headers: ["Idempotency-Key": "mes-42"])
            #expect(agreeing.status == 202)
        }
    }

    @Test func badRequestsGetExactStatusAndNamedField() async throws {
        try await withHub(engine: .memory, configure: { $0.server.maxBodyBytes = 4096; $0.server.maxBatchEvents = 3 }) { hub in
            // Every event bad: 400, same body shape.
            let allBad = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", "melted"))
            #expect(allBad.status == 400)
            #expect(allBad.json["accepted"] == .array([]))

            let malformed = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data("{\"event_type\":".utf8))
            #expect(malformed.status == 400)
            #expect(malformed.text.contains(#""field":"body""#))

            let missing = try await HTTP.post(port: hub.port, event: #"{"event_type":"resource_status_changed"}"#)
            #expect(missing.status == 400)
            for field in ["entity_type", "entity_id", "timestamp", "data", "metadata"] {
                #expect(missing.text.contains(#""field":"\#(field)""#), "missing \(field) not named")
            }

            let wrongType = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data("x".utf8), contentType: "text/plain")
            #expect(wrongType.status == 415)
            #expect(wrongType.json["error"]?["field"]?.stringValue == "Content-Type")

            let huge = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", extra: #","note":"\#(String(repeating: "x", count: 5000))""#))
            #expect(huge.status == 413)
            #expect(huge.json["error"]?["field"]?.stringValue == "body")

            let tooMany = try await HTTP.post(port: hub.port, events: (1...4).map { SampleEvents.machineStatus("M-\($0)") })
            #expect(tooMany.status == 413)
            #expect(tooMany.json["error"]?["reason"]?.stringValue?.contains("max_batch_events") == true)

            let unknownType = try await HTTP.get(port: hub.port, "/v1/state/robot/R-1")
            #expect(unknownType.status == 400)
            #expect(unknownType.json["error"]?["field"]?.stringValue == "entity_type")

            let notFound = try await HTTP.get(port: hub.port, "/v1/state/machine/M-999")
            #expect(notFound.status == 404)
            #expect(notFound.json["error"]?["field"]?.stringValue == "entity_id")

            let badPattern = try await HTTP.get(port: hub.port, "/v1/state?pattern=line::x")
            #expect(badPattern.status == 400)
            #expect(badPattern.json["error"]?["field"]?.stringValue == "pattern")

            // The hub is still fine after all of that.
            #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1")).status == 202)
        }
    }

    /// A request no route takes gets the error shape every other refusal has: 404 naming the path, or 405 naming the
    /// method with `Allow` when the path exists under other methods (Hummingbird's own answer was an empty 404). A
    /// route's own 404 (no state cached) is left as it was.
    @Test func unknownPathsAndMethodsAreAnsweredInTheErrorShape() async throws {
        try await withHub(engine: .memory) { hub in
            let nowhere = try await HTTP.get(port: hub.port, "/v1/nowhere")
            #expect(nowhere.status == 404)
            #expect(nowhere.json["error"]?["field"]?.stringValue == "path")
            #expect(nowhere.json["error"]?["reason"]?.stringValue?.contains("/v1/nowhere") == true)

            for (method, path, allowed) in [("GET", "/v1/events", "POST"), ("PUT", "/v1/events", "POST"), ("DELETE", "/v1/state/machine/M-1", "GET"), ("POST", "/health", "GET")] {
                let reply = try await HTTP.request(method, port: hub.port, path, body: method == "GET" || method == "DELETE" ? nil : Data("{}".utf8))
                #expect(reply.status == 405, "\(method) \(path)")
                #expect(reply.headers["allow"] == allowed, "\(method) \(path)")
                #expect(reply.json["error"]?["field"]?.stringValue == "method", "\(method) \(path)")
                #expect(reply.json["error"]?["reason"]?.stringValue?.hasPrefix("\(method) is not allowed on \(path)") == true, "\(reply.text)")
            }
            // HEAD is answered like any other method, with no body.
            let head = try await HTTP.request("HEAD", port: hub.port, "/health", contentType: nil)
            #expect(head.status == 405 && head.headers["allow"] == "GET" && head.body.isEmpty)

            let notCached = try await HTTP.get(port: hub.port, "/v1/state/machine/M-404")
            #expect(notCached.status == 404)
            #expect(notCached.json["error"]?["field"]?.stringValue == "entity_id")
            #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1")).status == 202)
        }
    }

    @Test func healthReadinessAndMetrics() async throws {
        try await withHub(engine: .memory) { hub in
            #expect(try await HTTP.get(port: hub.port, "/health").status == 200)
            #expect(try await HTTP.get(port: hub.port, "/ready").status == 200)
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1"))
            let metrics = try await HTTP.get(port: hub.port, "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("statushub_events_accepted_total 1"))
        }
    }

    /// What a dashboard could not show as sent is refused at ingest, each naming what is wrong.
    @Test func impossibleTimestampsAndInexactIntegersAreRefused() async throws {
        try await withHub(engine: .memory) { hub in
            let late = SampleEvents.machineStatus("M-1").replacingOccurrences(of: "2025-11-18T14:23:45.678Z", with: "2025-11-18T25:00:00Z")
            let refused = try await HTTP.post(port: hub.port, event: late)
            #expect(refused.status == 400)
            #expect(refused.text.contains(#""field":"timestamp""#), "\(refused.text)")

            let big = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", extra: #","counter":9007199254740993"#))
            #expect(big.status == 400)
            #expect(big.text.contains("is over a limit") && big.text.contains("2^53"), "\(big.text)")
            #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/M-1").status == 404)

            let exact = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", extra: #","counter":9007199254740991"#))
            #expect(exact.status == 202)
            #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/M-1").text.contains("9007199254740991"))
        }
    }

    /// `.` and `..` pass the channel grammar but a URL resolves them away: refused at ingest, naming the field.
    @Test func dotSegmentIDsAreRefused() async throws {
        try await withHub(engine: .memory) { hub in
            for id in [".", ".."] {
                let reply = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus(id))
                #expect(reply.status == 400)
                #expect(reply.text.contains(#""field":"entity_id""#), "\(reply.text)")
                let onLine = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-1", line: id))
                #expect(onLine.text.contains(#""field":"line""#), "\(onLine.text)")
            }
            #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("...")).status == 202)
        }
    }

    /// `Content-Encoding: gzip` is inflated, bounded by server.max_body_bytes (a bomb stops there); another coding
    /// is 415 naming the header.
    @Test func gzipBodiesAreInflatedWithinTheLimit() async throws {
        try await withHub(engine: .memory) { hub in
            let gzipped = try Self.gzip(Data(SampleEvents.machineStatus("M-GZ").utf8))
            let accepted = try await HTTP.request("POST", port: hub.port, "/v1/events", body: gzipped, headers: ["Content-Encoding": "gzip"])
            #expect(accepted.status == 202, "\(accepted.text)")

            let bomb = try Self.gzip(Data(SampleEvents.alert("M-GZ", message: String(repeating: "a", count: 4 << 20)).utf8))
            #expect(bomb.count < 64 << 10)
            let tooLarge = try await HTTP.request("POST", port: hub.port, "/v1/events", body: bomb, headers: ["Content-Encoding": "gzip"])
            #expect(tooLarge.status == 413 && tooLarge.text.contains("inflates past"), "\(tooLarge.text)")

            let corrupt = try await HTTP.request("POST", port: hub.port, "/v1/events", body: Data("not gzip".utf8), headers: ["Content-Encoding": "gzip"])
            #expect(corrupt.status == 400 && corrupt.text.contains(#""field":"body""#), "\(corrupt.text)")

            let brotli = try await HTTP.request("POST", port: hub.port, "/v1/events", body: gzipped, headers: ["Content-Encoding": "br"])
            #expect(brotli.status == 415 && brotli.text.contains(#""field":"Content-Encoding""#), "\(brotli.text)")
        }
    }

    /// RFC 1952 §2.2: a gzip body is a series of members, every one inflated; a stream cut short, bytes after a member
    /// that are not another member, or a broken header are a 400 naming `body` and the gzip problem, never a 202 for
    /// part of the body.
    @Test func gzipBodiesAreReadMemberByMemberAndWhole() async throws {
        try await withHub(engine: .memory) { hub in
            let ndjson = ["Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"]
            func line(_ machine: String) -> Data { Data((SampleEvents.machineStatus(machine) + "\n").utf8) }
            func post(_ body: Data) async throws -> HTTPReply {
                try await HTTP.request("POST", port: hub.port, "/v1/events", body: body, headers: ndjson)
            }

            let twoMembers = try await post(try Self.gzip(line("M-GZ1")) + Self.gzip(line("M-GZ2")))
            #expect(twoMembers.status == 202, "\(twoMembers.text)")
            #expect(twoMembers.json["accepted"]?.arrayValue?.count == 2, "\(twoMembers.text)")
            for machine in ["M-GZ1", "M-GZ2"] {
                #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/\(machine)").status == 200, "\(machine)")
            }

            // The member's last 8 bytes are its trailer (CRC-32 and length): without them the stream never ended.
            let whole = try Self.gzip(line("M-GZ3") + line("M-GZ4"))
            let cutShort = try await post(whole.dropLast(8))
            #expect(cutShort.status == 400 && cutShort.text.contains(#""field":"body""#) && cutShort.text.contains("ends inside gzip member 1"), "\(cutShort.text)")

            let trailing = try await post(try Self.gzip(line("M-GZ5")) + Data("this is not gzip".utf8))
            #expect(trailing.status == 400 && trailing.text.contains(#""field":"body""#) && trailing.text.contains("not another gzip member"), "\(trailing.text)")

            let badHeader = try await post(Data([0x1F, 0x8B, 0x08, 0x00]) + Data("garbage".utf8))
            #expect(badHeader.status == 400 && badHeader.text.contains(#""field":"body""#) && badHeader.text.contains("gzip"), "\(badHeader.text)")
            #expect(!badHeader.text.contains("JSON"), "\(badHeader.text)")

            let secondCorrupt = try await post(try Self.gzip(line("M-GZ6")) + Data([0x1F, 0x8B, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 1, 2, 3]))
            #expect(secondCorrupt.status == 400 && secondCorrupt.text.contains("gzip member 2"), "\(secondCorrupt.text)")

            for machine in ["M-GZ3", "M-GZ4", "M-GZ5", "M-GZ6"] {
                #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/\(machine)").status == 404, "\(machine) was stored from a refused body")
            }

            // The limit counts every member's output together: two members of 600 KiB each pass 1 MiB only together.
            let half = try Self.gzip(Data(SampleEvents.alert("M-GZ7", message: String(repeating: "a", count: 600 << 10)).utf8) + Data("\n".utf8))
            let overTogether = try await post(half + half)
            #expect(overTogether.status == 413 && overTogether.text.contains("inflates past"), "\(overTogether.text)")
        }
    }

    /// gzip(1) compresses: the test's own bytes come from a tool independent of the hub's inflater.
    static func gzip(_ data: Data) throws -> Data {
        let input = Pipe(), output = Pipe()
        let process = try ChildProcess.spawn("/bin/gzip", ["-c"], stdin: .pipe(input), stdout: .pipe(output))
        let writer = Thread { input.fileHandleForWriting.write(data); try? input.fileHandleForWriting.close() }
        writer.start()
        let compressed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return compressed
    }
}
