import Foundation

/// A raw HTTP/1.1 client for `GET /v1/sse`: reads the response head, de-chunks the body and splits it into SSE
/// messages, so a test sees exactly what a browser's `EventSource` would parse.
final class SSEClient: @unchecked Sendable {
    struct Message: Equatable {
        var id: String?
        var event: String?
        var data: String
        var comment: Bool { data.isEmpty && event == nil && id == nil }
    }

    private let socket: RawSocket
    private var raw: [UInt8] = []
    private var body: [UInt8] = []
    private(set) var status: Int?
    private(set) var head = ""
    private(set) var closed = false

    /// Sends the request and waits for the response head.
    init(port: Int, path: String, headers: [String: String] = [:]) async throws {
        socket = try RawSocket(port: port)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        try socket.send(request + "\r\n")
        try await RawSocket.offPool { [self] in
            let (bytes, closed) = socket.read(timeout: 10) { $0.firstRange(of: Array("\r\n\r\n".utf8)) != nil }
            self.closed = closed
            guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            head = String(decoding: bytes[..<end.lowerBound], as: UTF8.self)
            status = head.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
            raw = Array(bytes[end.upperBound...])
        }
    }

    /// The whole body of a non-streaming answer (an error).
    func errorBody() async throws -> String {
        try await RawSocket.offPool { [self] in
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            if raw.count < length { raw += socket.read(timeout: 30) { [raw] in raw.count + $0.count >= length }.bytes }
            return String(decoding: raw, as: UTF8.self)
        }
    }

    /// The next message (comments included, as a message with empty data), within `timeout`.
    func next(timeout: TimeInterval = 10) async throws -> Message {
        try await RawSocket.offPool { [self] in
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                dechunk()
                if let end = body.firstRange(of: [0x0A, 0x0A]) {
                    let text = String(decoding: body[..<end.lowerBound], as: UTF8.self)
                    body.removeSubrange(..<end.upperBound)
                    return Self.message(text)
                }
                guard !closed, Date() < deadline else { throw TestSocket.Timeout(waitingFor: "an SSE message (closed: \(closed))") }
                let (bytes, closed) = socket.read(timeout: 0.2) { !$0.isEmpty }
                raw += bytes
                self.closed = closed
            }
        }
    }

    /// The next message that is not a comment and has data of this `op`.
    func next(op: String, timeout: TimeInterval = 10) async throws -> Message {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let message = try await next(timeout: max(0.1, deadline.timeIntervalSinceNow))
            if message.data.contains(#""op":"\#(op)""#) { return message }
        }
    }

    /// Messages (not comments) that arrive within `window`.
    func drain(for window: TimeInterval) async -> [Message] {
        var found: [Message] = []
        let deadline = Date().addingTimeInterval(window)
        while deadline.timeIntervalSinceNow > 0 {
            guard let message = try? await next(timeout: deadline.timeIntervalSinceNow) else { break }
            if !message.comment { found.append(message) }
        }
        return found
    }

    func close() { socket.reset() }

    private static func message(_ text: String) -> Message {
        var message = Message(id: nil, event: nil, data: "")
        var data: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("id: ") { message.id = String(line.dropFirst(4)) }
            if line.hasPrefix("event: ") { message.event = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data.append(String(line.dropFirst(6))) }
        }
        message.data = data.joined(separator: "\n")
        return message
    }

    /// Moves whole chunks from `raw` to `body`.
    private func dechunk() {
        while let lineEnd = raw.firstRange(of: [0x0D, 0x0A]) {
            guard let size = Int(String(decoding: raw[..<lineEnd.lowerBound], as: UTF8.self), radix: 16) else { return }
            guard raw.count >= lineEnd.upperBound + size + 2 else { return }
            body += raw[lineEnd.upperBound..<lineEnd.upperBound + size]
            raw.removeSubrange(..<(lineEnd.upperBound + size + 2))
            if size == 0 { closed = true }
        }
    }
}
