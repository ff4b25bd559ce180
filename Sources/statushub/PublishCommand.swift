import ArgumentParser
import Foundation
import StatusHubCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Send events to a hub's ingest gateway and print its answer.",
        discussion: """
            Events come from arguments (one JSON object each), from --file (a JSON array, one object, or NDJSON), \
            from stdin when neither is given, or are built from --entity and --status:

              statushub publish --entity machine:M-203 --status breakdown --line Line-2
              statushub publish '{"event_type":"alert_raised", …}'
              statushub publish --file events.ndjson

            A 503 is followed as it says, up to --retries times, after its Retry-After: "not_stored" resends the \
            events as they are; "unknown" (the hub lost Redis's answer) resends them with the idempotency keys \
            it lists, so events that were stored after all are acknowledged as duplicates, not stored twice.
            """
    )

    @Option(name: .long, help: "Hub base URL (https:// checks the certificate against the system's trust store).")
    var url = "http://127.0.0.1:8080"

    @Option(name: .long, help: "Publisher API key, sent as 'Authorization: Bearer'. Default: $STATUSHUB_API_KEY.")
    var key: String?

    @Option(name: .long, help: "Read events from this file ('-' for stdin).")
    var file: String?

    @Option(name: .long, help: "Build a status event for ENTITY_TYPE:ID, e.g. machine:M-203 or work_order:WO-7.")
    var entity: String?

    @Option(name: .long, help: "current_status for --entity.")
    var status: String?

    @Option(name: .long, help: "Production line for --entity, e.g. Line-2.")
    var line: String?

    @Option(name: .long, help: "How often to resend after a 503, as its answer says.")
    var retries = 3

    @Argument(help: "Events as JSON objects.")
    var events: [String] = []

    func run() async throws {
        let endpoint = try HubURL.endpoint(url, "/v1/events")
        let (body, contentType) = try makeBody()
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        // From the environment by default, so the key stays out of shell history and `ps`.
        if let key = key ?? ProcessInfo.processInfo.environment["STATUSHUB_API_KEY"] {
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        }
        request.httpBody = body
        let status: Int
        do {
            // Unbuffered: someone watching a resend loop sees each answer as it comes.
            (_, status) = try await Resend.post(request, retries: max(0, retries)) { status, data in
                FileHandle.standardOutput.write(Data("HTTP \(status) \(String(decoding: data, as: UTF8.self))\n".utf8))
            }
        } catch {
            FileHandle.standardError.write(Data("\(HubURL.unreachable(url, error))\n".utf8))
            throw ExitCode(1)
        }
        if status != 202 { throw ExitCode(1) }
    }

    func validate() throws {
        if entity == nil, status != nil || line != nil {
            throw ValidationError("--status and --line build an event for --entity; give --entity too")
        }
    }

    private func makeBody() throws -> (Data, String) {
        if let entity {
            return (try Data(statusEvent(entity: entity).utf8), "application/json")
        }
        if !events.isEmpty {
            return (Data("[\(events.joined(separator: ","))]".utf8), "application/json")
        }
        let data: Data
        if let file, file != "-" {
            guard let contents = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            data = contents
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        // One JSON text — an array, or one object over as many lines as it likes — goes as JSON; anything else as
        // NDJSON, whose lines the hub reads one by one.
        let isOneJSONText = (try? JSONValue.parse(Array(data))) != nil
        let isNDJSON = (file?.hasSuffix(".ndjson") ?? false) || !isOneJSONText
        return (data, isNDJSON ? "application/x-ndjson" : "application/json")
    }

    private func statusEvent(entity: String) throws -> String {
        let parts = entity.split(separator: ":", maxSplits: 1).map(String.init)
        // The hub validates the event against its own catalog; the shorthand knows seed 003's status events.
        let statusTypes = ["operator", "machine", "work_order"]
        guard parts.count == 2, statusTypes.contains(parts[0]) else {
            throw ValidationError("--entity must be ENTITY_TYPE:ID with ENTITY_TYPE one of \(statusTypes.joined(separator: ", ")) (other events: as JSON)")
        }
        guard let status else { throw ValidationError("--entity needs --status") }
        let eventType = parts[0] == "work_order" ? "work_order_progress" : "resource_status_changed"
        var event: [String: JSONValue] = [
            "event_type": .string(eventType),
            "entity_type": .string(parts[0]),
            "entity_id": .string(parts[1]),
            "timestamp": .string(Timestamps.format(Date())),
            "data": .object(["current_status": .string(status)]),
            "metadata": .object(["source": .string("statushub-cli"), "triggered_by": .string("user")]),
        ]
        if let line { event["line"] = .string(line) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JSONValue.object(event)), as: UTF8.self)
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}

extension Resend {
    /// Posts `request`, and after a 503 posts it again as the answer says (`follow(answer:)`), after its Retry-After
    /// (1–30 s), up to `retries` times: what `statushub publish` and `statushub simulate` both do. `answered` sees each
    /// answer as it comes; the last one is returned.
    static func post(
        _ request: URLRequest, retries: Int, answered: (Int, Data) -> Void = { _, _ in }
    ) async throws -> (data: Data, status: Int) {
        var request = request
        var resend = Resend(
            body: request.httpBody ?? Data(), contentType: request.value(forHTTPHeaderField: "Content-Type") ?? "application/json")
        var attempt = 0
        while true {
            let (data, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            let status = http?.statusCode ?? 0
            answered(status, data)
            guard status == 503, attempt < retries, resend.follow(answer: data) else { return (data, status) }
            attempt += 1
            let wait = min(30, max(1, Int(http?.value(forHTTPHeaderField: "Retry-After") ?? "") ?? 1))
            FileHandle.standardError.write(Data("HTTP 503: resending in \(wait) s (\(resend.described))\n".utf8))
            try await Task.sleep(for: .seconds(wait))
            request.httpBody = resend.body
            request.setValue(resend.contentType, forHTTPHeaderField: "Content-Type")
        }
    }
}

/// What a 503 says to resend: `"outcome":"not_stored"`, the same events; `"outcome":"unknown"`, the events with the
/// idempotency keys it lists (once given, a key stays on its event for every later resend).
struct Resend {
    private(set) var body: Data
    private(set) var contentType: String
    private(set) var described = ""

    init(body: Data, contentType: String) {
        self.body = body
        self.contentType = contentType
    }

    /// Applies a 503's answer; false when it cannot be followed safely (no outcome, or events this tool cannot
    /// send again unchanged).
    mutating func follow(answer: Data) -> Bool {
        guard let error = (try? JSONValue.parse(Array(answer)))?["error"] else { return false }
        switch error["outcome"]?.stringValue {
        case "not_stored":
            described = "nothing was stored"
            return true
        case "unknown":
            guard case .array(let resend)? = error["resend"] else { return false }
            let format = IngestBodyFormat(contentType: contentType) ?? .json
            guard let decoded = try? IngestBody.decode(Array(body), format: format, maxEvents: .max) else { return false }
            var events: [JSONValue] = []
            for item in decoded {
                // A line that is not JSON cannot be sent again as it was; better to stop than to shift indexes.
                guard case .success(let event) = item else { return false }
                events.append(event)
            }
            for entry in resend {
                guard let index = entry["index"]?.numberValue.map(Int.init), events.indices.contains(index),
                    let key = entry["idempotency_key"]?.stringValue, case .object(var members) = events[index]
                else { return false }
                members["idempotency_key"] = .string(key)
                events[index] = .object(members)
            }
            var bytes: [UInt8] = []
            JSONValue.array(events).write(into: &bytes)
            body = Data(bytes)
            contentType = "application/json"
            described = "outcome unknown; with the hub's idempotency keys for \(resend.count) event(s)"
            return true
        default:
            return false
        }
    }
}
