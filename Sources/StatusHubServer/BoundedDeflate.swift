import CompressNIO
import HummingbirdWSCompression
import HummingbirdWebSocket
import NIOWebSocket

/// permessage-deflate as HummingbirdWSCompression builds it, for the library path (`WebSocketPath.library`, the
/// test suites' reference; a node negotiates its own: `PerMessageDeflate`), with the two things the library
/// leaves open:
///
/// - **One size limit.** A compressed message is held to `websocket.max_frame_bytes` once inflated, exactly like an
///   uncompressed one (1009 above it). The library's own bound (`maxDecompressedFrameSize`) is loose — it inflates
///   into buffers whose capacity NIO rounds up, so ~98 KiB got through a 64 KiB limit — and the error it raises at
///   the bound is one WSCore does not recognise (1011). Both are re-checked and re-raised here as an invalid frame
///   length, which WSCore closes with 1009.
/// - **Declining what it cannot do.** RFC 7692 §5: a server declines an offer it cannot accept (101 without the
///   extension, or the next offer), it does not fail the handshake. The library fails it (400) when zlib refuses the
///   window size (`server_max_window_bits=8`: zlib's raw deflate has no 256-byte window, 9 is its smallest, and the
///   answer may not be larger than the offer) or an out-of-range one, and accepts malformed parameters.
struct BoundedDeflateBuilder: WebSocketExtensionBuilder {
    static var name: String { "permessage-deflate" }
    private let library: any WebSocketExtensionBuilder
    private let maxMessageBytes: Int

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
        // One byte over the limit, so a message of exactly the limit never trips the library's looser check.
        library = WebSocketExtensionFactory.perMessageDeflate(maxDecompressedFrameSize: maxMessageBytes + 1).build()
    }

    static func factory(maxMessageBytes: Int) -> WebSocketExtensionFactory {
        WebSocketExtensionFactory { BoundedDeflateBuilder(maxMessageBytes: maxMessageBytes) }
    }


    func clientRequestHeader() -> String { library.clientRequestHeader() }

    func serverReponseHeader(to request: WebSocketExtensionHTTPParameters) -> String? {
        PerMessageDeflate.canAccept(request) ? library.serverReponseHeader(to: request) : nil
    }

    func serverExtension(from request: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        guard PerMessageDeflate.canAccept(request) else { return nil }
        return try library.serverExtension(from: request).map { BoundedDeflate(library: $0, maxMessageBytes: maxMessageBytes) }
    }

    func clientExtension(from response: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try library.clientExtension(from: response).map { BoundedDeflate(library: $0, maxMessageBytes: maxMessageBytes) }
    }
}

/// One connection's negotiated permessage-deflate, with every inflated frame held to the limit (1009 above it).
/// Frames of a fragmented message are each held to it here; the library's message assembly holds their sum.
struct BoundedDeflate: WebSocketExtension {
    let library: any WebSocketExtension
    let maxMessageBytes: Int

    var name: String { library.name }
    var reservedBits: WebSocketFrame.ReservedBits { library.reservedBits }

    func processReceivedFrame(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        let inflated: WebSocketFrame
        do {
            inflated = try await library.processReceivedFrame(frame, context: context)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw NIOWebSocketError.invalidFrameLength
        }
        guard inflated.data.readableBytes <= maxMessageBytes else { throw NIOWebSocketError.invalidFrameLength }
        return inflated
    }

    func processFrameToSend(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        try await library.processFrameToSend(frame, context: context)
    }

    func shutdown() async { await library.shutdown() }
}
