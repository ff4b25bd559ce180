import Foundation
import StatusHubCore

/// HTTP/1.1 responses read off a raw socket, in order (`Content-Length` framing; 1xx responses have no body).
struct RawHTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var json: [String: JSONValue] { (try? JSONValue.parse(body))?.objectValue ?? [:] }
    var errorField: String? { json["error"]?["field"]?.stringValue }

    /// Every complete response in `stream`.
    static func all(in stream: [UInt8]) -> [RawHTTPResponse] {
        var responses: [RawHTTPResponse] = []
        var rest = stream[...]
        let blankLine = Array("\r\n\r\n".utf8)
        while let headEnd = rest.indices.first(where: { rest[$0...].starts(with: blankLine) }) {
            let lines = String(decoding: rest[rest.startIndex..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
            guard let status = lines.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { break }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let bodyStart = headEnd + blankLine.count
            let length = status < 200 ? 0 : Int(headers["content-length"] ?? "0") ?? 0
            guard rest.endIndex - bodyStart >= length else { break }
            responses.append(RawHTTPResponse(status: status, headers: headers, body: Array(rest[bodyStart..<bodyStart + length])))
            rest = rest[(bodyStart + length)...]
        }
        return responses
    }
}
