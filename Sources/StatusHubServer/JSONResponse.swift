import Foundation
import Hummingbird
import NIOHTTP1
import StatusHubCore

/// JSON responses, including the one shape every request-level error takes:
/// `{"error":{"status":415,"field":"Content-Type","reason":"…"}}`.
enum JSONResponse {
    static func bytes(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        answer(bytes, status: status, headers: headers).response
    }

    static func answer(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> HTTPAnswer {
        var headers = headers
        headers[.contentType] = "application/json"
        return HTTPAnswer(status: status, headers: headers, body: ByteBuffer(bytes: bytes))
    }

    static func encode(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        encodedAnswer(value, status: status, headers: headers).response
    }

    private static func encodedAnswer(_ value: some Encodable, status: HTTPResponse.Status, headers: HTTPFields) -> HTTPAnswer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return answer(Array(data), status: status, headers: headers)
    }

    static func error(_ status: HTTPResponse.Status, field: String, reason: String, headers: HTTPFields = [:]) -> Response {
        errorAnswer(status, field: field, reason: reason, headers: headers).response
    }

    static func errorAnswer(_ status: HTTPResponse.Status, field: String, reason: String, headers: HTTPFields = [:]) -> HTTPAnswer {
        answer(errorBytes(status: status.code, field: field, reason: reason), status: status, headers: headers)
    }

    /// A read's 503 when the engine cannot answer: `engine`, the reason, and when to retry.
    static func engineUnavailable(_ unavailable: EngineUnavailable) -> Response {
        error(.serviceUnavailable, field: "engine", reason: unavailable.reason, headers: [.retryAfter: String(unavailable.retryAfterSeconds)])
    }

    /// The JSON error as swift-nio's HTTP/1 response head and body, with `Connection: close`: for answers written below
    /// Hummingbird that end the connection (`HTTP1ConnectionGuard`, `UpgradeOfferScreen`).
    static func closingError(
        _ status: HTTPResponseStatus, field: String, reason: String, version: HTTPVersion = .http1_1, headers extra: HTTPHeaders = [:]
    ) -> (head: HTTPResponseHead, body: ByteBuffer) {
        let body = errorBytes(status: Int(status.code), field: field, reason: reason)
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Content-Length": String(body.count), "Connection": "close"]
        headers.add(contentsOf: extra)
        return (HTTPResponseHead(version: version, status: status, headers: headers), ByteBuffer(bytes: body))
    }

    /// The error body on its own, for answers written below Hummingbird (`HTTP1ConnectionGuard`).
    static func errorBytes(status: Int, field: String, reason: String) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(ErrorBody(error: .init(status: status, field: field, reason: reason)))) ?? Data("{}".utf8))
    }

    /// A 503 for an ingest request, saying what became of its events: `"outcome":"not_stored"` (resend as is) or
    /// `"outcome":"unknown"` with the idempotency key to resend each listed event with.
    static func unavailable(
        field: String, reason: String, outcome: String, resend: [(index: Int, key: String)]? = nil,
        stored: [(index: Int, appended: Appended)] = [], headers: HTTPFields
    ) -> HTTPAnswer {
        let detail = ErrorBody.Detail(
            status: 503, field: field, reason: reason, outcome: outcome,
            resend: resend?.map { .init(index: $0.index, idempotency_key: $0.key) },
            stored: stored.isEmpty ? nil : stored.map {
                .init(index: $0.index, event_id: $0.appended.id.description, duplicate: $0.appended.duplicate ? true : nil)
            })
        return encodedAnswer(ErrorBody(error: detail), status: .serviceUnavailable, headers: headers)
    }

    private struct ErrorBody: Encodable {
        struct Detail: Encodable {
            struct Resend: Encodable {
                var index: Int
                var idempotency_key: String
            }
            struct Stored: Encodable {
                var index: Int
                var event_id: String
                var duplicate: Bool?
            }
            var status: Int
            var field: String
            var reason: String
            var outcome: String? = nil
            var resend: [Resend]? = nil
            var stored: [Stored]? = nil
        }
        var error: Detail
    }
}
