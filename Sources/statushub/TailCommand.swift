import ArgumentParser
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import StatusHubCore

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Subscribe to channel patterns and print every event, one JSON object a line.",
        discussion: """
              statushub tail resource-status
              statushub tail --snapshot 'line:Line-2:*' 'machine:*'
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

    @Argument(help: "Channel patterns: 'resource-status', 'machine:M-203', 'line:Line-2:*', 'line:*:alerts:*'.")
    var patterns: [String]

    func validate() throws {
        guard !patterns.isEmpty else { throw ValidationError("name at least one channel pattern") }
        for pattern in patterns {
            do { _ = try ChannelPattern(parsing: pattern) } catch { throw ValidationError(error.reason) }
        }
    }

    func run() async throws {
        let logger = Logger(label: "statushub-tail")
        let subscribe = try JSONEncoder().encode(JSONValue.object([
            "op": .string("subscribe"), "id": .string("tail"),
            "channels": .array(patterns.map { .string($0) }), "snapshot": .bool(snapshot),
        ]))
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
            for try await message in inbound.messages(maxSize: 1 << 26) {
                guard case .text(let text) = message else { continue }
                Self.show(text)
            }
        }
        if let closeFrame, closeFrame.closeCode != .normalClosure {
            FileHandle.standardError.write(Data("closed: \(closeFrame.closeCode) \(closeFrame.reason ?? "")\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Events go to stdout one a line (pipe them into jq); protocol replies go to stderr.
    static func show(_ text: String) {
        guard case .object(let message)? = try? JSONValue.parse(text.utf8) else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
            return
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
        case "snapshot":
            if case .array(let events)? = message["events"] { events.forEach(emit) }
        default:
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }
}
