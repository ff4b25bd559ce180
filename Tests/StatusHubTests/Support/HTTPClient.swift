import Foundation
import StatusHubCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Plain HTTP against a live hub, through Foundation's URLSession (no hand-written client).
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: Data

    var json: [String: JSONValue] {
        (try? JSONDecoder().decode(JSONValue.self, from: body))?.objectValue ?? [:]
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

enum HTTP {
    static func request(
        _ method: String, port: Int, _ path: String, body: Data? = nil, contentType: String? = "application/json",
        headers: [String: String] = [:]
    ) async throws -> HTTPReply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.timeoutInterval = 15
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields["\(name)".lowercased()] = "\(value)" }
        return HTTPReply(status: http.statusCode, headers: fields, body: data)
    }

    static func post(port: Int, events: [String]) async throws -> HTTPReply {
        try await request("POST", port: port, "/v1/events", body: Data("[\(events.joined(separator: ","))]".utf8))
    }

    static func post(port: Int, event: String) async throws -> HTTPReply {
        try await request("POST", port: port, "/v1/events", body: Data(event.utf8))
    }

    static func get(port: Int, _ path: String) async throws -> HTTPReply {
        try await request("GET", port: port, path, contentType: nil)
    }
}
