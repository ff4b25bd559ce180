import HummingbirdWebSocket
import NIOWebSocket
import StatusHubCore

extension WebSocketOutboundWriter {
    /// Closes with one of the hub's codes (`CloseCode`) and its documented reason, or `reason` when given. A close
    /// on a socket that is already going away is not an error worth reporting, hence no `throws`.
    func close(_ code: CloseCode, reason: String? = nil) async {
        try? await close(WebSocketErrorCode(codeNumber: Int(code.rawValue)), reason: reason ?? code.reason)
    }
}
