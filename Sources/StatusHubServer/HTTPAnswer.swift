import Hummingbird

/// A whole response with its body in hand: what `IngestHandler` writes as parts below Hummingbird, and what a route
/// hands Hummingbird as a `Response`. One answer, two request paths, the same bytes.
struct HTTPAnswer: Sendable {
    var head: HTTPResponse
    var body: ByteBuffer

    init(status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer) {
        head = HTTPResponse(status: status, headerFields: headers)
        self.body = body
    }

    var response: Response {
        Response(status: head.status, headers: head.headerFields, body: ResponseBody(byteBuffer: body))
    }
}
