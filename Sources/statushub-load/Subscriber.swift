import Foundation
import Logging
import NIOCore
import NIOWebSocket
import Synchronization

struct SubscriberResult: Sendable {
    var index: Int
    var subscribed = false
    /// From the start of the attempt to the WebSocket upgrade.
    var connectNanos: UInt64?
    /// From the start of the attempt to the `subscribed` reply.
    var subscribeNanos: UInt64?
    var unique = 0
    var duplicates = 0
    var outOfOrder = 0
    /// Frames that are not events of this run (another publisher's events, unexpected replies).
    var foreign = 0
    /// The connection ended before the harness closed it.
    var droppedEarly = false
    var error: String?
}

/// What one subscriber knows about the frames it received. Lives on the subscriber's task only.
struct FrameTracker {
    let runID: [UInt8]
    let shard: DeliveryStats.Shard
    var trackers: [SeqTracker?]
    var result: SubscriberResult

    /// `"load_run":"…"`, `"load_sent_ns":<ns>`, `"load_seq":"<publisher>-<seq>"` are found by byte search: the
    /// harness never parses the JSON of an event. Delivered events have sorted keys, so each key is searched
    /// from where the previous one ended (falling back to the whole frame); the needles start with a letter,
    /// not a quote, so memchr skips most of the frame.
    static let runKey = Array(#"load_run":""#.utf8)
    static let sentKey = Array(#"load_sent_ns":"#.utf8)
    static let seqKey = Array(#"load_seq":""#.utf8)
    static let subscribedOp = Array(#""op":"subscribed""#.utf8)
    static let errorOp = Array(#""op":"error""#.utf8)

    enum Kind { case event, subscribed, error, other }

    /// Records one text frame; returns what it was.
    mutating func process(_ buffer: ByteBuffer, now: UInt64) -> Kind {
        let parsed = buffer.withUnsafeReadableBytes { bytes -> (kind: Kind, publisher: Int, seq: Int, sent: UInt64) in
            guard let runAt = Self.find(Self.runKey, in: bytes, from: 0) else {
                if Self.find(Self.subscribedOp, in: bytes, from: 0) != nil { return (.subscribed, 0, 0, 0) }
                if Self.find(Self.errorOp, in: bytes, from: 0) != nil { return (.error, 0, 0, 0) }
                return (.other, 0, 0, 0)
            }
            guard runAt + runID.count < bytes.count,
                  runID.indices.allSatisfy({ bytes[runAt + $0] == runID[$0] }),
                  bytes[runAt + runID.count] == UInt8(ascii: "\""),
                  let sentAt = Self.find(Self.sentKey, in: bytes, from: runAt) ?? Self.find(Self.sentKey, in: bytes, from: 0),
                  let seqAt = Self.find(Self.seqKey, in: bytes, from: sentAt) ?? Self.find(Self.seqKey, in: bytes, from: 0)
            else { return (.other, 0, 0, 0) }
            var position = seqAt
            guard let publisher = Self.integer(bytes, &position), position < bytes.count,
                  bytes[position] == UInt8(ascii: "-")
            else { return (.other, 0, 0, 0) }
            position += 1
            guard let seq = Self.integer(bytes, &position) else { return (.other, 0, 0, 0) }
            position = sentAt
            guard let sent = Self.integer(bytes, &position) else { return (.other, 0, 0, 0) }
            return (.event, publisher, seq, UInt64(sent))
        }
        switch parsed.kind {
        case .event:
            guard parsed.publisher < trackers.count else {
                result.foreign += 1
                return .other
            }
            if trackers[parsed.publisher] == nil { trackers[parsed.publisher] = SeqTracker() }
            let observation = trackers[parsed.publisher]!.observe(parsed.seq)
            switch observation {
            case .duplicate:
                result.duplicates += 1
                shard.state.withLock { $0.duplicates += 1 }
            case .inOrder, .outOfOrder:
                if observation == .outOfOrder { result.outOfOrder += 1 }
                result.unique += 1
                let latency = now > parsed.sent ? now - parsed.sent : 0
                shard.state.withLock { state in
                    state.interval.recordMicros(nanos: latency)
                    state.delivered += 1
                    state.count(publisher: parsed.publisher, seq: parsed.seq)
                }
            }
        case .other:
            result.foreign += 1
        case .subscribed, .error:
            break
        }
        return parsed.kind
    }

    /// The offset just past the first `needle` at or after `from` in `bytes`, or nil: memchr to each candidate
    /// first byte, then memcmp (Glibc's memmem is not visible to Swift without _GNU_SOURCE).
    @inline(__always)
    static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let base = bytes.baseAddress, from + needle.count <= bytes.count else { return nil }
        return needle.withUnsafeBytes { n -> Int? in
            let first = Int32(n[0])
            var offset = from
            let last = bytes.count - n.count
            while offset <= last {
                guard let hit = memchr(base + offset, first, last - offset + 1) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(base + at, n.baseAddress!, n.count) == 0 { return at + n.count }
                offset = at + 1
            }
            return nil
        }
    }

    /// Decimal digits at `position` (advanced past them).
    @inline(__always)
    static func integer(_ bytes: UnsafeRawBufferPointer, _ position: inout Int) -> Int? {
        let start = position
        var value = 0
        while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            value = value &* 10 &+ Int(bytes[position] &- UInt8(ascii: "0"))
            position += 1
        }
        return position > start ? value : nil
    }
}

final class OnceFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    /// True the first time only.
    func claim() -> Bool { !flag.exchange(true, ordering: .relaxed) }
}

final class ResultBox: Sendable {
    let value: Mutex<SubscriberResult>
    init(_ result: SubscriberResult) { value = Mutex(result) }
}

/// One subscriber: connect, subscribe, count every event frame until `stop` fires, then close normally.
func runSubscriber(
    index: Int, runID: String, config: LoadConfig, loop: any EventLoop, stats: DeliveryStats, stop: StopSignal, readiness: Readiness,
    gate: AsyncSemaphore, logger: Logger
) async -> SubscriberResult {
    await gate.acquire()
    let released = OnceFlag()
    @Sendable func releaseGate(ready: Bool) {
        if released.claim() {
            if ready { readiness.ready() } else { readiness.failed() }
            gate.release()
        }
    }
    let box = ResultBox(SubscriberResult(index: index))
    // With --filters: one of N distinct filters that each admit every event (no event has `data.load_filter`).
    let filter = config.filters > 0 ? #","filter":"data.load_filter != \#(index % config.filters)""# : ""
    let pattern = config.mapping.pattern(forSubscriber: index)
    let subscribe = #"{"op":"subscribe","id":"load-\#(index)","channels":["\#(pattern)"]\#(filter)}"#
    let shard = stats.shard(for: index)
    let publishers = config.publishers
    let runBytes = Array(runID.utf8)
    let start = monotonicNanos()
    do {
        let templateURL = config.templates?.subscribeURL(config.templateChannel(forSubscriber: index))
        let tracker = FrameTracker(
            runID: runBytes, shard: shard, trackers: Array(repeating: nil, count: publishers), result: SubscriberResult(index: index))
        let callbacks = SubscriberConnection.Callbacks(
            upgraded: { box.value.withLock { $0.connectNanos = monotonicNanos() - start } },
            subscribed: {
                let acked = monotonicNanos()
                box.value.withLock {
                    $0.subscribed = true
                    $0.subscribeNanos = acked - start
                }
                releaseGate(ready: true)
            },
            failed: { text in
                box.value.withLock { $0.error = $0.error ?? "hub error: \(text.prefix(300))" }
                releaseGate(ready: false)
            })
        // Another server (URL templates): the URL is the subscription, there is nothing to send and no reply.
        let subscribing: SubscriberConnection.Subscribing
        let url: String
        if let templateURL {
            (subscribing, url) = (.byURL, templateURL)
        } else if config.subscribeInURL {
            let hubURL = config.wsURL(forSubscriber: index)
            var query = "channels=" + pattern.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(["&", "+", "="]))!
            if config.filters > 0 { query += "&filter=" + "data.load_filter != \(index % config.filters)".replacingOccurrences(of: " ", with: "+") }
            (subscribing, url) = (.inURLWithReply, hubURL + (hubURL.contains("?") ? "&" : "?") + query)
        } else {
            (subscribing, url) = (.message(subscribe), config.wsURL(forSubscriber: index))
        }
        let (channel, ending) = try await SubscriberConnection.open(
            url: url, subscribing: subscribing, tracker: tracker, loop: loop,
            callbacks: callbacks, source: config.sourceAddresses?.address(for: index), compression: config.compression)
        let stopper = Task {
            await stop.wait()
            SubscriberConnection.close(channel)
        }
        let ended = try await ending.get()
        stopper.cancel()
        box.value.withLock {
            $0.unique = ended.counted.unique
            $0.duplicates = ended.counted.duplicates
            $0.outOfOrder = ended.counted.outOfOrder
            $0.foreign = ended.counted.foreign
        }
        if !stop.isFired {
            let reason = ended.closeCode.map { "closed by the hub: \($0) \(ended.closeReason ?? "")" } ?? "connection ended"
            box.value.withLock {
                $0.droppedEarly = true
                $0.error = $0.error ?? reason
            }
        }
    } catch {
        box.value.withLock {
            $0.droppedEarly = $0.subscribed && !stop.isFired
            $0.error = $0.error ?? "\(error)"
        }
    }
    releaseGate(ready: false)
    return box.value.withLock { $0 }
}
