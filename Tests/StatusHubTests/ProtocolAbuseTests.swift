import Foundation
import NIOWebSocket
import StatusHubCore
import StatusHubServer
import Testing

/// What a hostile or broken client can do at the protocol level, each done for real over a socket: the hub
/// answers with a close code (or closes), and the bystander on the same node keeps getting its events.
@Suite("Protocol abuse")
struct ProtocolAbuseTests {
    /// A bystander subscribed to alerts, to show the node carries on after each abuse.
    static func bystanderStillServed(_ hub: RunningHub, _ bystander: TestSocket, entity: String) async throws {
        _ = try await HTTP.post(port: hub.port, event: SampleEvents.alert(entity))
        #expect(try await bystander.nextEvent()["entity_id"] == .string(entity))
    }

    /// Upgrades a raw socket, sends `frames`, and returns the close code the hub answers with.
    static func closeCode(port: Int, after frames: [[UInt8]]) async throws -> UInt16? {
        try await closeFrame(port: port, after: frames)?.code
    }

    /// Upgrades a raw socket (asking for `extensions`, if any), sends `frames`, and returns the code and reason of the
    /// close frame the hub answers with.
    static func closeFrame(port: Int, after frames: [[UInt8]], extensions: String? = nil) async throws -> (code: UInt16, reason: String)? {
        try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            try socket.upgrade(headers: extensions.map { ["Sec-WebSocket-Extensions": $0] } ?? [:])
            _ = socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }
            for frame in frames { try? socket.send(frame) }
            // The response head was consumed above; closePayload(in:) expects one in front of the frames.
            let head = Array("HTTP/1.1 101\r\n\r\n".utf8)
            let stream = head + socket.read(timeout: 10) { RawSocket.closePayload(in: head + $0) != nil }.bytes
            guard let payload = RawSocket.closePayload(in: stream), payload.count >= 2 else { return nil }
            return (UInt16(payload[0]) << 8 | UInt16(payload[1]), String(decoding: payload.dropFirst(2), as: UTF8.self))
        }
    }

    /// Each limit or rule behind a shared close code says which it was: more than 1,024 fragments is not a frame
    /// over websocket.max_frame_bytes, and a compressed message that is not DEFLATE is not invalid UTF-8.
    @Test func closeReasonsNameWhatWasBroken() async throws {
        try await withHub(engine: .memory) { hub in
            let ping = Array(#"{"op":"ping"}"#.utf8)
            var fragments = [RawSocket.frame(opcode: 1, fin: false, payload: [ping[0]])]
            fragments += (0..<1024).map { _ in RawSocket.frame(opcode: 0, fin: false, payload: [0x20]) }
            fragments.append(RawSocket.frame(opcode: 0, fin: true, payload: Array(ping.dropFirst())))
            let fragmented = try #require(try await Self.closeFrame(port: hub.port, after: fragments))
            #expect(fragmented.code == 1009)
            #expect(fragmented.reason.contains("more than 1024 fragments"), "\(fragmented.reason)")

            let corrupt = try #require(try await Self.closeFrame(
                port: hub.port, after: [RawSocket.frame(opcode: 0x41, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0x00])], extensions: "permessage-deflate"))
            #expect(corrupt.code == 1007)
            #expect(corrupt.reason.contains("not DEFLATE") && !corrupt.reason.contains("UTF-8"), "\(corrupt.reason)")

            let notUTF8 = try #require(try await Self.closeFrame(port: hub.port, after: [RawSocket.frame(opcode: 1, payload: [0xFF, 0xFE])]))
            #expect(notUTF8.code == 1007 && notUTF8.reason.contains("UTF-8"), "\(notUTF8.reason)")
        }
    }

    /// A client may close with any code registered with IANA (1012–1014 came after RFC 6455) or in 3000–4999: the
    /// hub answers 1000. Codes never sent on the wire (1005, 1006, 1015) or reserved are a protocol error (1002).
    @Test func aClientsCloseCodeIsAnsweredAsRegistered() async throws {
        let answers: [(sent: Int, answered: UInt16)] = [
            (1000, 1000), (1001, 1000), (1011, 1000), (1012, 1000), (1013, 1000), (1014, 1000), (3000, 1000), (4999, 1000),
            (1004, 1002), (1005, 1002), (1006, 1002), (1015, 1002), (1016, 1002), (2999, 1002), (5000, 1002),
        ]
        try await withHub(engine: .memory) { hub in
            for (sent, answered) in answers {
                let close = RawSocket.frame(opcode: 8, payload: [UInt8(sent >> 8), UInt8(sent & 0xFF)])
                let code = try await Self.closeCode(port: hub.port, after: [close])
                #expect(code == answered, "client closed with \(sent)")
            }
        }
    }

    @Test func invalidUTF8TextFrameClosesWith1007() async throws {
        try await withHub(engine: .memory) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            // `{"op":"ping","id":"` + C3 28 (a lead byte followed by a non-continuation byte) + `"}`
            let invalid = Array(#"{"op":"ping","id":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
            let code = try await Self.closeCode(port: hub.port, after: [RawSocket.frame(opcode: 1, payload: invalid)])
            #expect(code == 1007)
            try await Self.bystanderStillServed(hub, bystander, entity: "M-1007")
            _ = await bystander.close()
        }
    }

    /// Frames NIO's decoder itself refuses (RFC 6455 §5.5: a control frame is never fragmented and carries at most
    /// 125 bytes) are answered with 1002 by the hub's own handler behind the decoder, and the socket is closed.
    @Test(arguments: [
        ("a ping of 126 bytes", RawSocket.frame(opcode: 9, payload: [UInt8](repeating: UInt8(ascii: "p"), count: 126))),
        ("a ping without FIN", RawSocket.frame(opcode: 9, fin: false, payload: Array("p".utf8))),
    ])
    func controlFramesTheDecoderRefusesCloseWith1002(_ name: String, _ frame: [UInt8]) async throws {
        try await withHub(engine: .memory) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            #expect(try await Self.closeCode(port: hub.port, after: [frame]) == 1002, "\(name)")
            try await Self.bystanderStillServed(hub, bystander, entity: "M-1002")
            _ = await bystander.close()
        }
    }

    @Test func fragmentedMessagePastTheLimitClosesWith1009() async throws {
        try await withHub(engine: .memory, configure: { $0.websocket.maxFrameBytes = 1024 }) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            // Every fragment is under the frame limit; together they are not.
            let piece = [UInt8](repeating: UInt8(ascii: "x"), count: 800)
            let frames = [
                RawSocket.frame(opcode: 1, fin: false, payload: Array(#"{"op":"ping","id":""#.utf8) + piece),
                RawSocket.frame(opcode: 0, fin: false, payload: piece),
                RawSocket.frame(opcode: 0, fin: true, payload: Array(#""}"#.utf8)),
            ]
            #expect(try await Self.closeCode(port: hub.port, after: frames) == 1009)
            try await Self.bystanderStillServed(hub, bystander, entity: "M-1009")
            _ = await bystander.close()
        }
    }

    /// permessage-deflate: a 4 MiB message of one repeated byte deflates to a few KiB, under every frame limit;
    /// the hub stops inflating at websocket.max_frame_bytes and closes with 1009 instead of allocating it.
    @Test func compressionBombIsClosedNotInflated() async throws {
        try await withHub(engine: .memory) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            let bomber = try await TestSocket(port: hub.port, compression: true)
            bomber.send(#"{"op":"ping","id":""# + String(repeating: "A", count: 4 << 20) + #""}"#)
            let close = try await bomber.closedByHub()
            #expect(close?.closeCode == .messageTooLarge)
            try await Self.bystanderStillServed(hub, bystander, entity: "M-BOMB")
            _ = await bystander.close()
        }
    }

    /// RFC 6455 §5.1: a server closes the connection on an unmasked client frame, with 1002. Also when the frame
    /// comes in the same packet as the upgrade request, before the session has started.
    @Test func unmaskedClientFrameClosesWith1002() async throws {
        try await withHub(engine: .memory) { hub in
            let bystander = try await TestSocket(port: hub.port)
            try await bystander.subscribe(["alerts"])
            let ping = Array(#"{"op":"ping","id":"p"}"#.utf8)
            #expect(try await Self.closeCode(port: hub.port, after: [RawSocket.frame(opcode: 1, masked: false, payload: ping)]) == 1002)
            let withTheRequest = try await RawSocket.offPool { () -> UInt16? in
                let socket = try RawSocket(port: hub.port)
                var request = "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                try socket.send(Array(request.utf8) + RawSocket.frame(opcode: 1, masked: false, payload: ping))
                return RawSocket.closeCode(in: socket.read(timeout: 10) { RawSocket.closeCode(in: $0) != nil }.bytes)
            }
            #expect(withTheRequest == 1002)
            // A masked frame on the same kind of connection is answered.
            let answered = try await RawSocket.offPool { () -> Bool in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade()
                try socket.send(RawSocket.frame(opcode: 1, payload: ping))
                return String(decoding: socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains("pong") }.bytes, as: UTF8.self).contains("pong")
            }
            #expect(answered)
            try await Self.bystanderStillServed(hub, bystander, entity: "M-1002")
            _ = await bystander.close()
        }
    }

    /// One limit for every message: `websocket.max_frame_bytes` holds whether the client compressed it or not.
    /// (The library's own inflate bound let ~98 KiB through a 64 KiB limit.)
    @Test(.timeLimit(.minutes(3)))
    func compressedAndPlainMessagesShareOneLimit() async throws {
        try await withHub(engine: .memory) { hub in
            let limit = hub.hub.config.websocket.maxFrameBytes
            func ping(bytes: Int) -> String {
                let frame = #"{"op":"ping","id":""# + "\"}"
                return #"{"op":"ping","id":""# + String(repeating: "A", count: bytes - frame.utf8.count) + "\"}"
            }
            for compressed in [false, true] {
                let atLimit = try await TestSocket(port: hub.port, compression: compressed)
                atLimit.send(ping(bytes: limit))
                let answer = try? await atLimit.next()
                #expect(answer?["op"] != nil, "a message of exactly the limit is answered (compressed: \(compressed))")
                _ = await atLimit.close()
                for size in [limit + 1, limit + limit / 2] {
                    let over = try await TestSocket(port: hub.port, compression: compressed)
                    over.send(ping(bytes: size))
                    let close = try? await over.closedByHub(timeout: .seconds(30))
                    #expect(close?.closeCode == .messageTooLarge, "\(size) bytes, compressed: \(compressed)")
                    // A socket the hub did not close would hold the hub's shutdown.
                    if close == nil { _ = await over.close() }
                }
            }
        }
    }

    /// RFC 7692: an offer the hub cannot accept is declined — 101 without the extension — not a failed handshake.
    /// `server_max_window_bits=8` is a valid offer zlib cannot serve (raw deflate's smallest window is 9, and the
    /// answer may not be larger); the others are malformed. An offer it can accept is answered in kind.
    @Test(arguments: [
        ("permessage-deflate; server_max_window_bits=8", nil),
        ("permessage-deflate; server_max_window_bits=16", nil),
        ("permessage-deflate; client_max_window_bits=7", nil),
        ("permessage-deflate; server_no_context_takeover=1", nil),
        ("permessage-deflate; x_unknown", nil),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate;server_max_window_bits=10"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
    ] as [(String, String?)])
    func extensionOffersAreAcceptedOrDeclinedNeverRefused(_ offer: String, _ answer: String?) async throws {
        try await withHub(engine: .memory) { hub in
            let (status, head, pong) = try await RawSocket.offPool { () -> (Int?, String, Bool) in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": offer])
                let (status, head) = socket.responseStatus()
                try? socket.send(RawSocket.frame(opcode: 1, payload: Array(#"{"op":"ping","id":"p"}"#.utf8)))
                let reply = socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains("pong") || $0.contains(0xC1) }
                return (status, head, !reply.bytes.isEmpty)
            }
            #expect(status == 101, "\(offer): \(head)")
            let extensions = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("sec-websocket-extensions:") }
            if let answer {
                #expect(extensions?.hasPrefix("Sec-WebSocket-Extensions: \(answer)") == true || extensions?.lowercased().hasPrefix("sec-websocket-extensions: \(answer.lowercased())") == true, "\(offer): \(head)")
            } else {
                #expect(extensions == nil, "\(offer): \(head)")
            }
            #expect(pong, "no answer to a ping after \(offer)")
        }
    }

    /// A client that sends its request line and then trickles header bytes (slowloris) never completes a request:
    /// the idle timeout closes it although bytes keep arriving.
    @Test func slowlorisHeadersAreTimedOut() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 1 }) { hub in
            let closedAfter = try await RawSocket.offPool { () -> Double? in
                let socket = try RawSocket(port: hub.port)
                let start = Date()
                try socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                for _ in 0..<100 {  // at most 20 s of trickling
                    if (try? socket.send("X")) == nil { return Date().timeIntervalSince(start) }
                    if socket.read(timeout: 0.2).closed { return Date().timeIntervalSince(start) }
                }
                return nil
            }
            #expect(closedAfter != nil, "the hub never closed a connection that trickled its headers for 20 s")
            // And the node still answers a well-behaved client. A starved full-suite run once saw this request's
            // fresh connection reset: with a 1 s idle timeout, a client thread held off the CPU between its connect and
            // its send is a silent connection. So a reset is tried again (up to three times); a hub that stopped
            // serving answers none of them.
            var status: Int?
            for _ in 0..<3 where status == nil {
                status = try? await HTTP.get(port: hub.port, "/health").status
            }
            #expect(status == 200)
        }
    }

    /// Half-open or silent connections: one that never sends a byte (or never starts its TLS handshake) is closed
    /// by the idle timeout; an upgraded WebSocket is not (the ping watches it), so it outlives that timeout.
    @Test func silentConnectionsAreClosedButWebSocketsOutliveTheIdleTimeout() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 1 }) { hub in
            let subscriber = try await TestSocket(port: hub.port)
            try await subscriber.subscribe(["alerts"])
            let closed = try await RawSocket.offPool { try RawSocket(port: hub.port).read(timeout: 15).closed }
            #expect(closed, "a connection that sent nothing for 15 s was not closed")
            try await Task.sleep(for: .milliseconds(1500))
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.alert("M-IDLE"))
            #expect(try await subscriber.nextEvent()["entity_id"] == .string("M-IDLE"))
            _ = await subscriber.close()
        }
    }
}
