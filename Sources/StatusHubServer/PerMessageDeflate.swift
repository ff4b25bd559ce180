import WSCore

/// permessage-deflate (RFC 7692) as the hub negotiates it, for sessions served from channel handlers.
///
/// - **The server's side never keeps context** (`server_no_context_takeover`, always answered, §7.1.1.1 allows it
///   unasked): each outgoing message is compressed on its own, so one event's compressed bytes are the same for
///   every connection with the same window size and are made once (`WireFrame`), and no connection holds a
///   compressor.
/// - **Nor does the client's** (`client_no_context_takeover`, always answered, §7.1.1.2 allows it unasked): each
///   client message is inflated on its own by its thread's shared inflater (`MessageInflater`), so no connection
///   holds zlib state. With context takeover, which browsers use unless told otherwise, every connection that had
///   sent one compressed message (a browser compresses its subscribe) kept an inflater for life — 5.9 KiB of zlib
///   state, half of what an idle browser dashboard cost (loadtest/RESULTS.md) — for a few short messages
///   (subscribes, pings) that gain next to nothing from a shared window. If the offer lets the hub choose the
///   client's window (`client_max_window_bits`, which browsers send), the answer is zlib's smallest, 512 bytes: the
///   client's compressor is smaller too.
/// - **Declining what it cannot do.** §5: a server declines an offer it cannot accept (the next offer, or 101
///   without the extension); it does not fail the handshake. Accepted: only the four parameters, flags without a
///   value, window sizes 8–15, and for the server's own window one zlib can compress with: 9–15
///   (`server_max_window_bits=8` is valid, but zlib's raw deflate has no 256-byte window and the answer may not be
///   larger than the offer).
struct PerMessageDeflate: Sendable, Equatable {
    /// The window the hub compresses with (the offer's `server_max_window_bits`, 15 without one).
    var serverWindowBits = 15
    /// Answered as `client_max_window_bits`: only when the offer had that parameter (§7.1.2.2).
    var answeredClientWindowBits: Int?
    /// Whether the offer limited the server's window: then the answer names the window (§7.1.2.1).
    var answersServerWindowBits = false

    static let name = "permessage-deflate"
    /// The client window the hub asks for when the client lets it choose: zlib's smallest raw-deflate window. (8
    /// would be smaller, but zlib's compressor, which browsers use, does not do raw 256-byte windows.)
    static let preferredClientWindowBits = 9

    /// The first permessage-deflate offer in `headers` the hub can accept, as negotiated; nil when there is none.
    static func negotiate(_ offers: [WebSocketExtensionHTTPParameters]) -> PerMessageDeflate? {
        for offer in offers where offer.name == name && canAccept(offer) {
            var negotiated = PerMessageDeflate()
            if let bits = offer.parameters["server_max_window_bits"]?.integer {
                negotiated.serverWindowBits = bits
                negotiated.answersServerWindowBits = true
            }
            if let clientLimit = offer.parameters["client_max_window_bits"] {
                negotiated.answeredClientWindowBits = min(clientLimit.integer ?? 15, preferredClientWindowBits)
            }
            return negotiated
        }
        return nil
    }

    /// Whether the hub can take this offer as it stands (RFC 7692 §7): only the four parameters of
    /// permessage-deflate, flags without a value, window sizes 8–15, and for the hub's own (server) window one zlib
    /// can compress with: 9–15.
    static func canAccept(_ offer: WebSocketExtensionHTTPParameters) -> Bool {
        offer.parameters.allSatisfy { name, value in
            switch name {
            case "server_no_context_takeover", "client_no_context_takeover":
                return value == .null
            case "server_max_window_bits":
                return value.integer.map { (9...15).contains($0) } ?? false
            case "client_max_window_bits":
                return value == .null || value.integer.map { (8...15).contains($0) } ?? false
            default:
                return false
            }
        }
    }

    /// The `Sec-WebSocket-Extensions` answer.
    var responseHeader: String {
        var header = Self.name
        if answersServerWindowBits { header += ";server_max_window_bits=\(serverWindowBits)" }
        header += ";server_no_context_takeover"
        if let answeredClientWindowBits { header += ";client_max_window_bits=\(answeredClientWindowBits)" }
        header += ";client_no_context_takeover"
        return header
    }
}
