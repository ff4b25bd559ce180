import ArgumentParser
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import StatusHubCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Subscribe to channel patterns and print every event, one JSON object a line.",
        discussion: """
              statushub tail resource-status
              statushub tail --snapshot 'line:Line-2:*' 'machine:*'
              statushub tail --filter 'data.severity in (high, critical)' alerts
              statushub tail --report 10 'line:Line-2:*'     # latency samples to the hub every 10 s (GET /v1/slo)
            """
    )

    @Option(name: .long, help: "Hub WebSocket URL.")
    var url = "ws://127.0.0.1:8080/v1/ws"

    @Option(name: .long, help: "Subscriber JWT, sent as 'Authorization: Bearer'. Default: $STATUSHUB_TOKEN.")
    var token: String?

    @Option(name: .long, help: "For wss:// URLs: trust this PEM certificate (or CA) instead of the system's.")
    var caFile: String?

    @Option(name: .long, help: "For wss:// URLs: the name the certificate must carry, when it differs from the URL's host.")
    var serverName: String?

    @Flag(name: .long, help: "Print the cached state of every matching entity first.")
    var snapshot = false

    @Option(name: .long, help: "Print the newest this many alerts and other feed events of the patterns first (0–100; docs/protocol.md, Recent feed events).")
    var recent = 0

    @Option(name: .long, help: "A server-side filter on the events' fields, e.g. 'data.severity in (high, critical)' (docs/protocol.md, Filters).")
    var filter: String?

    @Option(name: .long, help: "Every this many seconds, report the ingest-to-here latency of the events received to the hub ({\"op\":\"report\"}; 0: never).")
    var report = 0.0

    @Argument(help: "Channel patterns: 'resource-status', 'machine:M-203', 'line:Line-2:*', 'line:*:alerts:*'.")
    var patterns: [String]

    func validate() throws {
        guard !patterns.isEmpty else { throw ValidationError("name at least one channel pattern") }
        guard (0...ClientMessage.maxRecent).contains(recent) else { throw ValidationError("--recent must be \(ClientMessage.recentRule)") }
        if let filter {
            do { _ = try EventFilter.parse(filter) } catch { throw ValidationError("--filter: \(error.reason)") }
        }
        for pattern in patterns {
            do { _ = try ChannelPattern(parsing: pattern) } catch { throw ValidationError(error.reason) }
        }
    }

    func run() async throws {
        let logger = Logger(label: "statushub-tail")
        var request: [String: JSONValue] = [
            "op": .string("subscribe"), "id": .string("tail"),
            "channels": .array(patterns.map { .string($0) }), "snapshot": .bool(snapshot),
        ]
        if let filter { request["filter"] = .string(filter) }
        if recent > 0 { request["recent"] = .number(Double(recent)) }
        let subscribe = try JSONEncoder().encode(JSONValue.object(request))
        let reporting = report > 0 ? await LatencySamples(
            categories: Self.categories(wsURL: url, token: token ?? ProcessInfo.processInfo.environment["STATUSHUB_TOKEN"]), every: report) : nil
        var headers = HTTPFields()
        if let token = token ?? ProcessInfo.processInfo.environment["STATUSHUB_TOKEN"] {
            headers[.authorization] = "Bearer \(token)"
        }
        var tls: TLSConfiguration?
        if let caFile {
            var configuration = TLSConfiguration.makeClientConfiguration()
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw ValidationError("--ca-file: cannot load PEM certificates from \(caFile)")
            }
            tls = configuration
        }
        let closeFrame = try await WebSocketClient.connect(
            url: url, configuration: .init(maxFrameSize: 1 << 26, additionalHeaders: headers, sniHostname: serverName),
            tlsConfiguration: tls, logger: logger
        ) { inbound, outbound, _ in
            try await outbound.write(.text(String(decoding: subscribe, as: UTF8.self)))
            var latency = reporting
            for try await message in inbound.messages(maxSize: 1 << 26) {
                guard case .text(let text) = message else { continue }
                let shown = Self.show(text)
                if latency != nil, let shown, let report = latency!.record(shown) {
                    try await outbound.write(.text(report))
                }
            }
        }
        if let closeFrame, closeFrame.closeCode != .normalClosure {
            FileHandle.standardError.write(Data("closed: \(closeFrame.closeCode) \(closeFrame.reason ?? "")\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Each event type's category, from the hub's catalog (`GET /v1/catalog` beside the WebSocket URL); empty when it
    /// cannot be read (then nothing is reported).
    static func categories(wsURL: String, token: String?) async -> [String: String] {
        var http = wsURL.replacingOccurrences(of: "wss://", with: "https://").replacingOccurrences(of: "ws://", with: "http://")
        if let path = http.range(of: "/v1/ws") { http = String(http[..<path.lowerBound]) }
        guard let url = URL(string: http + "/v1/catalog") else { return [:] }
        var request = URLRequest(url: url)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        guard let (data, _) = try? await URLSession.shared.data(for: request), let catalog = try? JSONValue.parse(Array(data)),
            case .array(let types)? = catalog["event_types"]
        else {
            FileHandle.standardError.write(Data("--report: cannot read \(url); no latency reports\n".utf8))
            return [:]
        }
        var categories: [String: String] = ["counter_changed": "counters"]
        for type in types {
            if let name = type["name"]?.stringValue, let category = type["category"]?.stringValue { categories[name] = category }
        }
        return categories
    }

    /// Events go to stdout one a line (pipe them into jq); protocol replies go to stderr. Returns a live event.
    @discardableResult
    static func show(_ text: String) -> JSONValue? {
        guard case .object(let message)? = try? JSONValue.parse(text.utf8) else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
            return nil
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Written straight to the file descriptor, not through print's buffer: `tail | jq` must see each event
        // as it arrives, not when a buffer fills.
        func emit(_ value: JSONValue) {
            guard var bytes = try? encoder.encode(value) else { return }
            bytes.append(UInt8(ascii: "\n"))
            FileHandle.standardOutput.write(bytes)
        }
        switch message["op"]?.stringValue {
        case "event":
            if let event = message["event"] { emit(event) }
            return message["event"]
        case "snapshot", "recent":
            if case .array(let events)? = message["events"] { events.forEach(emit) }
        case "reported":
            break
        default:
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
        return nil
    }
}

/// `statushub tail --report`: ingest-to-here latency of live events, by category, sent as `{"op":"report"}`.
struct LatencySamples {
    let categories: [String: String]
    let every: Double
    private var samples: [String: [JSONValue]] = [:]
    private var count = 0
    private var last = Date()

    init(categories: [String: String], every: Double) {
        self.categories = categories
        self.every = every
    }

    /// Records the event; returns the report to send when one is due.
    mutating func record(_ event: JSONValue) -> String? {
        if let type = event["event_type"]?.stringValue, let category = categories[type],
            let receivedAt = event["received_at"]?.stringValue, let moment = Timestamps.parse(receivedAt), count < ClientMessage.maxReportSamples
        {
            samples[category, default: []].append(.number(max(0, Date().timeIntervalSince(moment) * 1000)))
            count += 1
        }
        guard Date().timeIntervalSince(last) >= every, count > 0 else { return nil }
        var bytes: [UInt8] = []
        JSONValue.object(["op": .string("report"), "id": .string("tail"), "samples_ms": .object(samples.mapValues(JSONValue.array))]).write(into: &bytes)
        samples = [:]
        count = 0
        last = Date()
        return String(decoding: bytes, as: UTF8.self)
    }
}
