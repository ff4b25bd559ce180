import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTPS request over a fresh connection, verified against `trust` for the name `localhost` (the hub binds
/// 127.0.0.1; an IP address cannot be sent as SNI). URLSession on Linux cannot be told to trust a test's own
/// certificate, so this goes through NIO and swift-nio-ssl like the hub itself.
enum TLSHTTPClient {
    struct Reply: Sendable {
        var status: Int
        var body: String
    }

    static func request(
        port: Int, method: HTTPMethod = .GET, path: String, body: String? = nil, headers: [(String, String)] = [],
        trust configuration: TLSConfiguration
    ) async throws -> Reply {
        let context = try NIOSSLContext(configuration: configuration)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            let bytes = ByteBuffer(string: body ?? "")
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: "localhost")
            head.headers.add(name: "Connection", value: "close")
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            if body != nil {
                head.headers.add(name: "Content-Type", value: "application/json")
                head.headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
            }
            try await outbound.write(.head(head))
            if body != nil { try await outbound.write(.body(.byteBuffer(bytes))) }
            try await outbound.write(.end(nil))
            var reply = Reply(status: 0, body: "")
            for try await part in inbound {
                switch part {
                case .head(let head): reply.status = Int(head.status.code)
                case .body(let chunk): reply.body += String(buffer: chunk)
                case .end: return reply
                }
            }
            return reply
        }
    }
}
