import NIOCore
import Prometheus
import Synchronization

/// A server-to-client WebSocket text message, framed once: the header and the payload in one `ByteBuffer` that
/// every receiver shares (servers do not mask, so the bytes are the same for everyone).
///
/// Its permessage-deflate form is shared the same way. The hub always answers `server_no_context_takeover`
/// (`PerMessageDeflate`), so each message is compressed on its own and its compressed bytes depend only on the
/// payload and the server window size: the first compressed connection to write the message compresses it, every
/// other one with the same window size writes those bytes. Compression then costs per event, not per connection,
/// and a message nobody compressed (no compressed receiver, or conflated away first) is never compressed.
struct WireFrame: Sendable {
    /// The plain frame: FIN, opcode 1, the length, the payload.
    let framed: ByteBuffer
    /// Nil for payloads too small to be worth compressing (and for markers that are never written).
    private let deflated: DeflatedForms?

    /// Payloads smaller than this go out uncompressed on compressed connections too (RSV1 clear, which RFC 7692
    /// allows per message): a few dozen bytes of JSON barely shrink, and each compression costs a zlib pass. The
    /// WebSocket library's default threshold.
    static let minimumDeflatedPayload = 256

    /// `payload` as one unfragmented text frame.
    static func text(_ payload: [UInt8]) -> WireFrame {
        WireFrame(framed: Self.header(first: 0x81, length: payload.count, then: payload), compressible: payload.count >= minimumDeflatedPayload)
    }

    /// Bytes queued as they are, never compressed (a marker an outbox reader recognises, or a test's frame).
    init(framed: ByteBuffer) {
        self.init(framed: framed, compressible: false)
    }

    private init(framed: ByteBuffer, compressible: Bool) {
        self.framed = framed
        self.deflated = compressible ? DeflatedForms() : nil
    }

    /// The payload, sharing the frame's storage (for writers that frame it themselves: the WebSocket library, SSE).
    var payload: ByteBuffer {
        let frame = framed
        let headerLength: Int
        switch frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self)! & 0x7F {
        case 126: headerLength = 4
        case 127: headerLength = 10
        default: headerLength = 2
        }
        return frame.getSlice(at: frame.readerIndex + headerLength, length: frame.readableBytes - headerLength)!
    }

    /// The bytes to write on a connection: the plain frame, or with permessage-deflate negotiated (`windowBits`, the
    /// server's window) the message compressed, once for every connection with that window size. `compressions`
    /// counts the compressions done.
    func bytes(deflatingWith windowBits: Int?, compressions: Counter? = nil) -> ByteBuffer {
        guard let windowBits, let deflated else { return framed }
        return deflated.frame(windowBits: windowBits, payload: payload, compressions: compressions) ?? framed
    }

    /// A frame header (`first`: FIN, RSV and opcode bits) and `payload` in one buffer.
    static func header(first: UInt8, length: Int, then payload: some Collection<UInt8>) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: length + 10)
        buffer.writeInteger(first)
        if length < 126 {
            buffer.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
        buffer.writeBytes(payload)
        return buffer
    }
}

/// A message's compressed frames, one per server window size asked for (in practice one: browsers do not limit
/// the server's window), made on first use and shared by every copy of the `WireFrame`.
private final class DeflatedForms: Sendable {
    private let forms = Mutex<[(windowBits: Int, frame: ByteBuffer?)]>([])

    /// Nil when zlib failed or did not make the message smaller (the plain frame goes out instead: RSV1 clear is a
    /// valid uncompressed message).
    func frame(windowBits: Int, payload: ByteBuffer, compressions: Counter?) -> ByteBuffer? {
        // Compressed under the lock: a second event loop wanting it meanwhile waits for these bytes rather than
        // making its own.
        forms.withLock { forms in
            if let known = forms.first(where: { $0.windowBits == windowBits }) { return known.frame }
            let compressed = MessageDeflater.deflate(payload, windowBits: windowBits)
            compressions?.increment()
            let frame = compressed.flatMap { compressed in
                compressed.readableBytes < payload.readableBytes
                    ? WireFrame.header(first: 0xC1, length: compressed.readableBytes, then: compressed.readableBytesView) : nil
            }
            forms.append((windowBits, frame))
            return frame
        }
    }
}
