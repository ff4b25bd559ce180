import CompressNIO
import NIOCore
import NIOPosix

/// The inflating side of permessage-deflate (RFC 7692 §7.2.2) for one connection, on its event loop: every compressed
/// client message is held to `websocket.max_frame_bytes` once inflated, exactly like an uncompressed one — zlib
/// writes into a buffer that grows only until it holds one byte over the limit, so a compression bomb costs about
/// the limit (NIO rounds a buffer's capacity up to a power of two) and closes with 1009.
///
/// The hub answers `client_no_context_takeover` to every offer (`PerMessageDeflate`), so each message is a DEFLATE
/// stream of its own: it is inflated by its thread's shared inflater, reset after each one, and the connection
/// holds no zlib state (a client that takes its context over anyway gets 1007 at the first message that refers back
/// to an earlier one).
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

    /// `compressed` inflated, at most `limit` bytes.
    func inflate(_ compressed: ByteBuffer, limit: Int) throws(Failure) -> ByteBuffer {
        guard let inflater = Shared.onCurrentThread.inflater else { throw .corrupt }
        var input = compressed
        // The tail the sender removed (§7.2.2).
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        defer { try? inflater.reset() }
        var output = ByteBufferAllocator().buffer(capacity: min(limit + 1, max(256, compressed.readableBytes * 4)))
        while true {
            do {
                try inflater.inflate(from: &input, to: &output)
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

    /// One thread's inflater, with the largest window (it reads what any smaller window wrote). Touched only by its
    /// own thread (so unchecked `Sendable`: a thread-specific variable needs a `Sendable` value).
    private final class Shared: @unchecked Sendable {
        private static let perThread = ThreadSpecificVariable<Shared>()
        let inflater = try? ZlibDecompressor(algorithm: .deflate, windowSize: 15)

        static var onCurrentThread: Shared { perThread.currentValue(orMake: Shared.init) }
    }
}
