import NIOCore
import NIOWebSocket

/// The body of a close frame the hub sends: the code, then as much of the reason as fits. A close frame is a control
/// frame, whose payload RFC 6455 (§5.5) caps at 125 bytes, 2 of them the code; a client fails the connection (1002)
/// on a longer one. Reasons quote what the client sent (a token's pattern), so they can be any length in bytes.
enum CloseFramePayload {
    static let maxReasonBytes = 123

    static func make(_ code: WebSocketErrorCode, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let fitting = fitted(reason)
        var payload = allocator.buffer(capacity: 2 + fitting.utf8.count)
        payload.write(webSocketErrorCode: code)
        payload.writeSubstring(fitting)
        return payload
    }

    /// `reason` cut to at most `maxReasonBytes` bytes of UTF-8, at the end of a whole character, so it stays valid
    /// UTF-8 (a close reason that is not is itself a protocol error).
    static func fitted(_ reason: String) -> Substring {
        guard reason.utf8.count > maxReasonBytes else { return reason[...] }
        var bytes = 0
        var end = reason.startIndex
        for index in reason.indices {
            let next = reason.index(after: index)
            bytes += reason.utf8.distance(from: index, to: next)
            guard bytes <= maxReasonBytes else { break }
            end = next
        }
        return reason[..<end]
    }
}
