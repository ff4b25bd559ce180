import NIOCore
import NIOHTTP1

/// In front of swift-nio's typed upgrade handler, on a connection's first request: lets an `Upgrade` header through
/// only where the node takes the upgrade — a WebSocket handshake it can complete — and takes it off every other
/// request, which is then served as a plain HTTP request (RFC 9110 §7.8: a server may ignore an upgrade it does not
/// take).
///
/// `NIOTypedHTTPServerUpgradeHandler` (swift-nio 2.x) holds the request head while it looks for an upgrader and does
/// not pass it on when none takes the request: the not-upgraded pipeline then saw the request's end without its
/// head, and the client got nothing at all — any `Upgrade: h2c` (`curl --http2`, Java's `HttpClient` on `http://`),
/// `Upgrade: websocket` on another path, or a WebSocket handshake without `Sec-WebSocket-Key` or with another
/// version. Those the upgrader would refuse are answered here instead, with the field and the reason.
final class UpgradeOfferScreen: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Whether the node takes a WebSocket upgrade of this request target now (its path, and the node not draining).
    private let takesUpgrade: (String) -> Bool
    /// A refused handshake's remaining parts are dropped until the connection closes.
    private var refused = false

    init(takesUpgrade: @escaping (String) -> Bool) {
        self.takesUpgrade = takesUpgrade
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let offers = head.headers[canonicalForm: "upgrade"]
        if !offers.isEmpty {
            if offers.contains(where: { $0.lowercased() == "websocket" }) && takesUpgrade(head.uri) {
                if let (status, field, reason) = Self.handshakeFault(head) {
                    return refuse(context: context, head: head, status: status, field: field, reason: reason)
                }
                head.headers.replaceOrAdd(name: "Upgrade", value: "websocket")
            } else {
                head.headers.remove(name: "Upgrade")
            }
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
        // The upgrader reads only a connection's first request; later ones pass it as they are.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// What `NIOTypedWebSocketServerUpgrader` would refuse without an answer (RFC 6455 §4.2.1, §4.4).
    private static func handshakeFault(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String)? {
        if head.method != .GET {
            return (.methodNotAllowed, "method", "a WebSocket handshake is a GET, not \(head.method.rawValue)")
        }
        let keys = head.headers["Sec-WebSocket-Key"]
        if keys.count != 1 || keys[0].isEmpty {
            return (.badRequest, "Sec-WebSocket-Key", keys.isEmpty ? "missing: a WebSocket handshake needs one" : "must be sent once")
        }
        if head.headers["Sec-WebSocket-Version"] != ["13"] {
            return (.upgradeRequired, "Sec-WebSocket-Version", "this node speaks WebSocket version 13 only")
        }
        return nil
    }

    private func refuse(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, field: String, reason: String) {
        refused = true
        var headers = HTTPHeaders()
        if status == .upgradeRequired { headers.add(name: "Sec-WebSocket-Version", value: "13") }
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET") }
        let (answer, body) = JSONResponse.closingError(status, field: field, reason: reason, version: head.version, headers: headers)
        context.write(wrapOutboundOut(.head(answer)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
