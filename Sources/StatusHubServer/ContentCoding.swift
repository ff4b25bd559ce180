import CompressNIO
import Foundation
import NIOCore

/// The `Content-Encoding` of an ingest body: none, or gzip, inflated through compress-nio (zlib) and bounded by the
/// same limit as a plain body, as a permessage-deflate message is by `MessageInflater`.
enum ContentCoding {
    case identity
    case gzip

    static let supported = "identity or gzip"

    /// Nil for a coding the hub does not decode (answered 415 naming the header).
    init?(header: String?) {
        switch header?.trimmingCharacters(in: .whitespaces).lowercased() {
        case nil, "", "identity": self = .identity
        case "gzip", "x-gzip": self = .gzip
        default: return nil
        }
    }

    enum Refusal: Error {
        /// Inflates past `limit` bytes; inflating stopped there.
        case tooLarge
        case corrupt
    }

    func decode(_ body: ByteBuffer, limit: Int) throws(Refusal) -> ByteBuffer {
        guard case .gzip = self else { return body }
        var compressed = body
        do {
            // One byte over the limit tells a body at the limit from one past it.
            let inflated = try compressed.decompress(with: .gzip(), maxSize: limit + 1)
            guard inflated.readableBytes <= limit else { throw Refusal.tooLarge }
            return inflated
        } catch let refusal as Refusal {
            throw refusal
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw .tooLarge
        } catch {
            throw .corrupt
        }
    }
}
