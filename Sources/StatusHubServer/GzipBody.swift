import CompressNIO
import NIOCore

/// A gzip body inflated the way RFC 1952 (§2.2) defines one: a series of members, each inflated in turn. Every member
/// must end with its end block and trailer, and nothing but another member may follow one; the output of all of
/// them together is bounded by `limit`. compress-nio's one-call `decompress` stops at the end of the first member
/// and ignores what follows, and returns what it has when the stream is cut short, so a body could lose events
/// silently while the hub answered 202.
enum GzipBody {
    enum Failure: Error, Equatable {
        /// Inflates past the limit; inflating stopped there.
        case tooLarge
        /// Not a complete gzip body: the reason, for the 400 naming `body`.
        case invalid(String)
    }

    private static let magic: [UInt8] = [0x1F, 0x8B]

    static func inflate(_ body: ByteBuffer, limit: Int) throws(Failure) -> ByteBuffer {
        guard body.readableBytes > 0 else { throw .invalid("is empty; Content-Encoding: gzip needs at least one gzip member") }
        let inflater: ZlibDecompressor
        do {
            inflater = try ZlibDecompressor(algorithm: .gzip)
        } catch {
            throw .invalid("could not be inflated (zlib failed to start)")
        }
        var input = body
        var output = ByteBufferAllocator().buffer(capacity: min(limit + 1, max(256, body.readableBytes * 4)))
        var member = 1
        while true {
            try inflateMember(member, from: &input, into: &output, inflater: inflater, limit: limit)
            guard input.readableBytes > 0 else { return output }
            guard input.readableBytesView.starts(with: magic) else {
                throw .invalid("has \(input.readableBytes) bytes after gzip member \(member) that are not another gzip member")
            }
            member += 1
            do {
                try inflater.reset()
            } catch {
                throw .invalid("could not be inflated (zlib failed to reset)")
            }
        }
    }

    /// Inflates one member from the front of `input` into `output`, leaving `input` at the byte after its trailer.
    private static func inflateMember(
        _ member: Int, from input: inout ByteBuffer, into output: inout ByteBuffer, inflater: ZlibDecompressor, limit: Int
    ) throws(Failure) {
        let cutShort = Failure.invalid("ends inside gzip member \(member): no end block and trailer (CRC-32, length); was the stream closed?")
        while true {
            do {
                try inflater.inflate(from: &input, to: &output)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // The output is full: room for more, up to one byte over the limit.
                guard output.readableBytes <= limit else { throw .tooLarge }
                output.reserveCapacity(minimumWritableBytes: min(limit + 1 - output.readableBytes, max(4096, output.readableBytes)))
                continue
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                throw cutShort  // all input read, the stream not ended, nothing more to write
            } catch {
                throw .invalid("is not valid gzip: gzip member \(member) is corrupt (its header, data or CRC-32)")
            }
            guard output.readableBytes <= limit else { throw .tooLarge }
            // zlib stops early only at the member's end, so input left over means the member ended.
            if input.readableBytes > 0 { return }
            // All input read: the member ended exactly here, or the stream is cut short. An ended stream takes no more
            // input (zlib answers Z_STREAM_END without reading), one still open reads the probe's byte or fails on it.
            var probe = ByteBuffer(bytes: [0])
            var scratch = ByteBufferAllocator().buffer(capacity: 64)
            guard (try? inflater.inflate(from: &probe, to: &scratch)) != nil, probe.readableBytes == 1 else { throw cutShort }
            return
        }
    }
}
