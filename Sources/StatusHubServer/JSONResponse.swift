import Foundation
import Hummingbird
import StatusHubCore

/// JSON responses, including the one shape every request-level error takes:
/// `{"error":{"status":415,"field":"Content-Type","reason":"…"}}`.
enum JSONResponse {
    static func bytes(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func encode(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return bytes(Array(data), status: status, headers: headers)
    }

    static func error(_ status: HTTPResponse.Status, field: String, reason: String, headers: HTTPFields = [:]) -> Response {
        bytes(errorBytes(status: status.code, field: field, reason: reason), status: status, headers: headers)
    }

    /// The error body on its own, for answers written below Hummingbird (`HTTP1ConnectionGuard`).
    static func errorBytes(status: Int, field: String, reason: String) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(ErrorBody(error: .init(status: status, field: field, reason: reason)))) ?? Data("{}".utf8))
    }

    private struct ErrorBody: Encodable {
        struct Detail: Encodable {
            var status: Int
            var field: String
            var reason: String
        }
        var error: Detail
    }
}
