import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket client that subscribes and then stops reading, like a frozen dashboard tab: the one case a real
/// client library cannot play, so it speaks the handshake over a plain POSIX socket.
final class StalledClient: @unchecked Sendable {  // one owner at a time: created off-pool, then handed over
    private let fd: Int32

    /// Connects, upgrades and subscribes on a thread of its own: the handshake read blocks, and blocking the two
    /// cooperative-pool threads (two stalled clients at once) would starve the hub's own upgrade of a thread.
    static func connect(port: Int, path: String = "/v1/ws", subscribe patterns: [String]) async throws -> StalledClient {
        try await RawSocket.offPool { try StalledClient(port: port, path: path, subscribe: patterns) }
    }

    private init(port: Int, path: String, subscribe patterns: [String]) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var small: Int32 = 4096  // a tiny receive window, so the hub's side fills quickly
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var handshakeTimeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &handshakeTimeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        try write(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
        var response: [UInt8] = []
        while !response.ends(with: Array("\r\n\r\n".utf8)) {
            var byte: UInt8 = 0
            guard recv(fd, &byte, 1, 0) == 1 else { throw POSIXError(.ECONNRESET) }
            response.append(byte)
        }
        guard String(decoding: response, as: UTF8.self).hasPrefix("HTTP/1.1 101") else { throw POSIXError(.EPROTO) }
        let channels = patterns.map { "\"\($0)\"" }.joined(separator: ",")
        try write(Self.maskedTextFrame(#"{"op":"subscribe","id":"s","channels":[\#(channels)]}"#))
    }

    deinit { close(fd) }

    private func write(_ bytes: [UInt8]) throws {
        guard send(fd, bytes, bytes.count, 0) == bytes.count else { throw POSIXError(.EIO) }
    }

    static func maskedTextFrame(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let mask: [UInt8] = [1, 2, 3, 4]
        return [0x81, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// Reads everything the hub sent until it closed the TCP connection, and returns the close code of the close
    /// frame among it, if any. Bounded by `timeout`. It blocks: call it through `RawSocket.offPool`, never on the
    /// two cooperative-pool threads the in-process hub needs.
    func readUntilClosed(timeout: TimeInterval) -> (closedByHub: Bool, closeCode: UInt16?, eventFrames: Int) {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var stream: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var closedByHub = false
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 {
                closedByHub = count == 0 || errno == ECONNRESET  // not a receive timeout
                break
            }
            stream.append(contentsOf: chunk[0..<count])
        }
        var offset = 0
        var frames = 0
        while offset + 2 <= stream.count {
            let opcode = stream[offset] & 0x0F
            var length = Int(stream[offset + 1] & 0x7F)
            var header = 2
            if length == 126, offset + 4 <= stream.count {
                length = Int(stream[offset + 2]) << 8 | Int(stream[offset + 3]); header = 4
            } else if length == 127, offset + 10 <= stream.count {
                length = (0..<8).reduce(0) { $0 << 8 | Int(stream[offset + 2 + $1]) }; header = 10
            }
            guard offset + header + length <= stream.count else { break }
            if opcode == 0x8, length >= 2 {
                return (closedByHub, UInt16(stream[offset + header]) << 8 | UInt16(stream[offset + header + 1]), frames)
            }
            if opcode == 0x1 { frames += 1 }
            offset += header + length
        }
        return (closedByHub, nil, frames)
    }
}

extension Array where Element: Equatable {
    func ends(with suffix: [Element]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
