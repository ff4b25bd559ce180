import Foundation
import StatusHubCore
import StatusHubServer
import Testing

/// permessage-deflate on the channel-handler path (`PerMessageDeflate`, `MessageInflater`, `WireFrame`): what the
/// hub answers to offers, that its compressed frames and the client's compressed messages are standard DEFLATE (the
/// test's bytes come from Python's zlib, independent of the hub's), the frame rules of RFC 7692, and that one event
/// is compressed once for all the connections that get it.
@Suite("Compressed sessions served from channel handlers")
struct CompressedSessionTests {
    /// The answer to each offer, exactly: neither side keeps context (so an event's compressed bytes are shared, and
    /// no connection holds an inflater), asked or not; the client's window is made small when the client lets the
    /// hub choose; an offer the hub cannot serve is passed over for the next.
    @Test(arguments: [
        ("permessage-deflate", "permessage-deflate;server_no_context_takeover;client_no_context_takeover"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate;server_no_context_takeover;client_max_window_bits=9;client_no_context_takeover"
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate;server_no_context_takeover;client_max_window_bits=8;client_no_context_takeover"
        ),
        (
            "permessage-deflate; client_max_window_bits=12; client_no_context_takeover",
            "permessage-deflate;server_no_context_takeover;client_max_window_bits=9;client_no_context_takeover"
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate;server_max_window_bits=10;server_no_context_takeover;client_no_context_takeover"
        ),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            "permessage-deflate;server_no_context_takeover;client_no_context_takeover"
        ),
        ("x-webkit-deflate-frame", nil),
    ] as [(String, String?)])
    func offersAreAnsweredSoTheServerKeepsNoContext(_ offer: String, _ answer: String?) async throws {
        try await withHub(engine: .memory) { hub in
            let head = try await RawSocket.offPool { () -> String in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": offer])
                return socket.responseStatus().text
            }
            #expect(head.hasPrefix("HTTP/1.1 101"), "\(offer): \(head)")
            let extensions = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("sec-websocket-extensions:") }
            #expect(extensions.map { String($0.dropFirst("sec-websocket-extensions:".count)).trimmingCharacters(in: .whitespaces) } == answer, "\(offer): \(head)")
        }
    }

    /// An event big enough to compress arrives with RSV1 set and inflates, with a standard raw inflater and no
    /// context from earlier messages, to the event; a short reply goes out uncompressed.
    @Test func aCompressedDeliveryIsReadableByAStandardInflater() async throws {
        try await withHub(engine: .memory) { hub in
            let note = String(repeating: "compressible ", count: 100)
            let frames = try await RawSocket.offPool { () -> [(first: UInt8, payload: [UInt8])] in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"])
                try socket.send(RawSocket.frame(opcode: 1, payload: Array(#"{"op":"subscribe","id":"s","channels":["machine:*"]}"#.utf8)))
                _ = socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains("subscribed") }
                Task { _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-Z", extra: #","note":"\#(note)""#)) }
                // The response head was consumed above; rawFrames(in:) expects one in front of the frames.
                let head = Array("HTTP/1.1 101\r\n\r\n".utf8)
                let (stream, _) = socket.read(timeout: 10) { WebSocketHandshakeTests.rawFrames(in: head + $0).count >= 1 }
                return WebSocketHandshakeTests.rawFrames(in: head + stream)
            }
            let event = try #require(frames.first)
            #expect(event.first == 0xC1, "FIN, RSV1 and text: \(String(event.first, radix: 16))" as Comment)
            #expect(event.payload.count < note.utf8.count / 4, "\(event.payload.count) compressed bytes")
            let text = String(decoding: try PythonZlib.inflate(event.payload), as: UTF8.self)
            #expect(text.contains(#""op":"event""#) && text.contains("M-Z") && text.contains(note), "\(text)")
        }
    }

    /// Client messages compressed each on their own, as the answer asks (whether the offer had
    /// `client_no_context_takeover` or not), with the window the hub answered, one of them fragmented (RSV1 on its
    /// first frame only): all are answered.
    @Test(arguments: [false, true]) func compressedClientMessagesAreInflated(_ noContextTakeover: Bool) async throws {
        try await withHub(engine: .memory) { hub in
            let pings = (0..<4).map { #"{"op":"ping","id":"p\#($0)-\#(String(repeating: "x", count: 40 * $0))"}"# }
            let compressed = try PythonZlib.deflate(pings, windowBits: 9, contextTakeover: false)
            var bytes: [UInt8] = []
            for (index, message) in compressed.enumerated() {
                if index == 2 {
                    let half = message.count / 2
                    bytes += RawSocket.frame(opcode: 0x41, fin: false, payload: Array(message[..<half]))
                    bytes += RawSocket.frame(opcode: 0x00, fin: true, payload: Array(message[half...]))
                } else {
                    bytes += RawSocket.frame(opcode: 0x41, payload: message)
                }
            }
            let offer = "permessage-deflate; client_max_window_bits" + (noContextTakeover ? "; client_no_context_takeover" : "")
            let frames = bytes
            let answered = try await RawSocket.offPool { () -> String in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": offer])
                try socket.send(frames)
                let (stream, _) = socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains(#""p3-"#) }
                return String(decoding: stream, as: UTF8.self)
            }
            for index in 0..<4 { #expect(answered.contains(#""id":"p\#(index)-"#), "pong \(index) missing: \(answered)") }
        }
    }

    /// A client that takes its context over although the answer said `client_no_context_takeover`: its first message
    /// is answered; its second, which refers back to the first, is not DEFLATE on its own and closes with 1007.
    @Test func aClientThatKeepsItsContextAnywayIsClosedAtItsSecondMessage() async throws {
        try await withHub(engine: .memory) { hub in
            let ping = #"{"op":"ping","id":"first-\#(String(repeating: "x", count: 60))"}"#
            let compressed = try PythonZlib.deflate([ping, ping], windowBits: 9, contextTakeover: true)
            let (first, second) = (RawSocket.frame(opcode: 0x41, payload: compressed[0]), RawSocket.frame(opcode: 0x41, payload: compressed[1]))
            let (answered, stream) = try await RawSocket.offPool { () -> (String, [UInt8]) in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"])
                _ = socket.responseStatus()
                try socket.send(first)
                let (pong, _) = socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains(#""id":"first-"#) }
                try socket.send(second)
                let head = Array("HTTP/1.1 101\r\n\r\n".utf8)
                return (String(decoding: pong, as: UTF8.self), head + socket.read(timeout: 10) { RawSocket.closeCode(in: head + $0) != nil }.bytes)
            }
            #expect(answered.contains(#""id":"first-"#), "the first message was not answered: \(answered)")
            #expect(RawSocket.closeCode(in: stream) == 1007)
            // Said as what it is: not "text frame is not valid UTF-8".
            let reason = RawSocket.closePayload(in: stream).map { String(decoding: $0.dropFirst(2), as: UTF8.self) } ?? ""
            #expect(reason.contains("client_no_context_takeover"), "\(reason)")
        }
    }

    /// RFC 7692 §6 with the extension negotiated: RSV1 only on the first frame of a data message; RSV2 and RSV3
    /// never; a compressed message that is not DEFLATE is invalid data (1007).
    static let outsideTheRules: [(bytes: [UInt8], code: UInt16)] = [
        (RawSocket.frame(opcode: 0x49, payload: []), 1002),  // RSV1 on a ping
        (RawSocket.frame(opcode: 0x01, fin: false, payload: Array(#"{"op":"#.utf8)) + RawSocket.frame(opcode: 0x40, payload: Array("1}".utf8)), 1002),
        (RawSocket.frame(opcode: 0x21, payload: Array(#"{"op":"ping"}"#.utf8)), 1002),  // RSV2
        (RawSocket.frame(opcode: 0x41, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0x00]), 1007),
    ]

    @Test(arguments: 0..<outsideTheRules.count)
    func framesOutsideTheExtensionsRulesAreClosed(_ index: Int) async throws {
        let (bytes, code) = Self.outsideTheRules[index]
        try await withHub(engine: .memory) { hub in
            let closed = try await RawSocket.offPool { () -> UInt16? in
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade(headers: ["Sec-WebSocket-Extensions": "permessage-deflate"])
                _ = socket.responseStatus()
                try socket.send(bytes)
                let stream = Array("HTTP/1.1 101\r\n\r\n".utf8) + socket.read(timeout: 10) { RawSocket.closeCode(in: Array("HTTP/1.1 101\r\n\r\n".utf8) + $0) != nil }.bytes
                return RawSocket.closeCode(in: stream)
            }
            #expect(closed == code)
        }
    }

    /// One event to several compressed connections is compressed once (the metric counts compressions), and each
    /// of them — inflating with the WebSocket library's client, another independent inflater — reads it.
    @Test func anEventIsCompressedOnceForEveryConnection() async throws {
        try await withHub(engine: .memory) { hub in
            var sockets: [TestSocket] = []
            for _ in 0..<6 {
                let socket = try await TestSocket(port: hub.port, compression: true)
                try await socket.subscribe(["machine:*"])
                sockets.append(socket)
            }
            let before = try await Self.compressions(port: hub.port)
            let note = String(repeating: "shared ", count: 100)
            _ = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-ONCE", extra: #","note":"\#(note)""#))
            for socket in sockets {
                let event = try await socket.nextEvent()
                #expect(event["entity_id"] == .string("M-ONCE"))
            }
            #expect(try await Self.compressions(port: hub.port) == before + 1)
            for socket in sockets { _ = await socket.close() }
        }
    }

    static func compressions(port: Int) async throws -> Int {
        let text = String(decoding: try await HTTP.get(port: port, "/metrics").body, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix("statushub_websocket_messages_deflated_total ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }
}

/// Python's zlib, run as a child process: DEFLATE bytes from an implementation independent of the hub's.
enum PythonZlib {
    /// `messages` compressed as a permessage-deflate client would (RFC 7692 §7.2.1): sync-flushed, the trailing
    /// `00 00 FF FF` removed; in one stream when `contextTakeover`, else each in its own.
    static func deflate(_ messages: [String], windowBits: Int, contextTakeover: Bool) throws -> [[UInt8]] {
        let script = """
            import sys, zlib
            bits, takeover = int(sys.argv[1]), sys.argv[2] == "1"
            c = None
            for line in sys.stdin.read().split():
                if c is None or not takeover:
                    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
                d = c.compress(bytes.fromhex(line)) + c.flush(zlib.Z_SYNC_FLUSH)
                assert d.endswith(b"\\x00\\x00\\xff\\xff")
                print(d[:-4].hex())
            """
        let input = messages.map { Self.hex(Array($0.utf8)) }.joined(separator: "\n")
        return try run(script, [String(windowBits), contextTakeover ? "1" : "0"], input: input).split(separator: "\n").map { Self.bytes(hex: $0) }
    }

    /// A compressed message's payload inflated on its own (a raw inflater with the largest window and no context).
    static func inflate(_ payload: [UInt8]) throws -> [UInt8] {
        let script = """
            import sys, zlib
            d = zlib.decompressobj(-15)
            print(d.decompress(bytes.fromhex(sys.stdin.read().strip()) + b"\\x00\\x00\\xff\\xff").hex())
            """
        return bytes(hex: try run(script, [], input: hex(payload))[...])
    }

    private static func run(_ script: String, _ arguments: [String], input: String) throws -> String {
        let stdin = Pipe(), stdout = Pipe()
        let process = try ChildProcess.spawn("/usr/bin/python3", ["-c", script] + arguments, stdin: .pipe(stdin), stdout: .pipe(stdout))
        let writer = Thread { stdin.fileHandleForWriting.write(Data(input.utf8)); try? stdin.fileHandleForWriting.close() }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    private static func bytes(hex: Substring) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), next > index {
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }
}
