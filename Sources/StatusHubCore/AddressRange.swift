#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address or a CIDR range of them (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`, `::1`): an entry of
/// `server.trusted_proxies`. IPv4 addresses written as IPv6 (`::ffff:10.1.2.3`, as a dual-stack socket reports an
/// IPv4 peer) are compared as IPv4. swift-nio parses addresses only into socket addresses, with no prefix or mask,
/// so the few lines of masking are here.
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    /// The network's bytes (4 or 16), the bits past the prefix cleared.
    private let network: [UInt8]
    private let prefixLength: Int
    public let description: String

    /// nil when `text` is no address, or its prefix is out of range for its family.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = Self.bytes(of: String(parts[0])) else { return nil }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let asked = Int(parts[1]), (0...bits).contains(asked) else { return nil }
            prefix = asked
        }
        network = Self.masked(address, prefix)
        prefixLength = prefix
        description = text
    }

    /// Whether `address` (as a socket or a header reports it) is in the range; false for anything not an address.
    public func contains(_ address: String) -> Bool {
        guard let bytes = Self.bytes(of: address), bytes.count == network.count else { return false }
        return Self.masked(bytes, prefixLength) == network
    }

    /// The address's bytes: 4 for IPv4 (also when written as IPv4-mapped IPv6), 16 for IPv6.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff { return Array(bytes[12...]) }
        return bytes
    }

    private static func masked(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let kept = min(8, max(0, prefix - index * 8))
            return kept == 8 ? byte : byte & ~(UInt8(0xff) >> kept)
        }
    }
}
