import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import StatusHubCore

/// `GET /v1/sse?channels=…`: the WebSocket subscription as a Server-Sent Events stream, for plant networks and
/// proxies that block WebSocket upgrades.
///
/// One subscribe per stream, given in the query; the same `Connection`, outbox, fan-out, filters, snapshot, replay
/// and seam as a WebSocket (`Subscriptions`), so the same slow-consumer rules hold. Every hub message is one SSE
/// message whose `data:` is the message's JSON exactly as a WebSocket would carry it; an `event` message carries
/// its `event_id` as `id:`, and a snapshot's last part its `position`, so a browser's `EventSource` reconnects with
/// `Last-Event-ID` and resumes there (`since`).
struct ServerSentEvents {
    let hub: StatusHub
    let logger: Logger

    /// The comment written while no message is due, so proxies keep the stream open and a client that left is
    /// noticed.
    static let heartbeat = ByteBuffer(string: ": heartbeat\n\n")

    func handle(_ request: Request, context: HubRequestContext) async throws -> Response {
        guard !hub.draining.isSet else {
            return JSONResponse.error(.serviceUnavailable, field: "node", reason: "shutting down; connect to another node", headers: [.retryAfter: "1"])
        }
        let asked: SubscribeQuery
        do {
            asked = try SubscribeQuery(
                parsing: request.uri.query ?? "", lastEventID: request.headers[.lastEventID], maxPatterns: hub.config.websocket.maxSubscriptions)
        } catch {
            return JSONResponse.error(.badRequest, field: error.field, reason: error.reason)
        }
        let address: String
        switch hub.access.admitConnection(
            channel: context.channel, forwardedFor: request.headers[values: .xForwardedFor], forwarded: request.headers[values: .forwarded]) {
        case .admitted(let admitted): address = admitted
        case .refused(let code, let reason):
            return JSONResponse.error(
                code == .tooManyConnections ? .tooManyRequests : .serviceUnavailable, field: "connection", reason: reason,
                headers: [.retryAfter: "1"])
        }
        // The header's, else the query's (read with the rest of the query above).
        let token = SubscriberTokens.token(authorization: request.headers[.authorization], path: nil)
        let subscriber: Subscriber
        switch await hub.access.authenticate(token: token ?? asked.token) {
        case .success(let known): subscriber = known
        case .failure(let refusal):
            hub.access.connections.release(address)
            return JSONResponse.error(.unauthorized, field: "token", reason: refusal.reason)
        }
        let access = hub.access.session(for: subscriber)
        let (allowed, forbidden) = access.partition(asked.patterns)
        guard forbidden.isEmpty else {
            hub.access.connections.release(address)
            return JSONResponse.error(
                .forbidden, field: "channels", reason: "pattern '\(forbidden[0].text)' is outside this token's patterns")
        }
        let stream = Stream(hub: hub, channel: context.channel, subscriber: subscriber, logger: logger)
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
            body: ResponseBody { [hub] writer in
                defer { hub.access.connections.release(address) }
                try await stream.run(patterns: allowed, asked: asked, writer: &writer)
            })
    }

    /// One open stream.
    struct Stream: Sendable {
        let hub: StatusHub
        let channel: any Channel
        let subscriber: Subscriber
        let logger: Logger

        func run(patterns: [ChannelPattern], asked: SubscribeQuery, writer: inout any ResponseBodyWriter) async throws {
            let connection = Connection(
                id: hub.connectionIDs.next(), outboxCapacity: hub.config.websocket.outboxCapacity,
                conflateAbove: hub.config.websocket.conflateAbove, claims: subscriber.claims)
            // Like a WebSocket: a stream whose outbox overflows ends; one whose socket stopped draining is cut a
            // second later.
            connection.whenOverflowing { [metrics = hub.metrics, channel] in
                metrics.slowConsumerCloses.increment()
                channel.eventLoop.scheduleTask(in: .seconds(1)) { if channel.isActive { channel.close(promise: nil) } }
            }
            // A client that goes away ends the stream at once, not at the next write.
            channel.closeFuture.whenComplete { [connection] _ in connection.outbox.close() }
            hub.metrics.sseConnections.increment()
            hub.fanOut.opened(connection)
            defer {
                hub.fanOut.closed(connection)
                connection.finish()
                hub.metrics.sseConnections.decrement()
            }
            // The browser's reconnection delay, then the subscribe's answer through the outbox.
            try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
            let subscriptions = Subscriptions(
                connection: connection, fanOut: hub.fanOut, engine: hub.engine,
                maxSubscriptions: hub.config.websocket.maxSubscriptions, metrics: hub.metrics)
            let interval = Duration.milliseconds(Int64(min(hub.config.websocket.pingIntervalSeconds, 15) * 1000))
            let expires = subscriber.expires
            let pacer = Task {
                await subscriptions.subscribe(
                    id: nil, patterns: patterns, wantsSnapshot: asked.snapshot, since: asked.since, filter: asked.filter, recent: asked.recent)
                while !Task.isCancelled {
                    // The token's `exp` ends the stream (the WebSocket's 4003), checked on the heartbeat's timer.
                    // At most 15 s is slept, so the wait is clamped before it becomes milliseconds: a token whose `exp`
                    // is ages away (1e17) does not fit Int64 in them, and the conversion trapped and stopped the node.
                    let untilExpiry = expires.map { Duration.milliseconds(Int64(min(max(0, $0.timeIntervalSinceNow), 15) * 1000) + 1) }
                    try? await Task.sleep(for: min(interval, untilExpiry ?? interval))
                    if let expires, expires.timeIntervalSinceNow <= 0 {
                        connection.outbox.push(WireFrame.text(ServerMessage.error(
                            id: nil, code: .forbidden, message: "token expired; reconnect with a fresh token")))
                        connection.outbox.close()
                        return
                    }
                    connection.outbox.push(Self.heartbeatMarker)
                }
            }
            defer { pacer.cancel() }
            var tally = DeliveryTally(for: hub.latency)
            var stamps: [DeliveryStamp] = []
            loop: while true {
                stamps.removeAll(keepingCapacity: true)
                switch await connection.outbox.next(forEachStamp: { stamps.append($0) }) {
                case .frames(let frames):
                    var buffer = ByteBufferAllocator().buffer(capacity: frames.reduce(0) { $0 + $1.framed.readableBytes + 32 })
                    for frame in frames { Self.append(frame, to: &buffer) }
                    try await writer.write(buffer)
                    // Timed once the batch is handed to the socket.
                    tally.commit(written: stamps)
                case .ended(let ending):
                    switch ending {
                    case .overflowed:
                        logger.notice("closing slow SSE consumer", metadata: ["connection": "\(connection.id)"])
                        try? await writer.write(ByteBuffer(string: "event: close\ndata: {\"code\":4001,\"reason\":\"slow consumer; reconnect with Last-Event-ID\"}\n\n"))
                    case .goingAway:
                        try? await writer.write(ByteBuffer(string: "event: close\ndata: {\"code\":1001,\"reason\":\"node shutting down; reconnect\"}\n\n"))
                    case .closed:
                        break
                    }
                    break loop
                }
            }
            try await writer.finish(nil)
        }

        /// Pushed by the pacer: written as the heartbeat comment. A WebSocket ping frame, which the outbox never
        /// otherwise holds.
        static let heartbeatMarker = WireFrame(framed: ByteBuffer(bytes: [0x89, 0x00]))

        /// One outbox frame as an SSE message: `id:` for events (and a snapshot's last part), then `data:`.
        static func append(_ frame: WireFrame, to buffer: inout ByteBuffer) {
            if frame.framed.getInteger(at: frame.framed.readerIndex, as: UInt8.self) == 0x89 {
                buffer.writeImmutableBuffer(ServerSentEvents.heartbeat)
                return
            }
            let payload = frame.payload
            if let id = resumeID(in: payload) {
                buffer.writeString("id: ")
                buffer.writeString(id)
                buffer.writeString("\n")
            }
            buffer.writeString("data: ")
            // The hub's JSON never holds a raw line break, but SSE would end the line there: split it if one came.
            let bytes = payload.readableBytesView
            if bytes.contains(where: { $0 == 0x0A || $0 == 0x0D }) {
                for byte in bytes {
                    if byte == 0x0A { buffer.writeString("\ndata: ") } else if byte != 0x0D { buffer.writeInteger(byte) }
                }
            } else {
                buffer.writeImmutableBuffer(payload)
            }
            buffer.writeString("\n\n")
        }

        private static let eventPrefix = Array(#"{"op":"event","event":{"event_id":""#.utf8)
        private static let snapshotPrefix = Array(#"{"op":"snapshot","position":""#.utf8)

        /// The position a client that has this message resumes after: an event's id, or the position of a
        /// snapshot's last part (an earlier part's position would skip the parts still to come).
        static func resumeID(in payload: ByteBuffer) -> String? {
            let head = payload.getBytes(at: payload.readerIndex, length: min(payload.readableBytes, 96)) ?? []
            // With several partitions an event's frame ends with the token that resumes after it: that is its id.
            if head.starts(with: eventPrefix), let token = resumeToken(atEndOf: payload) { return token }
            for prefix in [eventPrefix, snapshotPrefix] where head.starts(with: prefix) {
                let rest = head.dropFirst(prefix.count)
                guard let quote = rest.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                if prefix == snapshotPrefix, head[(quote + 1)...].starts(with: Array(#","more":true"#.utf8)) { return nil }
                return String(decoding: rest[..<quote], as: UTF8.self)
            }
            return nil
        }

        private static let positionKey = Array(#","position":""#.utf8)

        /// The `"position":"r1.…"` an event frame ends with on a hub with several partitions (`ServerMessage.event`),
        /// or nil. The last occurrence: the event's own JSON comes before it.
        private static func resumeToken(atEndOf payload: ByteBuffer) -> String? {
            // Most frames end `}}` (no token): told from the last two bytes, without copying any.
            guard payload.readableBytes > 2,
                payload.getInteger(at: payload.readerIndex + payload.readableBytes - 2, as: UInt8.self) == UInt8(ascii: "\"")
            else { return nil }
            let tailLength = min(payload.readableBytes, 64 + 24 * 300)
            guard let tail = payload.getBytes(at: payload.readerIndex + payload.readableBytes - tailLength, length: tailLength),
                tail.count > 2, tail.suffix(2).elementsEqual(Array(#""}"#.utf8))
            else { return nil }
            var start = tail.count - 2 - positionKey.count
            while start >= 0 {
                if tail[start..<(start + positionKey.count)].elementsEqual(positionKey) {
                    let token = String(decoding: tail[(start + positionKey.count)..<(tail.count - 2)], as: UTF8.self)
                    return token.hasPrefix(PartitionPositions.prefix) ? token : nil
                }
                start -= 1
            }
            return nil
        }
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
    /// The client addresses proxies name (`TrustedProxies`).
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwarded = HTTPField.Name("Forwarded")!
}
