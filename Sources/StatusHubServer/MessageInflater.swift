import CompressNIO
import NIOCore
import NIOPosix

/// One connection's inflating side of permessage-deflate (RFC 7692 §7.2.2), on its event loop: every compressed
/// client message is held to `websocket.max_frame_bytes` once inflated, exactly like an uncompressed one — zlib
/// writes into a buffer that grows only until it holds one byte over the limit, so a compression bomb costs about
/// the limit (NIO rounds a buffer's capacity up to a power of two) and closes with 1009.
///
/// zlib's state is made when the first compressed message arrives. A client that keeps its context between
/// messages (the default) needs its own inflater for the rest of the connection, with the window the hub answered
/// (`client_max_window_bits`, as small as zlib allows when the client lets the hub choose). A client that offered
/// `client_no_context_takeover` holds no zlib state at all: its messages are inflated by its thread's shared
/// inflater, reset after each one.
final class MessageInflater {
    enum Failure: Error {
        /// Inflated past the limit: 1009.
        case tooBig
        /// Not a valid DEFLATE stream: 1007.
        case corrupt
    }

    /// Set by the frame checks in front of the aggregator (`ClientFrameRules`), which see RSV1 on the first frame
    /// of each message: the aggregated message that reaches the session handler has lost it.
    var nextMessageCompressed = false

    private let parameters: PerMessageDeflate
    private var own: ZlibDecompressor?

    init(_ parameters: PerMessageDeflate) {
        self.parameters = parameters
    }

    /// `compressed` inflated, at most `limit` bytes.
    func inflate(_ compressed: ByteBuffer, limit: Int) throws(Failure) -> ByteBuffer {
        let inflater: ZlibDecompressor
        if parameters.clientNoContextTakeover {
            guard let shared = Shared.onCurrentThread.inflater else { throw .corrupt }
            inflater = shared
        } else if let own {
            inflater = own
        } else {
            guard let made = try? ZlibDecompressor(algorithm: .deflate, windowSize: Int32(parameters.clientWindowBits)) else { throw .corrupt }
            own = made
            inflater = made
        }
        var input = compressed
        // The tail the sender removed (§7.2.2).
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        defer { if parameters.clientNoContextTakeover { try? inflater.reset() } }
        var output = ByteBufferAllocator().buffer(capacity: min(limit + 1, max(256, compressed.readableBytes * 4)))
        while true {
            do {
                try inflater.inflate(from: &input, to: &output)
                // Input left over (at least the tail added above) means a final block (BFINAL) ended the sender's
                // stream: its next message starts a new one.
                if input.readableBytes > 0 { try? inflater.reset() }
                break
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // The output is full: room for more, up to one byte over the limit.
                guard output.readableBytes <= limit else { throw .tooBig }
                output.reserveCapacity(minimumWritableBytes: min(limit + 1 - output.readableBytes, max(4096, output.readableBytes)))
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                break  // nothing left to read and nothing left to write: the output had exactly the room it needed
            } catch {
                throw .corrupt
            }
        }
        guard output.readableBytes <= limit else { throw .tooBig }
        return output
    }

    /// One thread's inflater for clients without context takeover. Touched only by its own thread (so unchecked
    /// `Sendable`: a thread-specific variable needs a `Sendable` value).
    private final class Shared: @unchecked Sendable {
        private static let perThread = ThreadSpecificVariable<Shared>()
        let inflater = try? ZlibDecompressor(algorithm: .deflate, windowSize: 15)

        static var onCurrentThread: Shared { perThread.currentValue(orMake: Shared.init) }
    }
}
