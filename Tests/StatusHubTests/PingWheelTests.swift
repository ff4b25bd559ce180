import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import StatusHubServer

/// The loop's ping timer (`PingWheel`) against the heartbeats it drives, on an embedded loop whose clock the test
/// moves: when each connection is pinged, what a missed pong does, and connections leaving while others stay.
@Suite("Ping wheel")
struct PingWheelTests {
    /// 1.6 s: the wheel ticks every 100 ms.
    static let interval = TimeAmount.milliseconds(1600)

    private static func open(_ loop: EmbeddedEventLoop, wheel: PingWheel) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(Heartbeat(wheel: wheel))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    /// The frames the heartbeat wrote since the last look.
    private static func written(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    private static func answer(_ ping: WebSocketFrame, on channel: EmbeddedChannel) throws {
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .pong, data: ping.unmaskedData))
        _ = try channel.readInbound(as: WebSocketFrame.self)
    }

    /// Each connection is first pinged one interval after it opened (a tick early at most), then every interval; one
    /// that answers stays, one that does not is closed with 1001 "ping timeout" at its next turn.
    @Test func eachConnectionIsPingedAnIntervalFromItsOpeningAndClosedWhenSilent() throws {
        let loop = EmbeddedEventLoop()
        let wheel = PingWheel(loop: loop, interval: Self.interval, closeTimeout: .seconds(5))
        let answering = try Self.open(loop, wheel: wheel)
        loop.advanceTime(by: .milliseconds(800))
        let silent = try Self.open(loop, wheel: wheel)

        loop.advanceTime(by: .milliseconds(750))  // 1.55 s
        #expect(try Self.written(answering).isEmpty)
        loop.advanceTime(by: .milliseconds(50))  // 1.6 s
        let ping = try #require(try Self.written(answering).first)
        #expect(ping.opcode == .ping)
        try Self.answer(ping, on: answering)
        #expect(try Self.written(silent).isEmpty)

        loop.advanceTime(by: .milliseconds(800))  // 2.4 s: the silent one's interval
        #expect(try Self.written(silent).map(\.opcode) == [.ping])
        #expect(try Self.written(answering).isEmpty)

        loop.advanceTime(by: .milliseconds(800))  // 3.2 s: the answering one again
        let second = try Self.written(answering)
        #expect(second.map(\.opcode) == [.ping])
        try Self.answer(try #require(second.first), on: answering)

        loop.advanceTime(by: .milliseconds(800))  // 4.0 s: the silent one missed its pong
        let last = try Self.written(silent)
        #expect(last.map(\.opcode) == [.connectionClose])
        var reason = try #require(last.first).unmaskedData
        #expect(reason.readInteger(as: UInt16.self) == 1001)
        #expect(reason.readString(length: reason.readableBytes) == "ping timeout")
        #expect(!silent.isActive)
        #expect(answering.isActive)

        loop.advanceTime(by: .milliseconds(800))  // 4.8 s: the answering one goes on alone
        #expect(try Self.written(answering).map(\.opcode) == [.ping])
        #expect(try Self.written(silent).isEmpty)
        _ = try answering.finish()
    }

    /// Connections that share a bucket leave in any order, before their turn or during it (each silent one's close
    /// takes it out while the wheel walks the bucket); every one still there is pinged, and closed, exactly once.
    @Test func leavingDuringOrBeforeATurnDisturbsNoOther() throws {
        let loop = EmbeddedEventLoop()
        let wheel = PingWheel(loop: loop, interval: Self.interval, closeTimeout: .seconds(5))
        let channels = try (0..<6).map { _ in try Self.open(loop, wheel: wheel) }
        // The first and a middle one leave before their first ping: the bucket's last takes a leaver's index.
        try channels[0].close().wait()
        try channels[3].close().wait()
        let staying = [channels[1], channels[2], channels[4], channels[5]]

        loop.advanceTime(by: Self.interval)
        for channel in staying { #expect(try Self.written(channel).map(\.opcode) == [.ping]) }
        #expect(try Self.written(channels[0]).isEmpty)
        #expect(try Self.written(channels[3]).isEmpty)

        loop.advanceTime(by: Self.interval)  // none answered: each is closed during the same walk
        for channel in staying {
            #expect(try Self.written(channel).map(\.opcode) == [.connectionClose])
            #expect(!channel.isActive)
        }
        loop.advanceTime(by: Self.interval * 2)
        for channel in channels { #expect(try Self.written(channel).isEmpty) }
    }

    /// Only a pong carrying the last ping's payload answers it: one with other bytes (an older ping's, or none) leaves
    /// the connection silent, and it is closed at its next turn.
    @Test func aPongWithAnotherPayloadDoesNotAnswer() throws {
        let loop = EmbeddedEventLoop()
        let wheel = PingWheel(loop: loop, interval: Self.interval, closeTimeout: .seconds(5))
        let wrong = try Self.open(loop, wheel: wheel)
        let empty = try Self.open(loop, wheel: wheel)
        loop.advanceTime(by: Self.interval)
        var ping = try #require(try Self.written(wrong).first).unmaskedData
        var other = ping.getSlice(at: ping.readerIndex, length: ping.readableBytes)!
        other.setInteger(ping.readInteger(as: UInt64.self)! &+ 1, at: other.readerIndex)
        try wrong.writeInbound(WebSocketFrame(fin: true, opcode: .pong, data: other))
        _ = try Self.written(empty)
        try empty.writeInbound(WebSocketFrame(fin: true, opcode: .pong, data: ByteBuffer()))

        loop.advanceTime(by: Self.interval)
        #expect(try Self.written(wrong).map(\.opcode) == [.connectionClose])
        #expect(try Self.written(empty).map(\.opcode) == [.connectionClose])
    }

    /// The timer runs only while the loop has connections: the last to leave stops it, and the next to come starts it
    /// again, pinged an interval after it opened as ever.
    @Test func theTimerStopsWithTheLastConnectionAndStartsWithTheNext() throws {
        let loop = EmbeddedEventLoop()
        let wheel = PingWheel(loop: loop, interval: Self.interval, closeTimeout: .seconds(5))
        #expect(!wheel.isTicking)
        let first = try Self.open(loop, wheel: wheel)
        let second = try Self.open(loop, wheel: wheel)
        #expect(wheel.isTicking)
        try first.close().wait()
        #expect(wheel.isTicking)
        try second.close().wait()
        #expect(!wheel.isTicking)

        loop.advanceTime(by: .milliseconds(730))
        let later = try Self.open(loop, wheel: wheel)
        #expect(wheel.isTicking)
        loop.advanceTime(by: .milliseconds(1550))
        #expect(try Self.written(later).isEmpty)
        loop.advanceTime(by: .milliseconds(50))
        #expect(try Self.written(later).map(\.opcode) == [.ping])
        try later.close().wait()
        #expect(!wheel.isTicking)
    }
}
