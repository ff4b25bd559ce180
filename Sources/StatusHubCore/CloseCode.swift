/// WebSocket close codes the hub uses, in one table (the README's protocol reference repeats it).
public enum CloseCode: UInt16, Sendable, CaseIterable {
    /// The client or the hub ended the session normally.
    case normal = 1000
    /// The node is shutting down; reconnect (to any node).
    case goingAway = 1001
    /// A frame broke the WebSocket protocol (a binary frame where text is expected, bad fragmentation).
    case protocolError = 1002
    /// A binary frame: the protocol is JSON text frames only.
    case unsupportedData = 1003
    /// A text frame was not valid UTF-8.
    case invalidPayload = 1007
    /// The client kept sending faster than `websocket.max_messages_per_second` after `rate_limited` errors.
    case policyViolation = 1008
    /// A client frame was larger than `websocket.max_frame_bytes`.
    case messageTooBig = 1009
    /// The hub hit an error it could not recover from on this connection.
    case internalError = 1011
    /// The client read slower than events arrived and its outbox (`websocket.outbox_capacity`) overflowed.
    /// Reconnect and subscribe again; nothing queued for it was sent.
    case slowConsumer = 4001
    /// The connection's token expired (its `exp`) and no fresh one came with `{"op":"auth"}`. Reconnect with a new token.
    case tokenExpired = 4003
    /// The upgrade carried no valid token (`auth.required`), or an invalid one: sent right after the handshake.
    case unauthorized = 4401
    /// The client address holds `server.max_connections_per_address` connections already.
    case tooManyConnections = 4429
    /// The node holds `server.max_connections` connections already: try another node, or later.
    case nodeFull = 4503

    public var reason: String {
        switch self {
        case .normal: "normal closure"
        case .goingAway: "node shutting down; reconnect"
        case .protocolError: "protocol error"
        case .unsupportedData: "binary frames are not accepted; send JSON text frames"
        case .invalidPayload: "text frame is not valid UTF-8"
        case .policyViolation: "too many messages (websocket.max_messages_per_second)"
        case .messageTooBig: "frame larger than websocket.max_frame_bytes"
        case .internalError: "internal error"
        case .slowConsumer: "slow consumer: outbound queue overflowed; reconnect"
        case .tokenExpired: "token expired; reconnect with a fresh token"
        case .unauthorized: "unauthorized"
        case .tooManyConnections: "too many connections from this address"
        case .nodeFull: "node full; try another node"
        }
    }
}
