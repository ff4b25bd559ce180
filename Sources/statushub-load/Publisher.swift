import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import StatusHubCore

// The publisher is a keep-alive HTTP/1.1 client written directly on NIO (NIOHTTP1's HTTPRequestEncoder and
// HTTPResponseDecoder): URLSession (FoundationNetworking) is too slow and too opaque to pace at hundreds of
// requests a second, and AsyncHTTPClient is not in our dependency list and would add minutes to a cold build.
// Everything a publisher does runs on its channel's event loop, so pacing is not disturbed by Swift
// concurrency scheduling, and requests are pipelined on the one connection: the schedule is open loop.

struct PublisherResult: Sendable {
    var sent = 0
    var eventBytes = 0
    var accepted = 0
    var rejected = 0
    var failed = 0
    var skipped = 0
    var statusCounts: [String: Int] = [:]
    /// Accepted events per line index: the subscribers that should receive each depend on its line.
    var acceptedPerLine: [Int]
    /// Which sequence numbers were confirmed accepted.
    var acceptedSeqs: [Bool]
    var rtt = makeHistogram()
    var maxScheduleLagNanos: UInt64 = 0
    var firstSendNanos: UInt64 = 0
    var lastSendNanos: UInt64 = 0
    var errors: [String] = []

    init(lines: Int, events: Int) {
        acceptedPerLine = Array(repeating: 0, count: lines)
        acceptedSeqs = Array(repeating: false, count: events)
    }

    mutating func note(_ error: String) { if errors.count < 5 { errors.append(error) } }
}

/// Starts the schedule when it arrives (fired through the pipeline once every subscriber is ready).
struct StartPublishing: Sendable { var startNanos: UInt64 }
/// Gives up on unanswered requests (counted as failed) and finishes.
struct AbortPublishing: Sendable {}

final class PublisherHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private struct Pending {
        var firstSeq: Int
        var count: Int
        var sentNanos: UInt64
    }

    private let config: LoadConfig
    private let id: Int
    private let counters: PublishCounters
    private let promise: EventLoopPromise<PublisherResult>
    private var builder: EventBuilder
    private let intervalNanos: Double
    private let totalBatches: Int
    private var headers: HTTPHeaders

    private var result: PublisherResult
    private var startNanos: UInt64 = 0
    private var batchesDone = 0
    private var nextSeq = 0
    private var pending = CircularBuffer<Pending>()
    private var scheduled: Scheduled<Void>?
    private var publishingDone = false
    private var finished = false
    private var responseStatus: HTTPResponseStatus = .ok
    private var responseBody: ByteBuffer?

    init(id: Int, runID: String, config: LoadConfig, counters: PublishCounters, promise: EventLoopPromise<PublisherResult>) {
        self.id = id
        self.config = config
        self.counters = counters
        self.promise = promise
        self.builder = EventBuilder(runID: runID, publisher: id, config: config)
        let perPublisherRate = config.rate / Double(config.publishers)
        self.intervalNanos = Double(config.batch) * 1e9 / perPublisherRate
        self.totalBatches = config.batchesPerPublisher
        self.headers = HTTPHeaders([("Host", "\(config.host):\(config.port)"), ("Content-Type", "application/json")])
        if let key = config.apiKey { headers.add(name: "Authorization", value: "Bearer \(key)") }
        self.result = PublisherResult(lines: config.lineCount, events: config.eventsPerPublisher)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let start as StartPublishing:
            startNanos = start.startNanos
            tick(context: context)
        case is AbortPublishing:
            scheduled?.cancel()
            publishingDone = true
            failPending("no answer before the deadline")
            finish()
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Sends every batch whose deadline (start + k × interval) has passed, then sleeps until the next one.
    private func tick(context: ChannelHandlerContext) {
        guard !publishingDone else { return }
        let now = monotonicNanos()
        let elapsed = now > startNanos ? Double(now - startNanos) : 0
        let due = min(totalBatches, Int(elapsed / intervalNanos) + 1)
        var wrote = false
        while batchesDone < due {
            let intended = startNanos + UInt64(Double(batchesDone) * intervalNanos)
            if now > intended { result.maxScheduleLagNanos = max(result.maxScheduleLagNanos, now - intended) }
            if pending.count >= config.maxInFlight {
                result.skipped += config.batch
            } else {
                send(context: context)
                wrote = true
            }
            batchesDone += 1
        }
        if wrote { context.flush() }
        if batchesDone < totalBatches {
            let deadline = startNanos + UInt64(Double(batchesDone) * intervalNanos)
            let delay = Int64(bitPattern: deadline &- monotonicNanos())
            scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, delay))) {
                self.tick(context: context)
            }
        } else {
            publishingDone = true
            finishIfDone()
        }
    }

    private func send(context: ChannelHandlerContext) {
        let batch = config.batch
        var body = context.channel.allocator.buffer(capacity: batch * (config.payloadBytes + 256) + 2)
        let timestamp = builder.timestamp()
        let sentNanos = monotonicNanos()
        if batch > 1 { body.writeString("[") }
        for offset in 0..<batch {
            if offset > 0 { body.writeString(",") }
            result.eventBytes += builder.write(seq: nextSeq + offset, sentNanos: sentNanos, timestamp: timestamp, into: &body)
        }
        if batch > 1 { body.writeString("]") }
        // With URL templates (another server) each event goes alone to its line's channel.
        let uri = config.templates.map {
            $0.publishTarget(config.templateChannel(forLine: config.lineIndex(publisher: id, seq: nextSeq)))
        } ?? "/v1/events"
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: headers)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        pending.append(Pending(firstSeq: nextSeq, count: batch, sentNanos: sentNanos))
        nextSeq += batch
        result.sent += batch
        if result.firstSendNanos == 0 { result.firstSendNanos = sentNanos }
        result.lastSendNanos = sentNanos
        counters.sent.add(batch, ordering: .relaxed)
        counters.inFlight.add(1, ordering: .relaxed)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            responseStatus = head.status
            responseBody = nil
        case .body(var chunk):
            // A 202 is all we need to know; other answers are read to count what they accepted.
            if responseStatus != .accepted {
                if responseBody == nil { responseBody = chunk } else { responseBody!.writeBuffer(&chunk) }
            }
        case .end:
            completed(status: responseStatus, body: responseBody)
            responseBody = nil
        }
    }

    private func completed(status: HTTPResponseStatus, body: ByteBuffer?) {
        guard let request = pending.popFirst() else {
            result.note("answer without a request (\(status.code))")
            return
        }
        counters.inFlight.add(-1, ordering: .relaxed)
        result.rtt.recordMicros(nanos: monotonicNanos() &- request.sentNanos)
        result.statusCounts[String(status.code), default: 0] += 1
        switch status.code {
        case 200...299 where config.templates != nil:
            // Another server: any success accepted the one event (Nchan answers 201 or 202).
            accept(request.firstSeq..<(request.firstSeq + request.count))
        case 202:
            accept(request.firstSeq..<(request.firstSeq + request.count))
        case 207, 400:
            let accepted = Self.acceptedIndexes(body).filter { $0 >= 0 && $0 < request.count }
            for index in accepted { accept(request.firstSeq + index..<request.firstSeq + index + 1) }
            result.rejected += request.count - accepted.count
            result.note("HTTP \(status.code): \(body.map { String(buffer: $0).prefix(300) } ?? "")")
        default:
            result.failed += request.count
            result.note("HTTP \(status.code): \(body.map { String(buffer: $0).prefix(300) } ?? "")")
        }
        finishIfDone()
    }

    private func accept(_ seqs: Range<Int>) {
        for seq in seqs {
            result.acceptedPerLine[config.lineIndex(publisher: id, seq: seq)] += 1
            result.acceptedSeqs[seq] = true
        }
        result.accepted += seqs.count
        counters.accepted.add(seqs.count, ordering: .relaxed)
    }

    /// `{"accepted":[{"index":0,…}],"rejected":[…]}` → the accepted indexes.
    static func acceptedIndexes(_ body: ByteBuffer?) -> [Int] {
        guard let body, let value = try? JSONValue.parse(body.readableBytesView),
              case .array(let accepted)? = value["accepted"]
        else { return [] }
        return accepted.compactMap { $0["index"]?.numberValue.map { Int($0) } }
    }

    private func failPending(_ reason: String) {
        guard !pending.isEmpty else { return }
        let count = pending.reduce(0) { $0 + $1.count }
        result.failed += count
        counters.inFlight.add(-pending.count, ordering: .relaxed)
        result.note("\(count) events: \(reason)")
        pending.removeAll()
    }

    private func finishIfDone() {
        if publishingDone && pending.isEmpty { finish() }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        promise.succeed(result)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !finished {
            scheduled?.cancel()
            if !publishingDone {
                result.note("connection closed while publishing")
                // What was never sent counts as failed too.
                result.failed += (totalBatches - batchesDone) * config.batch
                publishingDone = true
            }
            failPending("connection closed before the answer")
            finish()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        result.note("connection error: \(error)")
        context.close(promise: nil)
    }
}

/// Connects a publisher (not yet started): its channel and the future of its result.
func connectPublisher(
    id: Int, runID: String, config: LoadConfig, counters: PublishCounters, group: any EventLoopGroup
) async throws -> (channel: any Channel, result: EventLoopFuture<PublisherResult>) {
    let loop = group.next()
    let promise = loop.makePromise(of: PublisherResult.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .connectTimeout(.seconds(5))
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(
                    PublisherHandler(id: id, runID: runID, config: config, counters: counters, promise: promise)
                )
            }
        }
        .connect(host: config.host, port: config.port)
        .get()
    // The handler completes the promise: when its schedule is done and answered, on abort, or when the channel
    // closes (channelInactive).
    return (channel, promise.futureResult)
}
