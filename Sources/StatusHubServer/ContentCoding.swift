import Foundation
import NIOCore

/// The `Content-Encoding` of an ingest body: none, or gzip, inflated member by member (`GzipBody`) and bounded by the
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

    func decode(_ body: ByteBuffer, limit: Int) throws(GzipBody.Failure) -> ByteBuffer {
        guard case .gzip = self else { return body }
        return try GzipBody.inflate(body, limit: limit)
    }
}
