import Foundation
import HummingbirdWSClient
import HummingbirdWSCompression
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import StatusHubCore

/// A real WebSocket client over a real socket, for driving a hub the way a dashboard does.
final class TestSocket: Sendable {
    struct Timeout: Error, CustomStringConvertible {
        var waitingFor: String
        var description: String { "timed out waiting for \(waitingFor)" }
    }

    private let inbox = Inbox()
    private let outgoing: AsyncStream<WebSocketOutboundWriter.OutboundFrame>.Continuation
    private let task: Task<WebSocketCloseFrame?, any Error>

    /// Connects to `ws://127.0.0.1:port/v1/ws` (`wss://` with `tls`, verified for the name `localhost`) and
    /// starts collecting every text message the hub sends.
    init(port: Int, compression: Bool = false, path: String = "/v1/ws", tls: TLSConfiguration? = nil) async throws {
        let (stream, continuation) = AsyncStream<WebSocketOutboundWriter.OutboundFrame>.makeStream()
        outgoing = continuation
        let inbox = inbox
        let connected = Inbox()
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: 1 << 24, extensions: compression ? [.perMessageDeflate(maxDecompressedFrameSize: 1 << 24)] : [],
            sniHostname: tls == nil ? nil : "localhost")
        let url = "\(tls == nil ? "ws" : "wss")://127.0.0.1:\(port)\(path)"
        task = Task {
            defer { Task { await inbox.finish() } }
            return try await WebSocketClient.connect(
                url: url, configuration: configuration, tlsConfiguration: tls, logger: Logger(label: "test-socket")
            ) {
                inbound, outbound, _ in
                await connected.put("connected")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await frame in stream { try await outbound.write(frame) }
                        try await outbound.close(.normalClosure, reason: nil)
                    }
                    group.addTask {
                        for try await message in inbound.messages(maxSize: 1 << 24) {
                            if case .text(let text) = message { await inbox.put(text) }
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
        _ = try await connected.next(timeout: .seconds(10), waitingFor: "the WebSocket handshake")
    }

    func send(_ text: String) { outgoing.yield(.text(text)) }
    func send(frame: WebSocketOutboundWriter.OutboundFrame) { outgoing.yield(frame) }

    /// The next message the hub sent, decoded as a JSON object.
    func next(timeout: Duration = .seconds(10)) async throws -> [String: JSONValue] {
        let text = try await inbox.next(timeout: timeout, waitingFor: "a message")
        guard case .object(let object) = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
            throw Timeout(waitingFor: "a JSON object, got \(text)")
        }
        return object
    }

    /// Skips messages until one with this `op` arrives.
    func next(op: String, timeout: Duration = .seconds(10)) async throws -> [String: JSONValue] {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let message = try await next(timeout: deadline - ContinuousClock.now)
            if message["op"]?.stringValue == op { return message }
        }
    }

    /// Subscribes and waits for `subscribed` (and the snapshot, when asked for).
    @discardableResult
    func subscribe(_ patterns: [String], snapshot: Bool = false, id: String = "s") async throws -> [StoredEventJSON] {
        let channels = patterns.map { "\"\($0)\"" }.joined(separator: ",")
        send(#"{"op":"subscribe","id":"\#(id)","channels":[\#(channels)],"snapshot":\#(snapshot)}"#)
        let reply = try await next()
        guard reply["op"]?.stringValue == "subscribed" else { throw Timeout(waitingFor: "subscribed, got \(reply)") }
        guard snapshot else { return [] }
        // A large snapshot comes in parts, each but the last marked `"more":true`.
        var collected: [StoredEventJSON] = []
        while true {
            let snapshotMessage = try await next()
            guard snapshotMessage["op"]?.stringValue == "snapshot", case .array(let events)? = snapshotMessage["events"] else {
                throw Timeout(waitingFor: "snapshot, got \(snapshotMessage)")
            }
            collected += events.compactMap(\.objectValue)
            if snapshotMessage["more"] != .bool(true) { return collected }
        }
    }

    /// The next `event` message's event.
    func nextEvent(timeout: Duration = .seconds(10)) async throws -> StoredEventJSON {
        let message = try await next(op: "event", timeout: timeout)
        guard let event = message["event"]?.objectValue else { throw Timeout(waitingFor: "an event body") }
        return event
    }

    /// Messages that arrive within `window`: to show that nothing (more) is sent.
    func drain(for window: Duration) async -> [String] {
        await inbox.drain(for: window)
    }

    /// Ends the client side and returns the close frame the hub sent, if any.
    func close() async -> WebSocketCloseFrame? {
        outgoing.finish()
        return try? await task.value
    }

    /// Waits for the hub to close the connection and returns its close frame.
    func closedByHub(timeout: Duration = .seconds(10)) async throws -> WebSocketCloseFrame? {
        try await withThrowingTaskGroup(of: WebSocketCloseFrame?.self) { group in
            group.addTask { try await self.task.value }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw Timeout(waitingFor: "the hub to close the socket")
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}

typealias StoredEventJSON = [String: JSONValue]

/// Messages received so far, and a way to wait for the next one without racing the receiver.
actor Inbox {
    private var items: [String] = []
    private var finished = false

    func put(_ item: String) { items.append(item) }
    func finish() { finished = true }

    func next(timeout: Duration, waitingFor what: String) async throws -> String {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while items.isEmpty {
            if finished { throw TestSocket.Timeout(waitingFor: "\(what) (connection closed)") }
            if ContinuousClock.now >= deadline { throw TestSocket.Timeout(waitingFor: what) }
            try await Task.sleep(for: .milliseconds(2))
        }
        return items.removeFirst()
    }

    func drain(for window: Duration) async -> [String] {
        try? await Task.sleep(for: window)
        defer { items.removeAll() }
        return items
    }
}
