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

    @Argument(help: "Events as JSON objects.")
    var events: [String] = []

    func run() async throws {
        let (body, contentType) = try makeBody()
        guard let endpoint = URL(string: url.trimmingSuffix("/") + "/v1/events") else {
            throw ValidationError("--url '\(url)' is not a URL")
        }
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        // From the environment by default, so the key stays out of shell history and `ps`.
        if let key = key ?? ProcessInfo.processInfo.environment["STATUSHUB_API_KEY"] {
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        }
        request.httpBody = body
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        print("HTTP \(status) \(String(decoding: data, as: UTF8.self))")
        if status != 202 { throw ExitCode(1) }
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
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        let isNDJSON = (file?.hasSuffix(".ndjson") ?? false) || (!text.hasPrefix("[") && lines.count > 1)
        return (data, isNDJSON ? "application/x-ndjson" : "application/json")
    }

    private func statusEvent(entity: String) throws -> String {
        let parts = entity.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let type = EntityType(rawValue: parts[0]) else {
            throw ValidationError("--entity must be ENTITY_TYPE:ID with ENTITY_TYPE one of \(EntityType.allowedList)")
        }
        guard let status else { throw ValidationError("--entity needs --status") }
        let eventType = type == .workOrder ? EventType.workOrderProgress : EventType.resourceStatusChanged
        var event: [String: JSONValue] = [
            "event_type": .string(eventType.rawValue),
            "entity_type": .string(type.rawValue),
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
