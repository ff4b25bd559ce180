import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import StatusHubCore

/// `POST /v1/events`: decode, validate, hand the valid events to the engine in one batch, answer per event.
struct IngestController: Sendable {
    let engine: any Engine
    let limits: HubConfig.Server
    let metrics: HubMetrics
    let draining: DrainFlag
    let watermark: DeliveryWatermark
    let keys: PublisherKeys
    let rateLimiter: RateLimiter
    let validator: EventValidator

    /// What a request's head allows, decided before any of its body is read.
    struct Admitted: Sendable {
        var publisher: Publisher
        var format: IngestBodyFormat
        var coding: ContentCoding
        /// `Idempotency-Key`: names the request's one event.
        var idempotencyKey: String?
    }

    /// Hummingbird's route. `IngestHandler` serves most requests below it, from the same three steps.
    func handle(_ request: Request, context: some RequestContext) async throws -> Response {
        metrics.ingestRequestsByRouter.increment()
        let admitted: Admitted
        switch admit(request.headers) {
        case .success(let allowed): admitted = allowed
        case .failure(let refusal): return refusal.answer.response
        }
        let received: ByteBuffer
        do {
            received = try await request.body.collect(upTo: limits.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            return tooLarge(nil).response
        } catch let malformed as HTTPParserError {
            return brokenFraming(malformed).response
        }
        return try await ingest(received, admitted).response
    }

    private func shuttingDown() -> HTTPAnswer {
        JSONResponse.unavailable(
            field: "node", reason: "shutting down; nothing was stored, send it to another node", outcome: "not_stored",
            headers: [.retryAfter: "1"])
    }

    /// An answer that refuses a request before its body is read.
    struct Refusal: Error {
        var answer: HTTPAnswer
    }

    /// Decides from the head alone: authenticated before the body is read, so an unknown publisher costs the node as
    /// little as possible, and a declared body over the limit is refused before it arrives.
    func admit(_ headers: HTTPFields) -> Result<Admitted, Refusal> {
        if draining.isSet { return .failure(Refusal(answer: shuttingDown())) }
        let publisher: Publisher
        switch keys.authenticate(authorization: headers[.authorization]) {
        case .publisher(let known): publisher = known
        case .unauthorized(let reason):
            return .failure(Refusal(answer: JSONResponse.errorAnswer(
                .unauthorized, field: "Authorization", reason: reason, headers: [.wwwAuthenticate: "Bearer"])))
        }
        guard let format = IngestBodyFormat(contentType: headers[.contentType]) else {
            return .failure(Refusal(answer: JSONResponse.errorAnswer(
                .unsupportedMediaType, field: "Content-Type",
                reason: "'\(headers[.contentType] ?? "(none)")' is not supported; use \(IngestBodyFormat.supported)")))
        }
        guard let coding = ContentCoding(header: headers[.contentEncoding]) else {
            return .failure(Refusal(answer: JSONResponse.errorAnswer(
                .unsupportedMediaType, field: "Content-Encoding",
                reason: "'\(headers[.contentEncoding] ?? "")' is not supported; use \(ContentCoding.supported)")))
        }
        if let length = headers[.contentLength].flatMap(Int.init), length > limits.maxBodyBytes {
            return .failure(Refusal(answer: tooLarge(length)))
        }
        return .success(Admitted(publisher: publisher, format: format, coding: coding, idempotencyKey: headers[.idempotencyKey]))
    }

    /// The answer to a body whose framing (chunk sizes) is broken: nothing after it can be read, so the connection
    /// ends.
    func brokenFraming(_ malformed: HTTPParserError) -> HTTPAnswer {
        let (status, field, reason) = malformed.answer(limits: .init())
        return JSONResponse.errorAnswer(.init(code: Int(status.code)), field: field, reason: reason, headers: [.connection: "close"])
    }

    /// Decodes, validates and stores an admitted request's whole body; answers per event.
    func ingest(_ received: ByteBuffer, _ admitted: Admitted) async throws -> HTTPAnswer {
        let body: ByteBuffer
        do {
            body = try admitted.coding.decode(received, limit: limits.maxBodyBytes)
        } catch .tooLarge {
            return JSONResponse.errorAnswer(
                .contentTooLarge, field: "body",
                reason: "inflates past the \(limits.maxBodyBytes)-byte limit (server.max_body_bytes); inflating stopped there")
        } catch .invalid(let reason) {
            return JSONResponse.errorAnswer(.badRequest, field: "body", reason: "\(reason) (Content-Encoding: gzip)")
        }
        let publisher = admitted.publisher

        let decoded: [Result<JSONValue, FieldError>]
        do {
            decoded = try IngestBody.decode(body.readableBytesView, format: admitted.format, maxEvents: limits.maxBatchEvents)
        } catch .malformed(let problem) {
            var reply = IngestReply()
            reply.reject(index: 0, errors: [problem])
            metrics.eventsRejected.increment()
            return JSONResponse.answer(reply.json, status: .badRequest)
        } catch .tooManyEvents(let count, let limit) {
            return JSONResponse.errorAnswer(
                .contentTooLarge, field: "body", reason: "\(count) events; at most \(limit) per request (server.max_batch_events)")
        }

        if let wait = rateLimiter.take(decoded.count, for: publisher.name ?? "(anonymous)") {
            return JSONResponse.errorAnswer(
                .tooManyRequests, field: "Authorization",
                reason: "over this key's \(rateLimiter.describe) (auth.ingest_events_per_second); nothing was acknowledged",
                headers: [.retryAfter: String(wait)])
        }

        // The header names one event; a batch carries `idempotency_key` per event instead.
        let headerKey = admitted.idempotencyKey
        if let headerKey {
            guard decoded.count == 1 else {
                return JSONResponse.errorAnswer(
                    .badRequest, field: "Idempotency-Key",
                    reason: "applies to a single event; give each event of a batch its own idempotency_key")
            }
            guard EventValidator.isValidIdempotencyKey(headerKey) else {
                return JSONResponse.errorAnswer(.badRequest, field: "Idempotency-Key", reason: EventValidator.idempotencyKeyRule)
            }
        }

        var reply = IngestReply()
        var valid: [(index: Int, event: ValidatedEvent)] = []
        var forbidden = 0
        let receivedAt = Date()
        for (index, item) in decoded.enumerated() {
            switch item {
            case .failure(let problem):
                reply.reject(index: index, errors: [problem])
            case .success(var value):
                if let headerKey {
                    // Two keys for one event: neither can be taken for the publisher's meaning.
                    if case .string(let own)? = value["idempotency_key"], own != headerKey {
                        reply.reject(index: index, errors: [FieldError(
                            field: "Idempotency-Key", reason: "differs from the event's idempotency_key '\(own)'; send one of them, or the same in both")])
                        continue
                    }
                    value = validator.withIdempotencyKey(value, key: headerKey)
                }
                switch validator.validate(value, receivedAt: receivedAt, tenant: publisher.tenant) {
                case .valid(let event):
                    if let refusal = publisher.refusal(for: event) {
                        forbidden += 1
                        reply.reject(index: index, errors: [refusal])
                    } else if event.bodyAfterID.count > limits.maxEventBytes {
                        reply.reject(index: index, errors: [FieldError(
                            field: "event",
                            reason: "\(event.bodyAfterID.count) bytes is over the \(limits.maxEventBytes)-byte limit (server.max_event_bytes)")])
                    } else {
                        valid.append((index, publisher.scoping(event)))
                    }
                case .invalid(let problems): reply.reject(index: index, errors: problems)
                }
            }
        }
        metrics.eventsRejected.increment(by: Int64(reply.rejected.count))

        if !valid.isEmpty {
            // Admitted before the node began shutting down, appending after it closed: its subscribers are gone.
            guard watermark.beginAppend() else { return shuttingDown() }
            var stored: [(partition: Int, id: EventID)] = []
            defer { watermark.endAppend(acknowledging: stored) }
            do {
                let results = try await engine.append(valid.map(\.event))
                for (item, appended) in zip(valid, results) {
                    if let heldLine = appended.foreignLine {
                        forbidden += 1
                        reply.reject(index: item.index, errors: [Publisher.foreignEntity(item.event, heldLine: heldLine, state: appended.id)])
                    } else {
                        reply.accept(index: item.index, appended)
                    }
                }
                stored = acknowledgements(valid.map(\.event), results.map(Optional.some))
                metrics.eventsRejected.increment(by: Int64(results.count(where: { $0.foreignLine != nil })))
                metrics.eventsAccepted.increment(by: Int64(results.count(where: \.stored)))
                metrics.duplicatesAcknowledged.increment(by: Int64(results.count(where: { $0.duplicate })))
            } catch let unavailable as EngineUnavailable {
                metrics.ingestUnavailable.increment()
                let appended = unavailable.stored.compactMap { $0 }
                stored = acknowledgements(valid.map(\.event), unavailable.stored)
                metrics.eventsAccepted.increment(by: Int64(appended.count(where: \.stored)))
                metrics.duplicatesAcknowledged.increment(by: Int64(appended.count(where: { $0.duplicate })))
                return unavailableResponse(unavailable, events: valid.map(\.index))
            }
        }
        reply.rejected.sort { $0.index < $1.index }
        // Nothing accepted and something refused by the key's scope: 403, with each refusal named per event.
        let status = reply.accepted.isEmpty && forbidden > 0 ? 403 : reply.statusCode
        return JSONResponse.answer(reply.json, status: .init(code: status))
    }

    /// The stored events that were not duplicates, each with its partition, for the shutdown watermark.
    private func acknowledgements(_ events: [ValidatedEvent], _ outcomes: [Appended?]) -> [(partition: Int, id: EventID)] {
        zip(events, outcomes).compactMap { event, outcome in
            guard let outcome, outcome.stored else { return nil }
            return (engine.partition(ofEntityKey: event.entityKey), outcome.id)
        }
    }

    /// The 503 for an engine failure: `not_stored` (resend as is), or `unknown` with a hub key per event that had
    /// no key of its own, by its index in the request (`resendKeys[i]` belongs to `events[i]`).
    private func unavailableResponse(_ unavailable: EngineUnavailable, events: [Int]) -> HTTPAnswer {
        let headers: HTTPFields = [.retryAfter: String(unavailable.retryAfterSeconds)]
        switch unavailable.outcome {
        case .notStored:
            return JSONResponse.unavailable(
                field: "engine", reason: "\(unavailable.reason); nothing in this request was stored, resend it as it is",
                outcome: "not_stored", headers: headers)
        case .unknown(let resendKeys):
            let resend = zip(events, resendKeys).compactMap { index, key in key.map { (index: index, key: $0) } }
            // Known stored (the partitions that answered): listed with their ids; their resend is a duplicate.
            let stored = zip(events, unavailable.stored).compactMap { index, appended in appended.map { (index: index, appended: $0) } }
            let advice = limits.idempotencyWindowSeconds > 0
                ? "resend the request with each event listed in resend carrying the idempotency_key given there (events with their own key keep it)"
                : "idempotency is off (server.idempotency_window_seconds), so only a look at the history tells"
            return JSONResponse.unavailable(
                field: "engine",
                reason: "\(unavailable.reason); \(stored.isEmpty ? "the events" : "the events listed in stored were stored, the others") may or may not have been stored: \(advice)",
                outcome: "unknown", resend: resend, stored: stored, headers: headers)
        }
    }

    func tooLarge(_ length: Int?) -> HTTPAnswer {
        JSONResponse.errorAnswer(
            .contentTooLarge, field: "body",
            reason: "\(length.map { "\($0) bytes" } ?? "body") is over the \(limits.maxBodyBytes)-byte limit (server.max_body_bytes)")
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let wwwAuthenticate = HTTPField.Name("WWW-Authenticate")!
}
