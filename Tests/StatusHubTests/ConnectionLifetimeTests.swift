import Foundation
import StatusHubCore
import Testing

@testable import StatusHubServer

/// A closed WebSocket leaves nothing behind: its `Connection` and `Outbox` (and so the channel, buffers and logger
/// they reach) are freed once the session ends, however the client went away. A reference cycle through the
/// outbox's ready signal once kept every closed connection's channel alive, ~4.8 KB each, for ever; the memory
/// side of it is measured by `loadtest/churn.sh` (loadtest/RESULTS.md).
@Suite("Connection lifetime")
struct ConnectionLifetimeTests {
    enum Goodbye: String, CaseIterable, CustomTestStringConvertible, Sendable {
        /// A close frame, answered by the hub's, then the socket closes.
        case closeFrame
        /// The client's socket just closes, no close frame.
        case droppedTCP

        var testDescription: String { rawValue }
    }

    /// What a test may hold of a connection without keeping it alive.
    final class Watch: @unchecked Sendable {
        weak var connection: Connection?
        weak var outbox: Outbox?
        /// Whether the hub's connection was seen at all (so a test cannot pass by never finding it).
        var seen = false
    }

    @Test(arguments: EngineKind.allCases, Goodbye.allCases)
    func closedConnectionIsFreed(_ kind: EngineKind, _ goodbye: Goodbye) async throws {
        try await withHub(engine: kind) { hub in
            for compressed in [false, true] {
                let freed = try await Self.connectSubscribeAndLeave(hub, compressed: compressed, goodbye: goodbye)
                #expect(freed, "connection (compressed: \(compressed)) still alive 5 s after the client left")
            }
        }
    }

    /// Opens a raw WebSocket (with permessage-deflate offered when `compressed`), subscribes, leaves as `goodbye`
    /// says, and returns whether the hub let go of the connection and its outbox within 5 s.
    static func connectSubscribeAndLeave(_ hub: RunningHub, compressed: Bool, goodbye: Goodbye) async throws -> Bool {
        let fanOut = hub.hub.fanOut
        let watch = try await RawSocket.offPool { () -> Watch in
            let watch = Watch()
            let socket = try RawSocket(port: hub.port)
            try socket.upgrade(headers: compressed ? ["Sec-WebSocket-Extensions": "permessage-deflate"] : [:])
            _ = socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }
            try socket.send(RawSocket.frame(opcode: 1, payload: Array(#"{"op":"subscribe","id":"s","channels":["alerts"]}"#.utf8)))
            _ = socket.read(timeout: 30) { String(decoding: $0, as: UTF8.self).contains("subscribed") }
            let deadline = Date().addingTimeInterval(5)
            while watch.connection == nil, Date() < deadline {
                if let open = fanOut.openConnections.first, !open.patterns.isEmpty {
                    watch.connection = open
                    watch.outbox = open.outbox
                    watch.seen = true
                } else {
                    usleep(10_000)
                }
            }
            switch goodbye {
            case .closeFrame:
                try socket.send(RawSocket.frame(opcode: 8, payload: [0x03, 0xE8]))  // 1000
                _ = socket.read(timeout: 5)
            case .droppedTCP:
                socket.reset()
            }
            return watch
        }
        #expect(watch.seen, "the hub never registered the subscription")
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while ContinuousClock.now < deadline {
            if fanOut.openConnections.isEmpty, watch.connection == nil, watch.outbox == nil { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
