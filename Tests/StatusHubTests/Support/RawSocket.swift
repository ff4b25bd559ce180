import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client for what client libraries will not do: refused upgrades, malformed frames, never-ending
/// headers.
final class RawSocket {
    private var fd: Int32

    /// `source`: the loopback address to connect from (`127.0.0.2`: another client, as a proxy sees it).
    init(port: Int, from source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Drops the connection the way a vanished client does: no close frame, and a reset instead of a FIN.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        fd = -1
    }

    func send(_ bytes: [UInt8]) throws {
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw POSIXError(.EIO) }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Makes a send that cannot finish within `seconds` (the peer stopped reading) fail instead of blocking.
    func setSendTimeout(seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends a WebSocket upgrade for `path` with `headers`.
    func upgrade(path: String = "/v1/ws", headers: [String: String] = [:]) throws {
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: \(Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        try send(request + "\r\n")
    }

    /// Everything received until the peer closes, `until` matches, or `timeout` passes; and whether it closed.
    func read(timeout: TimeInterval, until done: ([UInt8]) -> Bool = { _ in false }) -> (bytes: [UInt8], closed: Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count == 0 { return (received, true) }
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return (received, true)
            }
            received += chunk[0..<count]
            if done(received) { break }
        }
        return (received, false)
    }

    /// The status code of the HTTP response head received within `timeout`.
    func responseStatus(timeout: TimeInterval = 10) -> (status: Int?, text: String) {
        let (bytes, _) = read(timeout: timeout) { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") && $0.count > 40 }
        let text = String(decoding: bytes, as: UTF8.self)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
        return (status, text)
    }

    /// Upgrades and returns the code of the close frame the hub sends within `timeout` (nil if none).
    static func closeCodeAfterUpgrade(port: Int, path: String = "/v1/ws", timeout: TimeInterval = 10) async throws -> UInt16? {
        try await offPool {
            let socket = try RawSocket(port: port)
            try socket.upgrade(path: path)
            return closeCode(in: socket.read(timeout: timeout) { closeCode(in: $0) != nil }.bytes)
        }
    }

    /// Runs blocking socket calls on a thread of their own: blocking one of the few cooperative-pool threads
    /// (two on two cores) would stall every other test in the process.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// A client frame (`opcode` 1 text, 2 binary, 0 continuation, 8 close), masked as RFC 6455 requires unless
    /// `masked` is false.
    static func frame(opcode: UInt8, fin: Bool = true, masked: Bool = true, payload: [UInt8]) -> [UInt8] {
        var head: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            head.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            head += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            head.append(maskBit | 127)
            head += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        guard masked else { return head + payload }
        let mask: [UInt8] = [9, 8, 7, 6]
        return head + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// The close code of the first close frame (opcode 8) in a stream of unmasked server frames after the
    /// response head.
    static func closeCode(in stream: [UInt8]) -> UInt16? {
        guard let payload = closePayload(in: stream), payload.count >= 2 else { return nil }
        return UInt16(payload[0]) << 8 | UInt16(payload[1])
    }

    /// The whole payload (code and reason) of the first close frame in a stream of unmasked server frames after the
    /// response head, once all of it has arrived.
    static func closePayload(in stream: [UInt8]) -> [UInt8]? {
        guard let headEnd = stream.indices.first(where: { stream[$0...].starts(with: Array("\r\n\r\n".utf8)) }) else { return nil }
        var index = headEnd + 4
        while index + 2 <= stream.count {
            let opcode = stream[index] & 0x0F
            var length = Int(stream[index + 1] & 0x7F)
            var offset = index + 2
            if length == 126, offset + 2 <= stream.count {
                length = Int(stream[offset]) << 8 | Int(stream[offset + 1]); offset += 2
            } else if length == 127, offset + 8 <= stream.count {
                length = stream[offset..<offset + 8].reduce(0) { $0 << 8 | Int($1) }; offset += 8
            }
            if opcode == 8, offset + max(length, 2) <= stream.count { return Array(stream[offset..<offset + length]) }
            index = offset + length
        }
        return nil
    }
}
