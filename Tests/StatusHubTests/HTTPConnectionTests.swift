import Foundation
import StatusHubCore
@testable import StatusHubServer
import Testing

/// How HTTP/1 connections end, done over raw sockets: every request the parser refuses is answered with the JSON
/// error and closed at once (first request or later), a connection that does not keep alive ends after its
/// response, an early answer reaches a client still sending its body, and `Expect: 100-continue` is answered.
@Suite("HTTP connections")
struct HTTPConnectionTests {
    /// Request heads NIO's parser refuses, each with the status and field of the answer.
    static let malformedHeads: [(name: String, head: String, status: Int, field: String)] = [
        ("negative Content-Length", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        ("Content-Length list", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n", 400, "Content-Length"),
        ("two Content-Lengths", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "Content-Length"),
        ("Transfer-Encoding and Content-Length",
         "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400, "Content-Length"),
        ("Content-Length and then Transfer-Encoding",
         "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
        ("Transfer-Encoding twice",
         "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
        ("chunked not the last coding",
         "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, "Transfer-Encoding"),
        ("200 KB header", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n", 431, "headers"),
        ("2,000 headers",
         "GET /health HTTP/1.1\r\nHost: x\r\n" + (0..<2000).map { "X-H\($0): v\r\n" }.joined() + "\r\n", 431, "headers"),
        ("space before the colon", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n", 400, "headers"),
    ]

    /// Sends `bytes` on a fresh connection and reads until the hub closes it (at most `timeout`: a liveness bound,
    /// returned from as soon as the hub closes; 5 s ran out in a starved CI-like run with every suite at once).
    static func exchange(port: Int, _ bytes: [UInt8], timeout: TimeInterval = 30) async throws -> (responses: [RawHTTPResponse], closed: Bool, seconds: Double) {
        try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            let start = Date()
            try? socket.send(bytes)
            let (received, closed) = socket.read(timeout: timeout)
            return (RawHTTPResponse.all(in: received), closed, Date().timeIntervalSince(start))
        }
    }

    @Test func malformedFirstRequestIsAnsweredAndClosed() async throws {
        // An idle timeout far beyond the test's wait: what closes these connections is the answer, not the timeout.
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 60 }) { hub in
            for malformed in Self.malformedHeads {
                let (responses, closed, _) = try await Self.exchange(port: hub.port, Array(malformed.head.utf8))
                #expect(responses.map(\.status) == [malformed.status], "\(malformed.name)")
                #expect(responses.first?.errorField == malformed.field, "\(malformed.name): \(responses.first.map { String(decoding: $0.body, as: UTF8.self) } ?? "no answer")")
                #expect(responses.first?.headers["connection"] == "close", "\(malformed.name)")
                #expect(closed, "\(malformed.name): the connection stayed open")
            }
            #expect(try await HTTP.get(port: hub.port, "/health").status == 200)
        }
    }

    /// A CONNECT: the parser reads no request after one (a tunnel's bytes follow), and the router's 405 went out
    /// without a length, leaving the connection hanging. Answered 405 and closed, alone or behind a request being
    /// answered. (swift-nio's encoder writes no body for any response to a CONNECT, so this 405 has none.)
    @Test func connectIsRefusedAndTheConnectionClosed() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 60 }) { hub in
            let connect = "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n"
            let (alone, aloneClosed, _) = try await Self.exchange(port: hub.port, Array(connect.utf8))
            #expect(alone.map(\.status) == [405])
            #expect(alone.first?.headers["connection"] == "close")
            #expect(aloneClosed)
            let (behind, behindClosed, _) = try await Self.exchange(port: hub.port, Array(("GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + connect).utf8))
            #expect(behind.map(\.status) == [200, 405])
            #expect(behindClosed)
        }
    }

    @Test func malformedRequestAfterOneOnTheSameConnectionIsAnsweredAfterIt() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 60 }) { hub in
            let good = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            for malformed in Self.malformedHeads {
                // Pipelined in one write, and a second request once the first is answered: 200, then the JSON error.
                let (pipelined, closed, _) = try await Self.exchange(port: hub.port, Array((good + malformed.head).utf8))
                #expect(pipelined.map(\.status) == [200, malformed.status], "\(malformed.name)")
                #expect(pipelined.last?.errorField == malformed.field, "\(malformed.name)")
                #expect(closed, "\(malformed.name)")

                let (statuses, laterClosed) = try await RawSocket.offPool { () -> ([Int], Bool) in
                    let socket = try RawSocket(port: hub.port)
                    try socket.send(good)
                    let first = socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).count == 1 }
                    try? socket.send(malformed.head)
                    let second = socket.read(timeout: 30)
                    return (RawHTTPResponse.all(in: first.bytes + second.bytes).map(\.status), second.closed)
                }
                #expect(statuses == [200, malformed.status], "\(malformed.name)")
                #expect(laterClosed, "\(malformed.name)")
            }
        }
    }

    /// Many malformed first requests at once: each is closed, so they hold no descriptors (1,100 of them used to
    /// exhaust `ulimit -n 1024` and starve `/health`).
    @Test func manyMalformedConnectionsAreAllClosed() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 60 }) { hub in
            let closed = try await RawSocket.offPool { () -> Int in
                let sockets = try (0..<1100).map { _ in try RawSocket(port: hub.port) }
                for socket in sockets { try? socket.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n") }
                return sockets.count(where: { $0.read(timeout: 5).closed })
            }
            #expect(closed == 1100)
            #expect(try await HTTP.get(port: hub.port, "/health").status == 200)
        }
    }

    /// A malformed chunked body on the request being answered: its handler reads the failure and says so.
    @Test func malformedChunkedBodyIsAnsweredWithJSON() async throws {
        try await withHub(engine: .memory) { hub in
            let request = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
            let (responses, closed, _) = try await Self.exchange(port: hub.port, Array(request.utf8))
            #expect(responses.map(\.status) == [400])
            #expect(responses.first?.errorField == "body")
            #expect(closed)
        }
    }

    /// HTTP/1.0 without keep-alive: the connection ends with the response, not at the idle timeout.
    @Test func http10WithoutKeepAliveIsClosedAfterTheResponse() async throws {
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 60 }) { hub in
            let (responses, closed, seconds) = try await Self.exchange(port: hub.port, Array("GET /health HTTP/1.0\r\n\r\n".utf8))
            #expect(responses.map(\.status) == [200])
            // Closed by the answer, well before the 60 s idle timeout.
            #expect(closed && seconds < 30)
            // With keep-alive it stays open for the next request.
            let (_, keptOpen, _) = try await Self.exchange(
                port: hub.port, Array("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8), timeout: 1)
            #expect(!keptOpen)
        }
    }

    /// A body that stalls (its `Content-Length` 20 bytes more than is sent, nothing trickled) is overdue for the body
    /// deadline and Hummingbird's idle timeout at the same moment: the 408 must win every time, on both ingest paths,
    /// not only when the body deadline's timer happens to fire first (4 tries in 10 did).
    @Test(arguments: [false, true])
    func aStalledBodyIsAlwaysAnswered408(behindARead: Bool) async throws {
        // 3 s, as below: with 1 s, a loaded run of the suite (its tasks starved for over a second) left the read in front
        // unanswered when the body came due, and a request behind an unanswered one can only be closed, not answered.
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 3 }) { hub in
            let body = SampleEvents.alert("M-STALL")
            let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count + 20)\r\n\r\n"
            let lead = behindARead ? "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" : ""
            let results = try await withThrowingTaskGroup(of: (responses: [RawHTTPResponse], closed: Bool, seconds: Double).self) { group in
                for _ in 0..<16 {
                    group.addTask { try await Self.exchange(port: hub.port, Array((lead + head + body).utf8)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for result in results {
                #expect(result.responses.map(\.status) == (behindARead ? [200, 408] : [408]), "closed after \(result.seconds) s")
                #expect(result.responses.last?.errorField == "body")
                #expect(result.responses.last?.headers["connection"] == "close")
                #expect(result.closed)
            }
        }
    }

    /// A slow POST: a body trickled a byte at a time, each byte well inside the idle timeout, is answered 408 and
    /// closed once it has taken longer than the timeout since its head — on both ingest paths (alone: the handler
    /// below the router; behind a read: the router's route) — while a body that ends in time is taken.
    @Test(arguments: [false, true])
    func aBodyTrickledPastTheIdleTimeoutIsAnswered408(behindARead: Bool) async throws {
        // 3 s: a starved run of the whole suite once kept a loop from a connection's first head for over a second.
        try await withHub(engine: .memory, configure: { $0.server.idleTimeoutSeconds = 3 }) { hub in
            let body = Array(SampleEvents.alert("M-7").utf8)
            let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
            let lead = behindARead ? "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" : ""
            let result = try await RawSocket.offPool { () -> (responses: [RawHTTPResponse], closed: Bool, seconds: Double) in
                let socket = try RawSocket(port: hub.port)
                let start = Date()
                try socket.send(lead + head)
                // A byte every 100 ms: the whole body would take over 20 s.
                var received: [UInt8] = []
                for byte in body {
                    guard (try? socket.send([byte])) != nil else { break }
                    let (bytes, closed) = socket.read(timeout: 0.1)
                    received += bytes
                    if closed { return (RawHTTPResponse.all(in: received), true, Date().timeIntervalSince(start)) }
                }
                let (rest, closed) = socket.read(timeout: 10)
                return (RawHTTPResponse.all(in: received + rest), closed, Date().timeIntervalSince(start))
            }
            #expect(result.responses.map(\.status) == (behindARead ? [200, 408] : [408]))
            #expect(result.responses.last?.errorField == "body")
            #expect(result.responses.last?.headers["connection"] == "close")
            // Answered at 3 s, the trickle dropped for up to 3 s more, then closed.
            #expect(result.closed)
            #expect(result.seconds < 15, "closed after \(result.seconds) s")

            // The same body sent in three parts within the timeout is accepted.
            let (statuses, _) = try await RawSocket.offPool { () -> ([Int], Bool) in
                let socket = try RawSocket(port: hub.port)
                try socket.send(lead + head)
                let third = body.count / 3
                for part in [body[..<third], body[third..<2 * third], body[(2 * third)...]] {
                    try socket.send(Array(part))
                    Thread.sleep(forTimeInterval: 0.1)
                }
                // Returns as soon as the answers are in; 10 s only bounds a starved run.
                let (bytes, closed) = socket.read(timeout: 10, until: { RawHTTPResponse.all(in: $0).count == (behindARead ? 2 : 1) })
                return (RawHTTPResponse.all(in: bytes).map(\.status), closed)
            }
            #expect(statuses == (behindARead ? [200, 202] : [202]))
        }
    }

    /// A client that sends its whole body before reading (Python's urllib) with `Connection: close` gets the answer
    /// the hub gives from the head alone — 413 from `Content-Length`, 401 for a missing publisher key — instead of
    /// waiting on a send the hub no longer reads.
    @Test(arguments: [(key: "publisher-key-1", status: 413, field: "body"), (key: nil, status: 401, field: "Authorization")])
    func anEarlyAnswerReachesAClientSendingItsWholeBodyWithConnectionClose(key: String?, status: Int, field: String) async throws {
        try await withHub(engine: .memory, configure: { config in
            config.server.maxBodyBytes = 1024
            config.auth.required = true
            config.auth.apiKeys = [.init(name: "mes", hash: PublisherKeys.hash(key: "publisher-key-1"))]
            config.auth.jwtHs256Secret = TokenIssuer.secret
        }) { hub in
            let body = [UInt8](repeating: UInt8(ascii: "x"), count: 8 << 20)
            let authorization = key.map { "Authorization: Bearer \($0)\r\n" } ?? ""
            let result = try await RawSocket.offPool { () -> (sent: Bool, responses: [RawHTTPResponse], closed: Bool) in
                let socket = try RawSocket(port: hub.port)
                // A liveness bound: alone the 8 MiB drains in 0.1–0.3 s (with every core busy too), but two starved
                // runs of the whole suite overran 10 s once the 413 came from the first read (`IngestHandler`).
                socket.setSendTimeout(seconds: 30)
                try socket.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\(authorization)Content-Length: \(body.count)\r\nConnection: close\r\n\r\n")
                let sent = (try? socket.send(body)) != nil
                let (received, closed) = socket.read(timeout: 10)
                return (sent, RawHTTPResponse.all(in: received), closed)
            }
            #expect(result.sent, "the hub stopped reading the body, so the client could not finish sending it")
            #expect(result.responses.map(\.status) == [status])
            #expect(result.responses.first?.errorField == field)
            #expect(result.closed)
        }
    }

    /// A chunked body over `server.max_body_bytes` gets the JSON 413, not an empty one.
    @Test func overSizeChunkedBodyGetsJSON413() async throws {
        try await withHub(engine: .memory, configure: { $0.server.maxBodyBytes = 1024 }) { hub in
            let chunk = String(repeating: "x", count: 4096)
            let request = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "1000\r\n\(chunk)\r\n0\r\n\r\n"
            // Read until the one answer is whole (30 s is a bound for a starved CI run, where 3 s ran out).
            let responses = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try? socket.send(Array(request.utf8))
                return RawHTTPResponse.all(in: socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).count == 1 }.bytes)
            }
            #expect(responses.map(\.status) == [413])
            #expect(responses.first?.errorField == "body")
        }
    }

    /// `Expect: 100-continue` gets `100 Continue` at once (curl waited a second for it on every POST), then the
    /// answer to the body; a declared body over the limit gets the 413 instead.
    @Test func expectContinueIsAnswered() async throws {
        try await withHub(engine: .memory, configure: { $0.server.maxBodyBytes = 65536 }) { hub in
            let event = Array(SampleEvents.alert("M-100").utf8)
            let (interim, final) = try await RawSocket.offPool { () -> ([RawHTTPResponse], [RawHTTPResponse]) in
                let socket = try RawSocket(port: hub.port)
                try socket.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(event.count)\r\nExpect: 100-continue\r\n\r\n")
                // Each read ends at its answer; the bound is for a node starved by the rest of a parallel suite.
                let interim = socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).count == 1 }.bytes
                try socket.send(event)
                let final = socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).count == 1 }.bytes
                return (RawHTTPResponse.all(in: interim), RawHTTPResponse.all(in: final))
            }
            #expect(interim.map(\.status) == [100])
            #expect(final.map(\.status) == [202])

            let tooLarge = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            // The hub keeps the connection to drop a body that may still come, so the read ends at the answer, not at
            // the socket's close; 30 s is for a node starved by the rest of a parallel suite (the answer takes ms).
            let answered = try await RawSocket.offPool { () -> [RawHTTPResponse] in
                let socket = try RawSocket(port: hub.port)
                try socket.send(tooLarge)
                return RawHTTPResponse.all(in: socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).count == 1 }.bytes)
            }
            #expect(answered.map(\.status) == [413])

            // Refused from its head (here the media type): the refusal alone, no 100 inviting the body first.
            let unsupported = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
            let refused = try await RawSocket.offPool { () -> [RawHTTPResponse] in
                let socket = try RawSocket(port: hub.port)
                try socket.send(unsupported)
                return RawHTTPResponse.all(in: socket.read(timeout: 30) { RawHTTPResponse.all(in: $0).contains { $0.status != 100 } }.bytes)
            }
            #expect(refused.map(\.status) == [415])
        }
    }
}
