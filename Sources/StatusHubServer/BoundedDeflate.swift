import CompressNIO
import HummingbirdWSCompression
import HummingbirdWebSocket
import NIOWebSocket

/// permessage-deflate exactly as HummingbirdWSCompression builds it, but with a compression bomb reported as
/// what it is. The library already stops inflating at `maxDecompressedFrameSize`; the error it raises there is one
/// WSCore does not recognise, so the socket would be closed with 1011 (server error). Re-raised as an invalid frame
/// length, the client gets 1009 (message too big), the code for every other over-size message.
struct BoundedDeflateBuilder: WebSocketExtensionBuilder {
    static var name: String { "permessage-deflate" }
    private let library: any WebSocketExtensionBuilder

    init(maxDecompressedFrameSize: Int) {
        library = WebSocketExtensionFactory.perMessageDeflate(maxDecompressedFrameSize: maxDecompressedFrameSize).build()
    }

    static func factory(maxDecompressedFrameSize: Int) -> WebSocketExtensionFactory {
        WebSocketExtensionFactory { BoundedDeflateBuilder(maxDecompressedFrameSize: maxDecompressedFrameSize) }
    }

    func clientRequestHeader() -> String { library.clientRequestHeader() }

    func serverReponseHeader(to request: WebSocketExtensionHTTPParameters) -> String? {
        library.serverReponseHeader(to: request)
    }

    func serverExtension(from request: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try library.serverExtension(from: request).map(BoundedDeflate.init)
    }

    func clientExtension(from response: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try library.clientExtension(from: response).map(BoundedDeflate.init)
    }
}

/// One connection's negotiated permessage-deflate, with inflate overflow mapped to 1009.
struct BoundedDeflate: WebSocketExtension {
    let library: any WebSocketExtension

    var name: String { library.name }
    var reservedBits: WebSocketFrame.ReservedBits { library.reservedBits }

    func processReceivedFrame(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        do {
            return try await library.processReceivedFrame(frame, context: context)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw NIOWebSocketError.invalidFrameLength
        }
    }

    func processFrameToSend(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        try await library.processFrameToSend(frame, context: context)
    }

    func shutdown() async { await library.shutdown() }
}
