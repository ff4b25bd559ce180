import ArgumentParser
import NIOCore

/// Local addresses the harness's client sockets are bound to before they connect, dealt round-robin
/// (`--source-addresses`). One source address has one range of ephemeral ports (about 28,000 by Linux's default
/// `ip_local_port_range`, and a socket bound before it connects holds its port whatever the destination), so
/// 100,000 connections to one hub port need several: on loopback every 127.x.y.z is the machine's own.
struct SourceAddresses: Sendable, ExpressibleByArgument {
    let addresses: [SocketAddress]
    /// As given, for a child process of the harness to parse again.
    let argument: String

    /// `127.0.0.2-127.0.0.9` (a range within the last octet), `127.0.0.2,127.0.0.3`, or one address.
    init?(argument: String) {
        var addresses: [SocketAddress] = []
        for part in argument.split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1).map(String.init)
            if bounds.count == 2 {
                let first = bounds[0].split(separator: "."), last = bounds[1].split(separator: ".")
                guard first.count == 4, last.count == 4, first.prefix(3) == last.prefix(3),
                      let low = Int(first[3]), let high = Int(last[3]), low <= high, high <= 255
                else { return nil }
                for octet in low...high {
                    guard let address = try? SocketAddress(ipAddress: first.prefix(3).joined(separator: ".") + ".\(octet)", port: 0)
                    else { return nil }
                    addresses.append(address)
                }
            } else {
                guard let address = try? SocketAddress(ipAddress: bounds[0], port: 0) else { return nil }
                addresses.append(address)
            }
        }
        guard !addresses.isEmpty else { return nil }
        self.addresses = addresses
        self.argument = argument
    }

    func address(for index: Int) -> SocketAddress { addresses[index % addresses.count] }

    static let help = "Bind client sockets to these local addresses, round-robin, before connecting: a range (127.0.0.2-127.0.0.9) or a comma list. Each address has its own ~28,000 ephemeral ports, so many addresses carry more than one address's worth of connections."
}
