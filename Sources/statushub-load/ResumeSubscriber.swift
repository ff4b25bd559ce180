import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import NIOWebSocket
import StatusHubCore
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// What the resume run's files share: its progress lines on standard error (a slice process's standard output
// carries its replies), and its clock arithmetic.
func say(_ text: String) { FileHandle.standardError.write(Data("resume: \(text)\n".utf8)) }
func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }
func seconds(since start: UInt64) -> Double { Double(monotonicNanos() - start) / 1e9 }
func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

extension Box where Value == Int {
    /// Adds `amount`; returns the new value.
    @discardableResult
    func add(_ amount: Int) -> Int {
        var result = 0
        update { $0 += amount; result = $0 }
        return result
    }
}

/// Deliveries per event sequence number, summed over subscribers.
final class DeliveryTally: Sendable {
    private let counts = Mutex<[Int: Int]>([:])

    func record(seq: Int) { counts.withLock { $0[seq, default: 0] += 1 } }
    func count(seq: Int) -> Int { counts.withLock { $0[seq] ?? 0 } }

    /// Polls every millisecond until `count` subscribers have event `seq`.
    func wait(seq: Int, count: Int, timeout: Double) async -> Bool {
        let until = monotonicNanos() + nanos(timeout)
        while self.count(seq: seq) < count {
            guard monotonicNanos() < until else { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}

/// POSTs the numbered events every subscriber must receive (data.resume_seq), one at a time, as a careful MES
/// would: each event carries its own `idempotency_key`, and a 503 is followed by resending after `Retry-After`
/// (a storm on one node may starve the box enough for the other node's Redis command to time out), so an event
/// is acknowledged once however many tries it takes.
struct EventPoster: Sendable {
    var line: String
    /// Tries per event, 503s included, before the run fails.
    var attempts = 10

    struct Refused: Error, CustomStringConvertible {
        var status: Int
        var description: String { "POST /v1/events answered \(status)" }
    }

    /// The machine event `seq` is about: a hundred, in turn, so the events spread over every partition.
    static func machine(ofSeq seq: Int) -> Int { seq % 100 }

    func post(_ base: URL, seq: Int) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let timestamp = formatter.string(from: Date())
        let body = #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-\#(Self.machine(ofSeq: seq))","line":"\#(line)","timestamp":"\#(timestamp)","idempotency_key":"resume-\#(seq)","data":{"current_status":"running","resume_seq":\#(seq)},"metadata":{"source":"resume","triggered_by":"system"}}"#
        var request = URLRequest(url: base.appendingPathComponent("v1/events"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        request.timeoutInterval = 10
        for attempt in 1...attempts {
            let (_, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            let status = http?.statusCode ?? 0
            if status == 202 { return }
            guard status == 503, attempt < attempts else { throw Refused(status: status) }
            let retryAfter = http?.value(forHTTPHeaderField: "Retry-After").flatMap(Double.init) ?? 1
            try await Task.sleep(for: .seconds(min(max(retryAfter, 0.1), 5)))
        }
    }
}

/// What one subscriber received over all its connections: events are numbered 1, 2, … in publish order, one
/// pattern sees them all, and each must come once. The hub keeps order per entity (per partition: with several
/// partitions a resume replays them one after another), so order is checked per machine (`EventPoster.machine`).
struct ResumeLedger: Sendable {
    /// Bit `seq` set: event `seq` arrived.
    private var received: [UInt64] = []
    /// Machine → the highest seq of its events that arrived.
    private var lastSeqOfMachine: [Int: Int] = [:]
    var lastEventID: String?
    var duplicates = 0
    /// The first few events that arrived twice: the same ones at every subscriber mean an event stored twice (a
    /// publisher's retry), scattered ones a delivery twice.
    var duplicatedSeqs: [Int] = []
    var outOfOrder = 0
    var resyncs = 0
    /// The hub's first `resync` or `error` message on this subscriber's resume, as sent.
    var notice: String?
    /// The hub's close frame (code and reason) on the subscriber's latest connection, if it closed one.
    var closedBy: String?

    mutating func record(seq: Int) {
        let (word, bit) = (seq / 64, UInt64(1) << UInt64(seq % 64))
        if word >= received.count { received.append(contentsOf: repeatElement(0, count: word + 1 - received.count)) }
        guard received[word] & bit == 0 else {
            if duplicatedSeqs.count < 64 { duplicatedSeqs.append(seq) }
            return duplicates += 1
        }
        received[word] |= bit
        let machine = EventPoster.machine(ofSeq: seq)
        if let last = lastSeqOfMachine[machine], last > seq { outOfOrder += 1 }
        lastSeqOfMachine[machine] = max(seq, lastSeqOfMachine[machine] ?? 0)
    }

    /// Events of 1…`total` that never arrived.
    func missing(of total: Int) -> Int {
        (1...max(1, total)).count { seq in
            let word = seq / 64
            return word >= received.count || received[word] & (UInt64(1) << UInt64(seq % 64)) == 0
        }
    }
}

/// One idle subscriber that survives its node's restart by resubscribing with `since`.
final class ResumeSubscriber: Sendable {
    let index: Int
    let source: SocketAddress?
    let tally: DeliveryTally
    private let state = Mutex<(ledger: ResumeLedger, channel: (any Channel)?, closed: EventLoopFuture<Void>?)>((ResumeLedger(), nil, nil))

    init(index: Int, source: SocketAddress?, tally: DeliveryTally) {
        self.index = index
        self.source = source
        self.tally = tally
    }

    var ledger: ResumeLedger { state.withLock { $0.ledger } }
    var lastEventID: String? { state.withLock { $0.ledger.lastEventID } }
    /// A connection of this subscriber was subscribed at some time (it may have closed since).
    var hasConnected: Bool { state.withLock { $0.closed != nil } }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Connects and subscribes (with `since`, when given) until the hub confirms; retries a failed attempt after
    /// 100–300 ms up to `attempts` times or until `deadline`. Returns the number of failed attempts.
    @discardableResult
    func connect(url: String, pattern: String, since: String?, loop: any EventLoop, attempts: Int, deadline: UInt64) async throws -> Int {
        let sinceField = since.map { #","since":"\#($0)""# } ?? ""
        let message = #"{"op":"subscribe","id":"s\#(index)","channels":["\#(pattern)"]\#(sinceField)}"#
        var failed = 0
        while true {
            do {
                try await attempt(url: url, message: message, loop: loop, deadline: deadline)
                return failed
            } catch {
                failed += 1
                guard failed < attempts, monotonicNanos() < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(Int64.random(in: 100...300)))
            }
        }
    }

    private func attempt(url: String, message: String, loop: any EventLoop, deadline: UInt64) async throws {
        let subscribed = loop.makePromise(of: Void.self)
        let closed = loop.makePromise(of: Void.self)
        let remaining = TimeAmount.nanoseconds(Int64(max(1_000_000, Int64(deadline) - Int64(monotonicNanos()))))
        let channel: any Channel
        do {
            channel = try await SubscriberConnection.upgrade(url: url, source: source, loop: loop, connectTimeout: min(remaining, .seconds(60))) { channel in
                try channel.pipeline.syncOperations.addHandler(Handler(subscriber: self, subscribed: subscribed, closed: closed))
            }
        } catch {
            subscribed.fail(error)
            closed.succeed(())
            throw error
        }
        let watchdog = loop.scheduleTask(in: min(remaining, .seconds(120))) {
            subscribed.fail(Failed(description: "no answer to subscribe"))
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: channel.allocator.buffer(string: message)))
        try await subscribed.futureResult.get()
        state.withLock {
            $0.channel = channel
            $0.closed = closed.futureResult
            // A close seen on an earlier connection (the node's shutdown, 1001) is over.
            $0.ledger.closedBy = nil
        }
    }

    /// Waits until the current connection has closed (the hub's 1001 on shutdown).
    func waitClosed(timeout: Double) async -> Bool {
        guard let closed = state.withLock({ $0.closed }) else { return true }
        let timer = closed.eventLoop.scheduleTask(in: .nanoseconds(Int64(nanos(max(0.001, timeout))))) {}
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let once = OnceFlag()
            closed.whenComplete { _ in if once.claim() { continuation.resume(returning: true) } }
            timer.futureResult.whenSuccess { if once.claim() { continuation.resume(returning: false) } }
        }
    }

    func close() {
        if let channel = state.withLock({ $0.channel }) { SubscriberConnection.close(channel) }
    }

    fileprivate func received(seq: Int, eventID: String?) {
        state.withLock { state in
            state.ledger.record(seq: seq)
            if let eventID { state.ledger.lastEventID = eventID }
        }
        tally.record(seq: seq)
    }

    fileprivate func connectionClosed() {
        state.withLock { $0.channel = nil }
    }

    fileprivate func closedByHub(_ text: String) { state.withLock { $0.ledger.closedBy = text } }

    fileprivate func resynced(_ text: String) { state.withLock { $0.ledger.resyncs += 1; $0.ledger.notice = $0.ledger.notice ?? text } }

    fileprivate func answered(_ text: String) { state.withLock { $0.ledger.notice = $0.ledger.notice ?? text } }

    /// Reads the hub's frames on the event loop: `subscribed`, events (by byte search, not parsed), pings, close.
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        static let seqKey = Array(#""resume_seq":"#.utf8)
        static let idKey = Array(#""event_id":""#.utf8)
        /// On a hub with several partitions an event frame ends with the resume token after it, which is where to
        /// resume from (ids do not order across partitions).
        static let positionKey = Array(#","position":""#.utf8)
        static let eventOp = Array(#""op":"event""#.utf8)
        /// A machine left without news for its TTL (a run that waits minutes for a slow catch-up) is announced stale,
        /// with its last state — `resume_seq` included — inside: not one of the numbered events.
        static let staleType = Array(#""event_type":"status_stale""#.utf8)
        static let subscribedOp = Array(#""op":"subscribed""#.utf8)
        static let resyncOp = Array(#""op":"resync""#.utf8)
        static let errorOp = Array(#""op":"error""#.utf8)

        private let subscriber: ResumeSubscriber
        private let subscribed: EventLoopPromise<Void>
        private let closed: EventLoopPromise<Void>

        init(subscriber: ResumeSubscriber, subscribed: EventLoopPromise<Void>, closed: EventLoopPromise<Void>) {
            self.subscriber = subscriber
            self.subscribed = subscribed
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text:
                let parsed = frame.unmaskedData.withUnsafeReadableBytes { bytes -> (seq: Int?, id: String?, kind: Int) in
                    if FrameTracker.find(Self.eventOp, in: bytes, from: 0) != nil {
                        if FrameTracker.find(Self.staleType, in: bytes, from: 0) != nil { return (nil, nil, 4) }
                        guard var at = FrameTracker.find(Self.seqKey, in: bytes, from: 0), let seq = FrameTracker.integer(bytes, &at) else {
                            return (nil, nil, 0)
                        }
                        var id: String?
                        if let start = FrameTracker.find(Self.idKey, in: bytes, from: 0),
                           let end = bytes[start...].firstIndex(of: UInt8(ascii: "\""))
                        {
                            id = String(decoding: bytes[start..<end], as: UTF8.self)
                        }
                        // The frame's last `,"position":"`: the event's own JSON comes before it.
                        var tokenStart: Int?
                        var from = 0
                        while let found = FrameTracker.find(Self.positionKey, in: bytes, from: from) {
                            tokenStart = found
                            from = found
                        }
                        if let start = tokenStart, let end = bytes[start...].firstIndex(of: UInt8(ascii: "\"")) {
                            let token = String(decoding: bytes[start..<end], as: UTF8.self)
                            if token.hasPrefix("r1.") { id = token }
                        }
                        return (seq, id, 0)
                    }
                    if FrameTracker.find(Self.subscribedOp, in: bytes, from: 0) != nil { return (nil, nil, 1) }
                    if FrameTracker.find(Self.resyncOp, in: bytes, from: 0) != nil { return (nil, nil, 2) }
                    if FrameTracker.find(Self.errorOp, in: bytes, from: 0) != nil { return (nil, nil, 3) }
                    return (nil, nil, 4)
                }
                switch parsed.kind {
                case 0: if let seq = parsed.seq { subscriber.received(seq: seq, eventID: parsed.id) }
                case 1: subscribed.succeed(())
                case 2: subscriber.resynced(String(buffer: frame.unmaskedData))
                case 3:
                    subscriber.answered(String(buffer: frame.unmaskedData))
                    subscribed.fail(Failed(description: "hub answered: \(String(buffer: frame.unmaskedData).prefix(300))"))
                default: break
                }
            case .ping:
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
            case .connectionClose:
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode().map { "\(UInt16(webSocketErrorCode: $0))" } ?? "no code"
                subscriber.closedByHub("\(code) \(String(buffer: data))")
                // Answer the close (RFC 6455 §5.5.1) and let the hub close the socket, so that the hub, not this
                // source port, holds the TIME_WAIT (the reconnect needs the ports); close it ourselves 2 s later.
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
                let channel = context.channel
                context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            subscriber.connectionClosed()
            subscribed.fail(Failed(description: "closed before subscribed"))
            closed.succeed(())
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
