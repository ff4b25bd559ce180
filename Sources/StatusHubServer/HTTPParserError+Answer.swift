import HummingbirdCore
import NIOHTTP1

extension HTTPParserError {
    /// The JSON error a request the HTTP parser refused is answered with: 431 for headers over the decoder's
    /// `limits`, else 400, naming the part of the request at fault.
    func answer(limits: HTTP1Channel.Configuration.DecoderConfiguration) -> (status: HTTPResponseStatus, field: String, reason: String) {
        switch self {
        case .headerOverflow:
            (.requestHeaderFieldsTooLarge, "headers",
             "too large: at most \(limits.maxHeaderFieldSize / 1024) KiB per field, \(limits.maxHeaderListSize / 1024) KiB of "
                + "header fields in all, \(limits.maxHeaderFieldCount) fields")
        case .invalidContentLength:
            (.badRequest, "Content-Length", "must be one non-negative decimal number")
        case .unexpectedContentLength:
            (.badRequest, "Content-Length", "not allowed with Transfer-Encoding, nor twice with different values")
        case .invalidHeaderToken, .invalidCharactersUsed, .lfExpected:
            (.badRequest, "headers", "malformed header line (\(debugDescription)); send 'Name: value' with no space before the colon")
        case .invalidChunkSize:
            (.badRequest, "body", "malformed chunked encoding (\(debugDescription))")
        case .unknown:
            // What NIO makes of llhttp's HPE_INVALID_TRANSFER_ENCODING — a Transfer-Encoding after a Content-Length,
            // given twice, or whose last coding is not chunked — and of a few codes (HPE_CR_EXPECTED, callback errors)
            // that no malformed request tried here produced.
            (.badRequest, "Transfer-Encoding",
             "refused: send 'Transfer-Encoding: chunked' once, as the only or last coding, and never with Content-Length")
        case .invalidMethod, .invalidURL, .invalidVersion:
            (.badRequest, "request line", debugDescription)
        default:
            (.badRequest, "request", "not a valid HTTP/1.1 request (\(debugDescription))")
        }
    }
}
