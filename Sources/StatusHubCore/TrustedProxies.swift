import Foundation

/// Who a connection comes from when it came through a reverse proxy or load balancer (`server.trusted_proxies`).
///
/// Behind one, every connection's peer is the proxy, so `server.max_connections_per_address` counted a whole plant's
/// screens as one client and refused the 257th dashboard with 4429. When the peer is a trusted proxy, the client is
/// the address the proxies name in `X-Forwarded-For` (or, without it, RFC 7239's `Forwarded: for=`), read from the
/// right: each proxy appends the address it took the connection from, so the first address from the right that is
/// not itself a trusted proxy is the one the outermost trusted proxy saw, whatever the client wrote further left
/// (nginx's `real_ip_recursive`). A peer that is not a trusted proxy is the client, and its headers are ignored:
/// nobody else can choose the address they are counted under.
public struct TrustedProxies: Sendable, Equatable {
    public let ranges: [AddressRange]

    public init(_ ranges: [AddressRange]) {
        self.ranges = ranges
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// - Parameters:
    ///   - peer: the connection's remote address.
    ///   - forwardedFor: the request's `X-Forwarded-For` header values, in order.
    ///   - forwarded: its `Forwarded` header values, in order (read only without `X-Forwarded-For`).
    public func clientAddress(peer: String, forwardedFor: [String], forwarded: [String]) -> String {
        guard isTrusted(peer) else { return peer }
        var chain = forwardedFor.flatMap { $0.split(separator: ",").map { Self.bare($0) } }
        if chain.isEmpty { chain = forwarded.flatMap(Self.forAddresses) }
        chain.removeAll(where: \.isEmpty)
        guard let leftmost = chain.first else { return peer }
        return chain.last(where: { !isTrusted($0) }) ?? leftmost
    }

    public func isTrusted(_ address: String) -> Bool {
        ranges.contains { $0.contains(address) }
    }

    /// The `for=` addresses of a `Forwarded` value (`for=192.0.2.60;proto=http, for="[2001:db8::17]:4711"`).
    static func forAddresses(_ value: String) -> [String] {
        value.split(separator: ",").compactMap { element in
            for pair in element.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "for" { return bare(parts[1]) }
            }
            return nil
        }
    }

    /// An address as a header writes it, without quotes, brackets, port or spaces (`"[2001:db8::17]:4711"`,
    /// `192.0.2.60:51234`), at most 64 characters: it becomes a key of the per-address count.
    static func bare(_ text: Substring) -> String {
        var address = Substring(text.trimmingCharacters(in: .whitespaces))
        if address.hasPrefix("\""), address.hasSuffix("\""), address.count >= 2 { address = address.dropFirst().dropLast() }
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            address = address[address.index(after: address.startIndex)..<close]
        } else if address.filter({ $0 == ":" }).count == 1, let colon = address.firstIndex(of: ":") {
            address = address[..<colon]
        }
        return String(address.prefix(64))
    }
}
