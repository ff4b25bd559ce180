import Foundation
import StatusHubCore
import StatusHubServer
import Testing

/// The parts of the WebSocket protocol the handler-served session does itself rather than a WebSocket library:
/// message order under a burst, the client's pings, the close handshake, reserved bits.
@Suite("WebSocket handshake and framing")
struct WebSocketHandshakeTests {
    /// Server frames (unmasked) after the response head: opcode and payload of each complete one.
    static func frames(in stream: [UInt8]) -> [(opcode: UInt8, payload: [UInt8])] {
        rawFrames(in: stream).map { ($0.first & 0x0F, $0.payload) }
    }

    /// Server frames (unmasked) after the response head: the first byte (FIN, RSV bits, opcode) and payload of each
    /// complete one.
    static func rawFrames(in stream: [UInt8]) -> [(first: UInt8, payload: [UInt8])] {
        guard let headEnd = stream.indices.first(where: { stream[$0...].starts(with: Array("\r\n\r\n".utf8)) }) else { return [] }
        var frames: [(UInt8, [UInt8])] = []
        var index = headEnd + 4
        while index + 2 <= stream.count {
            var length = Int(stream[index + 1] & 0x7F)
            var offset = index + 2
            if length == 126 {
                guard offset + 2 <= stream.count else { break }
                length = Int(stream[offset]) << 8 | Int(stream[offset + 1])
                offset += 2
            } else if length == 127 {
                guard offset + 8 <= stream.count else { break }
                length = stream[offset..<offset + 8].reduce(0) { $0 << 8 | Int($1) }
                offset += 8
            }
            guard offset + length <= stream.count else { break }
            frames.append((stream[index], Array(stream[offset..<offset + length])))
            index = offset + length
        }
        return frames
    }

    /// Upgrades a raw socket, sends `bytes` in one write, and reads until `done` holds for the frames received (or
    /// the hub closes, or 10 s pass). Returns the frames and whether the socket was closed (waiting up to 3 s more
    /// for it when `awaitingClose`).
    static func exchange(
        port: Int, sending bytes: [UInt8], awaitingClose: Bool = false,
        until done: @escaping @Sendable ([(opcode: UInt8, payload: [UInt8])]) -> Bool
    ) async throws -> (frames: [(opcode: UInt8, payload: [UInt8])], closed: Bool) {
        try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            try socket.upgrade()
            try socket.send(bytes)
            let (stream, closed) = socket.read(timeout: 10) { done(frames(in: $0)) }
            // After the answer the hub closes the socket: read on to see it.
            let closedAfter = closed || (awaitingClose && socket.read(timeout: 3).closed)
            return (frames(in: stream), closedAfter)
        }
    }

    /// 100 messages in one packet — more than the session queues before it stops reading the socket — are all
    /// answered, in order.
    @Test
    func aBurstOfMessagesIsAnsweredInOrder() async throws {
        try await withHub(engine: .memory, configure: { $0.websocket.maxMessagesPerSecond = 0 }) { hub in
            let burst = (0..<100).flatMap { RawSocket.frame(opcode: 1, payload: Array(#"{"op":"ping","id":"p\#($0)"}"#.utf8)) }
            let (frames, _) = try await Self.exchange(port: hub.port, sending: burst) { $0.count >= 100 }
            let ids = frames.compactMap { frame -> String? in
                guard frame.opcode == 1, case .object(let reply)? = try? JSONValue.parse(frame.payload) else { return nil }
                return reply["id"]?.stringValue
            }
            #expect(ids == (0..<100).map { "p\($0)" })
        }
    }

    /// A client's ping is answered with a pong carrying its payload.
    @Test
    func aClientPingIsAnsweredWithItsPayload() async throws {
        try await withHub(engine: .memory) { hub in
            let (frames, _) = try await Self.exchange(port: hub.port, sending: RawSocket.frame(opcode: 9, payload: Array("hello".utf8))) {
                $0.contains { $0.opcode == 10 }
            }
            #expect(frames.first { $0.opcode == 10 }?.payload == Array("hello".utf8))
        }
    }

    /// The client's close is answered with 1000 and the socket closed; a malformed close (a code no endpoint may
    /// send, a one-byte body) with 1002 (RFC 6455 §7.4).
    @Test(arguments: [(1000, 1000), (4000, 1000), (1005, 1002), (999, 1002), (nil, 1002)] as [(Int?, Int)])
    func theClientsCloseIsAnsweredAndTheSocketClosed(_ sent: (code: Int?, answer: Int)) async throws {
        try await withHub(engine: .memory) { hub in
            let body: [UInt8] = sent.code.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } ?? [0x03]
            let (frames, closed) = try await Self.exchange(port: hub.port, sending: RawSocket.frame(opcode: 8, payload: body), awaitingClose: true) {
                $0.contains { $0.opcode == 8 }
            }
            let close = frames.first { $0.opcode == 8 }?.payload
            #expect(close.map { Int($0[0]) << 8 | Int($0[1]) } == sent.answer)
            #expect(closed)
        }
    }

    /// RSV bits without a negotiated extension: 1002.
    @Test
    func reservedBitsWithoutAnExtensionCloseWith1002() async throws {
        try await withHub(engine: .memory) { hub in
            var frame = RawSocket.frame(opcode: 1, payload: Array(#"{"op":"ping","id":"r"}"#.utf8))
            frame[0] |= 0x40  // RSV1
            let code = try await ProtocolAbuseTests.closeCode(port: hub.port, after: [frame])
            #expect(code == 1002)
        }
    }

    /// What is not upgraded: `/v1/ws` without `Upgrade` gets the JSON 426, an upgrade to another path is served as a
    /// plain request, and an upgrade asked for on a connection that already served a request a 307 to a fresh
    /// connection.
    @Test func requestsThatAreNotUpgradedAreAnsweredAsBefore() async throws {
        try await withHub(engine: .memory) { hub in
            let plain = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return socket.responseStatus()
            }
            #expect(plain.status == 426)
            #expect(plain.text.contains(#""field":"Upgrade""#))
            let elsewhere = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(path: "/health")
                return socket.responseStatus()
            }
            #expect(elsewhere.status == 200)
            let late = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                _ = socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains(#"{"status":"ok"}"#) }
                try socket.upgrade(path: "/v1/ws?token=t")
                return socket.responseStatus()
            }
            #expect(late.status == 307)
            #expect(late.text.lowercased().contains("location: /v1/ws?token=t"))
        }
    }

    /// A browser cannot read the 400 that refused its handshake (a malformed subscribe in the URL: a line typed with
    /// a space); it asks again without `Upgrade`, and gets the same refusal instead of the 426 every plain GET got.
    @Test(arguments: [
        ("/v1/ws?channels=line:Line%202:*,counters&snapshot=true", 400, #""field":"channels""#),
        ("/v1/ws?channels=line:Line-2:*&recent=500", 400, #""field":"recent""#),
        ("/v1/ws?channels=line:Line-2:*,counters&snapshot=true&recent=50", 426, #""field":"Upgrade""#),
    ] as [(String, Int, String)])
    func aPlainGetOfAWebSocketURLSaysWhyItsHandshakeWasRefused(_ target: String, status: Int, expected: String) async throws {
        try await withHub(engine: .memory) { hub in
            let handshake = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(Self.key)Sec-WebSocket-Version: 13\r\n\r\n")
                return String(decoding: socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }.bytes, as: UTF8.self)
            }
            let plain = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return String(decoding: socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains(expected) }.bytes, as: UTF8.self)
            }
            #expect(plain.hasPrefix("HTTP/1.1 \(status) "), "\(plain)")
            #expect(plain.contains(expected), "\(plain)")
            // The handshake itself: refused with the same answer, or upgraded.
            #expect(handshake.hasPrefix(status == 400 ? "HTTP/1.1 400 " : "HTTP/1.1 101 "), "\(handshake)")
        }
    }

    /// A handshake the node refuses is the client's fault, answered with the field and reason: it put an `error`
    /// ("Error handling upgrade result") in the node's log for every such client, which an operator reads as the hub's.
    @Test func aRefusedHandshakeIsNoErrorInTheNodesLog() async throws {
        let stderr = Pipe()
        let hub = try await HubProcess.start(environment: ["STATUSHUB_LOG_LEVEL": "info"], stderr: stderr)
        var answers: [String] = []
        for request in [
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(Self.key)Sec-WebSocket-Version: 8\r\n\r\n",
            "POST /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(Self.key)Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ] {
            answers.append(try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send(request)
                // Until the node closes the connection, as it does after a refused handshake.
                return String(decoding: socket.read(timeout: 10) { _ in false }.bytes, as: UTF8.self)
            })
        }
        _ = await hub.terminate()
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(answers.map { $0.prefix(12) } == ["HTTP/1.1 426", "HTTP/1.1 405", "HTTP/1.1 400"], "\(answers)")
        #expect(!log.contains(" error "), "\(log.suffix(1000))")
    }

    static let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    static let event = #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-H2C","timestamp":"2025-11-18T14:23:45.678Z","data":{"current_status":"idle"},"metadata":{"source":"mes","triggered_by":"test"}}"#

    /// An `Upgrade` the node does not take is ignored (RFC 9110 §7.8) and a handshake the WebSocket upgrader would
    /// refuse is answered with the field and reason. swift-nio's typed upgrade handler dropped the request head of
    /// both, and the client got no answer at all (`curl --http2` among them).
    @Test(arguments: [
        ("GET /health HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", 200, #"{"status":"ok"}"#),
        ("GET /health HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(key)Sec-WebSocket-Version: 13\r\n\r\n", 200, #"{"status":"ok"}"#),
        ("GET /v1/nowhere HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 404, #""field":"path""#),
        ("GET /v1/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, #""field":"Sec-WebSocket-Key""#),
        ("GET /v1/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(key)Sec-WebSocket-Version: 8\r\n\r\n", 426, #""field":"Sec-WebSocket-Version""#),
        ("POST /v1/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\(key)Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", 405, #""field":"method""#),
        ("POST /v1/events HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Type: application/json\r\nContent-Length: \(event.utf8.count)\r\n\r\n\(event)", 202, #""accepted":[{"#),
        ("GET /v1/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\(key)Sec-WebSocket-Version: 13\r\n\r\n", 101, "Switching Protocols"),
    ] as [(String, Int, String)])
    func upgradesTheNodeDoesNotTakeAreAnswered(_ request: String, status: Int, expected: String) async throws {
        try await withHub(engine: .memory) { hub in
            let answer = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send(request.replacingOccurrences(of: " HTTP/1.1\r\n", with: " HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
                let (bytes, _) = socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains(expected) }
                return String(decoding: bytes, as: UTF8.self)
            }
            #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "\(answer)")
            #expect(answer.contains(expected))
            if status == 426 { #expect(answer.lowercased().contains("sec-websocket-version: 13")) }
        }
    }
}
