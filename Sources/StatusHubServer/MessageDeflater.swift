import CompressNIO
import NIOCore
import NIOPosix

/// Compresses one outgoing message for permessage-deflate without context takeover (RFC 7692 §7.2.1): a fresh
/// raw DEFLATE stream, flushed, with the trailing empty block's `00 00 FF FF` removed. Each thread keeps one zlib
/// compressor per window size and resets it for every message, so compressing allocates no zlib state: the
/// compressor's ~260 KiB are paid per thread, not per connection or per message.
enum MessageDeflater {
    /// The compressed payload, or nil if zlib failed.
    static func deflate(_ payload: ByteBuffer, windowBits: Int) -> ByteBuffer? {
        guard let compressor = Compressors.onCurrentThread.compressor(windowBits: windowBits) else { return nil }
        var input = payload
        var output = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input))
        do {
            try compressor.reset()
            try compressor.deflate(from: &input, to: &output, flush: .sync)
        } catch {
            return nil
        }
        guard input.readableBytes == 0, output.readableBytes >= 4 else { return nil }
        output.moveWriterIndex(to: output.writerIndex - 4)
        return output
    }

    /// One thread's compressors. Touched only by its own thread (so unchecked `Sendable`: a thread-specific
    /// variable needs a `Sendable` value).
    private final class Compressors: @unchecked Sendable {
        private static let perThread = ThreadSpecificVariable<Compressors>()
        private var byWindowBits: [Int: ZlibCompressor] = [:]

        static var onCurrentThread: Compressors { perThread.currentValue(orMake: Compressors.init) }

        func compressor(windowBits: Int) -> ZlibCompressor? {
            if let known = byWindowBits[windowBits] { return known }
            guard let made = try? ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: Int32(windowBits))) else {
                return nil
            }
            byWindowBits[windowBits] = made
            return made
        }
    }
}
